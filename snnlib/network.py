"""Plain-data description of an integer spiking network of "core layers", as the chip sees it.

A core layer is conv -> integrate-and-fire -> (per-destination sum pooling). Layers are
addressed by integer ids (the mapper uses core ids; :func:`snnlib.network_from_sequential`
uses 0, 1, 2, ...). Input events name the layer they enter; a DVS input stage is
addressed by :data:`DVS_LAYER_ID`.

Shapes are ``(channels, height, width)``; weights are in torch layout ``(f, c, ky, kx)``;
pairs such as ``stride`` and ``padding`` are ``(y, x)``. The exact update rules are in
``docs/chip-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from snnlib.errors import SpikeflashError
from snnlib.readout import READOUT_AVERAGES, READOUT_CLASSES, READOUT_LAYER_ID, Readout

INT8_RANGE = (-128, 127)
INT16_RANGE = (-32768, 32767)
POOLING_FACTORS = (1, 2, 4)
RESET_MODES = ("subtract", "zero")
MAX_DESTINATIONS = 2
#: Layer id under which DVS input events are addressed (the router id of Speck's DVS stage).
DVS_LAYER_ID = 13


@dataclass(frozen=True)
class Problem:
    """One invalid field: ``path`` as Python reaches it (``layers[3].weights[0, 1, 2, 0]``,
    ``dvs.cut``) and ``message``, what is wrong with the value and how to fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidNetworkError(SpikeflashError, ValueError):
    """An :class:`IntegerNetwork` field holds a value the chip model cannot represent.

    ``problems`` lists every :class:`Problem` found (the message shows them all); ``path`` is
    the first one's field path.

    Example scenarios:
      - a weight outside int8, a threshold outside int16, ``threshold_low >= threshold``
      - a destination naming a layer that does not exist, or a pooling factor other than 1/2/4
      - a DVS ``cut`` outside its input or a layer whose input shape does not match its source
    """

    def __init__(self, problems: Sequence[Problem], *, hint: Optional[str] = None):
        self.problems = list(problems)
        self.path = self.problems[0].path if self.problems else ""
        lines = [str(p) for p in self.problems]
        text = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(
            f"  {line}" for line in lines)
        super().__init__(text, hint=hint)


@dataclass
class Destination:
    """Where a layer's output spikes go.

    ``layer``: id of the receiving layer. ``pooling``: sum-pooling factor (1, 2 or 4),
    applied as coordinate division. ``feature_shift``: added to the channel on delivery.
    """

    layer: int
    pooling: int = 1
    feature_shift: int = 0


@dataclass
class CoreLayer:
    """One conv -> IAF core layer with integer parameters.

    ``weights``: int8 array ``(f, c, k, k)``. ``input_shape``: ``(c, h, w)``.
    ``threshold_high`` / ``threshold_low``: int16; a neuron fires when ``v >= threshold_high``
    and never goes below ``threshold_low``. ``reset``: ``"subtract"`` (v -= threshold_high)
    or ``"zero"`` (return to zero). ``bias``: int16 ``(f,)`` added on every leak tick when
    ``leak_enable``. ``initial_state``: int16 ``(f, h_out, w_out)``, zeros when None.
    """

    weights: np.ndarray
    input_shape: tuple[int, int, int]
    threshold_high: int
    threshold_low: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    reset: str = "subtract"
    bias: Optional[np.ndarray] = None
    leak_enable: bool = False
    initial_state: Optional[np.ndarray] = None
    destinations: list[Destination] = field(default_factory=list)
    monitor: bool = False

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(f, h_out, w_out)`` of the neuron map (before any destination pooling)."""
        f, _, k, _ = self.weights.shape
        _, h, w = self.input_shape
        h_out = (h + 2 * self.padding[0] - k) // self.stride[0] + 1
        w_out = (w + 2 * self.padding[1] - k) // self.stride[1] + 1
        return (f, h_out, w_out)


@dataclass
class DVSInput:
    """The DVS pre-processing stage: polarity select / merge -> pooling -> ROI crop -> mirror.

    ``input_shape``: ``(2, h, w)`` sensor size (always 2 polarities: OFF = 0, ON = 1). ``pooling``: ``(py, px)`` in
    {1, 2, 4}. ``origin`` / ``cut``: ``(y, x)`` top-left and inclusive bottom-right of the
    region of interest in post-pooling coordinates (``cut=None`` keeps everything).
    ``merge_polarities`` sums both polarities into channel 0.
    """

    input_shape: tuple[int, int, int] = (2, 128, 128)
    merge_polarities: bool = False
    on_channel: bool = True
    off_channel: bool = True
    pooling: tuple[int, int] = (1, 1)
    origin: tuple[int, int] = (0, 0)
    cut: Optional[tuple[int, int]] = None
    mirror_x: bool = False
    mirror_y: bool = False
    mirror_diagonal: bool = False
    destinations: list[Destination] = field(default_factory=list)
    monitor: bool = False

    @property
    def pooled_shape(self) -> tuple[int, int]:
        """``(h, w)`` after pooling (``h // py``, ``w // px``): the frame of ``origin`` / ``cut``."""
        return (self.input_shape[1] // self.pooling[0], self.input_shape[2] // self.pooling[1])

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(channels, h, w)`` of the events the stage sends on: 1 channel when merging
        polarities, the ROI size, and h and w swapped by ``mirror_diagonal``."""
        cut = self.cut if self.cut is not None else tuple(n - 1 for n in self.pooled_shape)
        h, w = cut[0] - self.origin[0] + 1, cut[1] - self.origin[1] + 1
        channels = 1 if self.merge_polarities else self.input_shape[0]
        return (channels, w, h) if self.mirror_diagonal else (channels, h, w)


@dataclass
class IntegerNetwork:
    """A whole integer network: core layers by id, an optional DVS stage, the leak clock and
    an optional readout layer (:class:`snnlib.readout.Readout`), which the one core with a
    destination :data:`READOUT_LAYER_ID` feeds.

    ``slow_clock_period_us``: leak ticks happen at P, 2P, 3P, ... µs; None = no leak ticks.
    """

    layers: dict[int, CoreLayer]
    dvs: Optional[DVSInput] = None
    slow_clock_period_us: Optional[int] = None
    readout: Optional[Readout] = None

    def input_shapes(self) -> dict[int, tuple[int, int, int]]:
        """``{layer id: (c, h, w)}`` of every layer that accepts input events (cores and DVS)."""
        shapes = {lid: layer.input_shape for lid, layer in self.layers.items()}
        if self.dvs is not None:
            shapes[DVS_LAYER_ID] = self.dvs.input_shape
        return shapes

    def problems(self, layers_name: str = "layers") -> list[Problem]:
        """Every invalid field, in field order; empty when the network is valid. Paths start
        with ``layers_name`` (a ``ChipConfig`` names its layer table ``cores``)."""
        found: list[Problem] = []
        for lid, layer in self.layers.items():
            where = f"{layers_name}[{lid!r}]"
            if isinstance(lid, bool) or not isinstance(lid, (int, np.integer)) or not 0 <= lid <= INT16_RANGE[1]:
                found.append(Problem(where, f"id {lid!r} is not an integer in [0, {INT16_RANGE[1]}] "
                                            "(ids travel in int16 event fields)"))
                continue
            found += _layer_problems(where, layer, self.layers, layers_name)
        if self.dvs is not None:
            if DVS_LAYER_ID in self.layers:
                found.append(Problem(f"{layers_name}[{DVS_LAYER_ID}]", (
                    f"id {DVS_LAYER_ID} is taken by a core layer and by the DVS stage; renumber the "
                    f"core layer (DVS events are addressed to layer {DVS_LAYER_ID})")))
            found += _dvs_problems(self.dvs, self.layers, layers_name)
        if self.slow_clock_period_us is not None and not (
                _is_int(self.slow_clock_period_us) and self.slow_clock_period_us > 0):
            found.append(Problem("slow_clock_period_us", (
                f"{self.slow_clock_period_us!r}; must be a positive integer number of microseconds, "
                "or None for no leak ticks")))
        return found + _readout_problems(self, layers_name)

    def validate(self) -> "IntegerNetwork":
        """Return ``self`` if valid; else raise :class:`InvalidNetworkError` listing every
        problem of :meth:`problems`."""
        found = self.problems()
        if found:
            raise InvalidNetworkError(found)
        return self

    def readout_source(self) -> Optional[int]:
        """The id of the layer that feeds the readout (None without one)."""
        return next(iter(_readout_sources(self)), None)


def _readout_sources(net: IntegerNetwork) -> list[int]:
    """Layers with a destination :data:`READOUT_LAYER_ID` that is not a core layer of ``net``."""
    if READOUT_LAYER_ID in net.layers:
        return []
    return [lid for lid, layer in net.layers.items() if any(d.layer == READOUT_LAYER_ID for d in layer.destinations)]


def _readout_problems(net: IntegerNetwork, layers_name: str) -> list[Problem]:
    """The readout: one 1x1 source layer that fits its classes, the slow clock, legal fields."""
    sources, r = _readout_sources(net), net.readout
    if r is None:
        return [Problem(f"{layers_name}[{lid}].destinations", (
            f"a destination is the readout layer ({READOUT_LAYER_ID}) but the network has no readout; "
            "set readout=Readout(...)")) for lid in sources]
    if READOUT_LAYER_ID in net.layers:
        return [Problem(f"{layers_name}[{READOUT_LAYER_ID}]", (
            f"id {READOUT_LAYER_ID} is the readout layer's; renumber the core layer"))]
    found = []
    if len(sources) != 1:
        found.append(Problem("readout", f"fed by {len(sources)} layers {sources}; exactly one layer must "
                                        f"have the destination {READOUT_LAYER_ID}"))
    if net.slow_clock_period_us is None:
        found.append(Problem("readout", "its moving average ticks with the slow clock; set slow_clock_period_us"))
    if not (_is_int(r.threshold) and 0 <= r.threshold <= 65535):
        found.append(Problem("readout.threshold", f"{r.threshold!r}; must be an integer in [0, 65535]"))
    if r.average not in READOUT_AVERAGES:
        found.append(Problem("readout.average", f"{r.average!r}; must be one of {READOUT_AVERAGES}"))
    if r.channel_stride not in (1, 4):
        found.append(Problem("readout.channel_stride", f"{r.channel_stride!r}; must be 1 or 4"))
    elif len(sources) == 1 and _shape_ok(net.layers[sources[0]]):
        f, h, w = net.layers[sources[0]].output_shape
        most = r.channel_stride * (READOUT_CLASSES - 1) + 1
        if (h, w) != (1, 1) or f > most:
            found.append(Problem(f"{layers_name}[{sources[0]}]", (
                f"feeds the readout with a {f}x{h}x{w} map; the readout takes a 1x1 map of at most {most} "
                f"channels ({READOUT_CLASSES} classes, channel {r.channel_stride}(k-1) -> class k)")))
    return found

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _int_range_problems(path: str, arr, lo_hi: tuple[int, int]) -> list[Problem]:
    """The first non-integer or out-of-range element of ``arr`` (a scalar or an array)."""
    a = np.asarray(arr)
    at = (lambda idx: path + ("[" + ", ".join(str(int(i)) for i in idx) + "]" if idx else ""))
    if a.dtype.kind not in "iu":
        with np.errstate(invalid="ignore"):
            fraction = np.mod(a, 1) != 0 if a.dtype.kind == "f" else np.ones(a.shape, bool)
            not_int = fraction | ~np.isfinite(a) if a.dtype.kind == "f" else fraction
        if np.any(not_int):
            idx = np.unravel_index(np.argmax(not_int), a.shape)
            return [Problem(at(idx), f"{a[idx].item()!r} is not an integer; quantize first "
                                     "(e.g. with mapper.quantize)")]
    lo, hi = lo_hi
    bad = (a < lo) | (a > hi)
    if np.any(bad):
        idx = np.unravel_index(np.argmax(bad), a.shape)
        return [Problem(at(idx), f"{a[idx]} is outside [{lo}, {hi}]")]
    return []


def _destination_problems(where: str, dests, channels: int, layers, layers_name: str,
                          readout: bool = False) -> list[Problem]:
    """Routing: at most two destinations, each to an existing layer with room for the
    ``channels`` sent (after ``feature_shift``), with a legal pooling factor; with ``readout``
    (a core's destinations) also the readout layer (checked by :func:`_readout_problems`)."""
    found = []
    if len(dests) > MAX_DESTINATIONS:
        found.append(Problem(f"{where}.destinations", (
            f"{len(dests)} destinations; the chip routes to at most {MAX_DESTINATIONS} "
            "(chain layers instead)")))
    for i, d in enumerate(dests):
        at = f"{where}.destinations[{i}]"
        if readout and d.layer == READOUT_LAYER_ID and READOUT_LAYER_ID not in layers:
            continue
        if d.layer not in layers:
            found.append(Problem(f"{at}.layer", f"{d.layer} is not a layer of the network "
                                                f"({layers_name}: {sorted(layers)})"))
        if d.pooling not in POOLING_FACTORS:
            found.append(Problem(f"{at}.pooling", f"{d.pooling}; must be one of {POOLING_FACTORS}"))
        if d.feature_shift < 0:
            found.append(Problem(f"{at}.feature_shift", f"{d.feature_shift}; must be >= 0"))
        elif d.layer in layers and _shape_ok(layers[d.layer]):
            room = layers[d.layer].input_shape[0]
            if channels + d.feature_shift > room:
                found.append(Problem(f"{at}.feature_shift", (
                    f"{d.feature_shift} sends channels up to {channels + d.feature_shift - 1} but "
                    f"layer {d.layer} has {room} input channels")))
    return found


def _shape_ok(layer: CoreLayer) -> bool:
    """Whether the weights are ``(f, c, k, k)`` and ``input_shape`` is ``(c, h, w)``."""
    w = np.asarray(layer.weights)
    return (w.ndim == 4 and w.shape[2] == w.shape[3] and len(layer.input_shape) == 3
            and w.shape[1] == layer.input_shape[0])


def _layer_problems(where: str, layer: CoreLayer, layers, layers_name: str) -> list[Problem]:
    w = np.asarray(layer.weights)
    if not _shape_ok(layer):  # every other check needs the shapes
        return [Problem(f"{where}.weights", (
            f"shape {w.shape} with input_shape {tuple(layer.input_shape)}; expected weights "
            "(f, c, k, k) with a square kernel and input_shape (c, h, w) with the same c"))]
    found = _int_range_problems(f"{where}.weights", w, INT8_RANGE)
    thresholds = [p for name in ("threshold_high", "threshold_low")
                  for p in _int_range_problems(f"{where}.{name}", getattr(layer, name), INT16_RANGE)]
    found += thresholds
    if not thresholds and layer.threshold_high < 1:
        found.append(Problem(f"{where}.threshold_high", (
            f"{layer.threshold_high}; must be >= 1 (a neuron would fire on every update)")))
    if not thresholds and layer.threshold_low >= layer.threshold_high:
        found.append(Problem(f"{where}.threshold_low", (
            f"{layer.threshold_low} >= threshold_high = {layer.threshold_high}; the lower "
            "bound must lie below the firing threshold")))
    if layer.reset not in RESET_MODES:
        found.append(Problem(f"{where}.reset", f"{layer.reset!r}; must be one of {RESET_MODES}"))
    geometry = []
    if any(s < 1 for s in layer.stride):
        geometry.append(Problem(f"{where}.stride", f"{tuple(layer.stride)}; strides must be >= 1"))
    if any(p < 0 for p in layer.padding):
        geometry.append(Problem(f"{where}.padding", f"{tuple(layer.padding)}; paddings must be >= 0"))
    if geometry:  # the output shape is undefined
        return found + geometry
    f, ho, wo = layer.output_shape
    if ho < 1 or wo < 1:
        found.append(Problem(f"{where}.weights", (
            f"a {w.shape[2]}x{w.shape[3]} kernel with padding {tuple(layer.padding)} does not fit "
            f"the input {tuple(layer.input_shape)}; use a smaller kernel or more padding")))
    if layer.bias is not None:
        b = np.asarray(layer.bias)
        if b.shape != (f,):
            found.append(Problem(f"{where}.bias", f"shape {b.shape}; expected ({f},)"))
        else:
            found += _int_range_problems(f"{where}.bias", b, INT16_RANGE)
    if layer.initial_state is not None:
        s = np.asarray(layer.initial_state)
        if s.shape != (f, ho, wo):
            found.append(Problem(f"{where}.initial_state", f"shape {s.shape}; expected {(f, ho, wo)}"))
        else:
            found += _int_range_problems(f"{where}.initial_state", s, INT16_RANGE)
    return found + _destination_problems(where, layer.destinations, f, layers, layers_name, readout=True)


def _dvs_problems(dvs: DVSInput, layers, layers_name: str) -> list[Problem]:
    if len(dvs.input_shape) != 3 or dvs.input_shape[0] != 2:
        return [Problem("dvs.input_shape", (
            f"{tuple(dvs.input_shape)}; expected (2, h, w): the sensor has 2 polarities (for one "
            "input channel set merge_polarities=True, and on_channel / off_channel to select)"))]
    if any(p not in POOLING_FACTORS for p in dvs.pooling):
        return [Problem("dvs.pooling", f"{tuple(dvs.pooling)}; each must be one of {POOLING_FACTORS}")]
    found = []
    size = dvs.pooled_shape
    frame = (f"in pooled coordinates: input {tuple(dvs.input_shape)} pooled by {tuple(dvs.pooling)} "
             f"is {size[0]}x{size[1]}")
    if not all(0 <= o < n for o, n in zip(dvs.origin, size)):
        found.append(Problem("dvs.origin", f"{tuple(dvs.origin)} lies outside the input ({frame})"))
    elif dvs.cut is not None and not all(o <= c < n for o, c, n in zip(dvs.origin, dvs.cut, size)):
        found.append(Problem("dvs.cut", (
            f"{tuple(dvs.cut)}; the inclusive bottom-right corner of the region of interest must "
            f"lie between origin {tuple(dvs.origin)} and {(size[0] - 1, size[1] - 1)} ({frame})")))
    if found:
        return found
    return _destination_problems("dvs", dvs.destinations, dvs.output_shape[0], layers, layers_name)
