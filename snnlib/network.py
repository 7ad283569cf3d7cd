"""Plain-data description of an integer spiking network of "core layers", as the chip sees it.

A core layer is conv -> integrate-and-fire -> (per-destination sum pooling). Layers are
addressed by integer ids (the mapper uses core ids; :func:`snnlib.from_sequential`-style
builders use 0, 1, 2, ...). Input events name the layer they enter; a DVS input stage is
addressed by :data:`DVS_LAYER_ID`.

Shapes are ``(channels, height, width)``; weights are in torch layout ``(f, c, ky, kx)``;
pairs such as ``stride`` and ``padding`` are ``(y, x)``. The exact update rules are in
``docs/chip-model.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from snnlib.errors import SpikeflashError

INT8_RANGE = (-128, 127)
INT16_RANGE = (-32768, 32767)
POOLING_FACTORS = (1, 2, 4)
RESET_MODES = ("subtract", "zero")
MAX_DESTINATIONS = 2
#: Layer id under which DVS input events are addressed (the router id of Speck's DVS stage).
DVS_LAYER_ID = 13


class InvalidNetworkError(SpikeflashError, ValueError):
    """An :class:`IntegerNetwork` field holds a value the chip model cannot represent.

    Example scenarios:
      - a weight outside int8, a threshold outside int16, ``threshold_low >= threshold``
      - a destination naming a layer that does not exist, or a pooling factor other than 1/2/4
      - a DVS ``cut`` outside its input or a layer whose input shape does not match its source
    """


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
    """A whole integer network: core layers by id, an optional DVS stage, the leak clock.

    ``slow_clock_period_us``: leak ticks happen at P, 2P, 3P, ... µs; None = no leak ticks.
    """

    layers: dict[int, CoreLayer]
    dvs: Optional[DVSInput] = None
    slow_clock_period_us: Optional[int] = None

    def input_shapes(self) -> dict[int, tuple[int, int, int]]:
        """``{layer id: (c, h, w)}`` of every layer that accepts input events (cores and DVS)."""
        shapes = {lid: layer.input_shape for lid, layer in self.layers.items()}
        if self.dvs is not None:
            shapes[DVS_LAYER_ID] = self.dvs.input_shape
        return shapes

    def validate(self) -> "IntegerNetwork":
        """Check every field; raise :class:`InvalidNetworkError` naming the first problem."""
        for lid, layer in self.layers.items():
            if isinstance(lid, bool) or not isinstance(lid, (int, np.integer)) or not 0 <= lid <= INT16_RANGE[1]:
                raise InvalidNetworkError(
                    f"layers: id {lid!r} is not an integer in [0, {INT16_RANGE[1]}] (ids travel in int16 event fields)"
                )
            _validate_layer(lid, layer, self.layers)
        if self.dvs is not None:
            if DVS_LAYER_ID in self.layers:
                raise InvalidNetworkError(
                    f"layers: id {DVS_LAYER_ID} is taken by a core layer and by the DVS stage; "
                    f"renumber the core layer (DVS events are addressed to layer {DVS_LAYER_ID})"
                )
            _validate_dvs(self.dvs, self.layers)
        if self.slow_clock_period_us is not None and self.slow_clock_period_us <= 0:
            raise InvalidNetworkError(
                f"slow_clock_period_us={self.slow_clock_period_us}: must be a positive "
                "number of microseconds, or None for no leak ticks"
            )
        return self


def _index_text(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]" if idx else ""


def _check_int_range(where: str, name: str, arr, lo_hi: tuple[int, int]) -> None:
    a = np.asarray(arr)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            idx = np.unravel_index(np.argmax(np.mod(a, 1) != 0), a.shape)
            raise InvalidNetworkError(
                f"{where}: {name}{_index_text(idx)} = {a[idx]} is not an integer; quantize first "
                "(e.g. with mapper.quantize)"
            )
    lo, hi = lo_hi
    bad = (a < lo) | (a > hi)
    if np.any(bad):
        idx = np.unravel_index(np.argmax(bad), a.shape)
        raise InvalidNetworkError(
            f"{where}: {name}{_index_text(idx)} = {a[idx]} is outside [{lo}, {hi}]"
        )


def _validate_destinations(where: str, dests, layers) -> None:
    if len(dests) > MAX_DESTINATIONS:
        raise InvalidNetworkError(
            f"{where}: {len(dests)} destinations; the chip routes to at most {MAX_DESTINATIONS}"
        )
    for i, d in enumerate(dests):
        if d.layer not in layers:
            raise InvalidNetworkError(
                f"{where}: destinations[{i}].layer = {d.layer} is not a layer of the network "
                f"(layers: {sorted(layers)})"
            )
        if d.pooling not in POOLING_FACTORS:
            raise InvalidNetworkError(
                f"{where}: destinations[{i}].pooling = {d.pooling}; must be one of {POOLING_FACTORS}"
            )
        if d.feature_shift < 0:
            raise InvalidNetworkError(
                f"{where}: destinations[{i}].feature_shift = {d.feature_shift}; must be >= 0"
            )


def _validate_layer(lid: int, layer: CoreLayer, layers) -> None:
    where = f"layer {lid}"
    w = np.asarray(layer.weights)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise InvalidNetworkError(
            f"{where}: weights shape {w.shape}; expected (f, c, k, k) with a square kernel"
        )
    if len(layer.input_shape) != 3 or w.shape[1] != layer.input_shape[0]:
        raise InvalidNetworkError(
            f"{where}: input_shape {layer.input_shape} does not match weights with "
            f"{w.shape[1]} input channels; expected (c, h, w) with c = {w.shape[1]}"
        )
    _check_int_range(where, "weights", w, INT8_RANGE)
    _check_int_range(where, "threshold_high", layer.threshold_high, INT16_RANGE)
    _check_int_range(where, "threshold_low", layer.threshold_low, INT16_RANGE)
    if layer.threshold_high < 1:
        raise InvalidNetworkError(
            f"{where}: threshold_high = {layer.threshold_high}; must be >= 1 (a neuron would fire "
            "on every update)"
        )
    if layer.threshold_low >= layer.threshold_high:
        raise InvalidNetworkError(
            f"{where}: threshold_low = {layer.threshold_low} >= threshold_high = "
            f"{layer.threshold_high}; the lower bound must lie below the firing threshold"
        )
    if layer.reset not in RESET_MODES:
        raise InvalidNetworkError(f"{where}: reset = {layer.reset!r}; must be one of {RESET_MODES}")
    if any(s < 1 for s in layer.stride) or any(p < 0 for p in layer.padding):
        raise InvalidNetworkError(
            f"{where}: stride {layer.stride} / padding {layer.padding}; strides must be >= 1 "
            "and paddings >= 0"
        )
    f, ho, wo = layer.output_shape
    if ho < 1 or wo < 1:
        raise InvalidNetworkError(
            f"{where}: kernel {w.shape[2]} with padding {layer.padding} does not fit the input "
            f"{layer.input_shape}"
        )
    if layer.bias is not None:
        b = np.asarray(layer.bias)
        if b.shape != (f,):
            raise InvalidNetworkError(f"{where}: bias shape {b.shape}; expected ({f},)")
        _check_int_range(where, "bias", b, INT16_RANGE)
    if layer.initial_state is not None:
        s = np.asarray(layer.initial_state)
        if s.shape != (f, ho, wo):
            raise InvalidNetworkError(
                f"{where}: initial_state shape {s.shape}; expected {(f, ho, wo)}"
            )
        _check_int_range(where, "initial_state", s, INT16_RANGE)
    _validate_destinations(where, layer.destinations, layers)
    for i, d in enumerate(layer.destinations):
        if f + d.feature_shift > layers[d.layer].input_shape[0]:
            raise InvalidNetworkError(
                f"{where}: destinations[{i}] sends channels up to {f + d.feature_shift - 1} "
                f"but layer {d.layer} has {layers[d.layer].input_shape[0]} input channels"
            )


def _validate_dvs(dvs: DVSInput, layers) -> None:
    where = "dvs"
    if len(dvs.input_shape) != 3 or dvs.input_shape[0] != 2:
        raise InvalidNetworkError(
            f"{where}: input_shape {dvs.input_shape}; expected (2, h, w): the sensor has 2 polarities "
            "(for one input channel set merge_polarities=True, and on_channel / off_channel to select)"
        )
    if any(p not in POOLING_FACTORS for p in dvs.pooling):
        raise InvalidNetworkError(f"{where}: pooling {dvs.pooling}; each must be one of {POOLING_FACTORS}")
    ph, pw = dvs.pooled_shape
    cut = dvs.cut if dvs.cut is not None else (ph - 1, pw - 1)
    for axis, name in enumerate(("y", "x")):
        lo, hi, size = dvs.origin[axis], cut[axis], (ph, pw)[axis]
        if not 0 <= lo <= hi < size:
            raise InvalidNetworkError(
                f"{where}: ROI {name} from origin {lo} to cut {hi} (inclusive); expected "
                f"0 <= origin <= cut < {size}, the pooled size along {name}"
            )
    _validate_destinations(where, dvs.destinations, layers)
    channels = dvs.output_shape[0]
    for i, d in enumerate(dvs.destinations):
        if channels + d.feature_shift > layers[d.layer].input_shape[0]:
            raise InvalidNetworkError(
                f"{where}: destinations[{i}] sends channels up to {channels + d.feature_shift - 1} "
                f"but layer {d.layer} has {layers[d.layer].input_shape[0]} input channels"
            )
