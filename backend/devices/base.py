"""The one device interface.

Every device (in-process emulator, a board on the wire protocol, a samna devkit) is a
:class:`Device`. The public methods here own validation, conversion and the result layout;
drivers implement only the raw ``_flash`` / ``_reset`` / ``_read_states`` / ``_run_events`` /
``_close`` / ``info`` methods, and ``_stream`` for a device with a sensor (template method,
as python-can's ``BusABC``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np
import torch

from backend.devices.stream import MAX_QUEUED_EVENTS, DVSFilter, Stream
from backend.errors import (ConfigNotHeld, DeviceBusy, FlashMismatch, NoSensor, NotFlashed, RasterTooLarge,
                            VersionMismatch)
from snnlib.events import EVENT_DTYPE
from snnlib.network import DVS_LAYER_ID
from snnlib.readout import READOUT_CLASSES, READOUT_LAYER_ID

if TYPE_CHECKING:
    import threading

    from mapper import ChipConfig
    from snnlib import IntegerNetwork

#: the default memory budget of one run's rasters (bytes; int32 counts)
MAX_RASTER_BYTES = 1 << 30


@dataclass
class DeviceInfo:
    """What a device says about itself. ``capabilities`` use one vocabulary: "flash-verify"
    (digest of the applied configuration), "config-readback", "read-states", "reset-states",
    "status" (device counters on request), "leak" (slow-clock leak ticks), "bit-exact"
    (runs the event-exact model itself)."""

    url: str
    kind: str  # "emulator", "serial" or "samna"
    chip: str
    firmware: str
    protocol_version: Optional[int] = None
    capabilities: tuple[str, ...] = ()


@dataclass
class Counters:
    """Event accounting. ``sent``: input events handed to the device (in a stream: sensor
    events the chip took in, as the device reports them); ``received``: output events that
    reached the host; ``dropped``: events the device or link reports lost, or that a
    stream's full queue dropped (``on_full="drop"``);
    ``core_in`` / ``core_out``: per-core event counts as the device reports them;
    ``link``: transport counters (frames, retransmits, crc_errors, garbage_bytes, ...)."""

    sent: int = 0
    received: int = 0
    dropped: int = 0
    core_in: dict[int, int] = field(default_factory=dict)
    core_out: dict[int, int] = field(default_factory=dict)
    link: dict[str, int] = field(default_factory=dict)

    def since(self, earlier: "Counters") -> "Counters":
        """What was counted after the snapshot ``earlier`` (a copy taken with ``snapshot()``)."""
        def delta(now: dict, then: dict) -> dict:
            return {k: v - then.get(k, 0) for k, v in now.items() if v != then.get(k, 0)}

        return Counters(self.sent - earlier.sent, self.received - earlier.received,
                        self.dropped - earlier.dropped, delta(self.core_in, earlier.core_in),
                        delta(self.core_out, earlier.core_out), delta(self.link, earlier.link))

    def snapshot(self) -> "Counters":
        """An independent copy of the totals so far."""
        return Counters(self.sent, self.received, self.dropped, dict(self.core_in),
                        dict(self.core_out), dict(self.link))

    def add_run(self, sent: int, received: int, dropped: int,
                core_in: dict[int, int], core_out: dict[int, int]) -> None:
        """Add one run's accounting (as the device reported it) to the totals."""
        self.sent += sent
        self.received += received
        self.dropped += dropped
        for total, run in ((self.core_in, core_in), (self.core_out, core_out)):
            for core, n in run.items():
                total[core] = total.get(core, 0) + n


@dataclass
class RunResult:
    """Output of one :meth:`Device.run`.

    ``events``: all output events (EVENT_DTYPE) in device order, always complete. ``rasters``:
    per monitored layer name, a ``(n_steps, C, H, W)`` count tensor whose bin ``i`` covers
    ``[t0_us + i*dt_us, t0_us + (i+1)*dt_us)`` — the same bins as the input raster; empty
    when the run asked for ``rasters=False``. ``t0_us`` is the run's time origin: the one
    passed, else the first input event's time (0 for a raster input). ``outside_rasters``:
    output events in ``events`` but in no raster bin: earlier than ``t0_us`` (leak ticks due
    before the first input event), or later than the bins the budget allows. ``counters``: what this run added to the device's
    counters (``Device.counters`` has totals).
    """

    events: np.ndarray
    rasters: dict[str, torch.Tensor]
    t0_us: int
    dt_us: int
    n_steps: int
    counters: Counters
    outside_rasters: int = 0


class Device(ABC):
    """A neuromorphic device. Use as a context manager; it is closed (and stopped) on exit."""

    #: whether what is flashed stays on the device for the next process that opens its URL
    holds_across_processes = True

    def __init__(self, url: str):
        self.url = url
        self.config: Optional[ChipConfig] = None
        self.counters = Counters()
        self._open_stream: Optional[Stream] = None

    # -- what drivers implement -------------------------------------------------------
    @abstractmethod
    def info(self) -> DeviceInfo:
        """Chip, firmware / protocol version and capabilities."""

    @abstractmethod
    def _flash(self, config: ChipConfig) -> str:
        """Write ``config``; return the digest the device computed of what it applied."""

    def _digest(self, config: ChipConfig) -> str:
        """The digest a device that applied ``config`` reports: sha256 of the form it receives
        (:meth:`ChipConfig.digest`, of the JSON; the wire protocol's image digest for boards)."""
        return config.digest()

    def _held_digest(self) -> Optional[str]:
        """The digest (in :meth:`_digest`'s form) of the configuration the device holds now,
        None when it holds none. Devices that cannot tell raise :class:`ConfigNotHeld`."""
        raise ConfigNotHeld(f"{self.url}: this device cannot report which configuration it holds",
                            hint="flash the configuration (drop --no-flash / flash=False)")

    @abstractmethod
    def _reset(self) -> None:
        """Set every neuron state back to its initial value (zero unless configured)."""

    @abstractmethod
    def _read_states(self) -> dict[int, np.ndarray]:
        """Neuron states per core id, int16 ``(f, h, w)``."""

    @abstractmethod
    def _run_events(self, events: np.ndarray, timeout: Optional[float],
                    until_us: Optional[int] = None) -> np.ndarray:
        """Send ``events``, let the device apply the leak ticks up to ``until_us`` (µs; None:
        none after the last event), wait for the end-of-run marker, return the output events.
        Update ``self.counters``."""

    @abstractmethod
    def _close(self) -> None:
        """Stop the device and release the port."""

    def _stream(self, stop: threading.Event, dvs_filter: Optional[DVSFilter]) -> Iterator[np.ndarray]:
        """Start the chip on its own sensor; yield output batches (EVENT_DTYPE) as they come,
        until the sensor ends or ``stop`` is set (then end the device's stream); add the
        stream's accounting to ``self.counters`` (``received`` and host-side drops are counted
        by the caller). Runs on the stream's pump thread."""
        raise NoSensor(f"{self.url}: this kind of device has no sensor to stream from")

    # -- the public interface ---------------------------------------------------------
    def flash(self, config: ChipConfig) -> None:
        """Validate ``config`` (:meth:`mapper.ChipConfig.validate`: an invalid one raises
        ``mapper.ConfigError`` on every device, before anything is sent; one for another chip
        than the device's raises :class:`VersionMismatch`), write it to the device and verify
        the digest it reports back."""
        from mapper import ChipConfig

        if not isinstance(config, ChipConfig):
            raise TypeError(f"flash(config): expected a mapper.ChipConfig, got {type(config).__name__}")
        config.validate()
        self._require_idle("flash")
        chip = self.info().chip
        if config.chip != chip:
            raise VersionMismatch(f"{self.url}: the device is a {chip}, the configuration is for "
                                  f"{config.chip}", hint=f"map the model with chip={chip!r}")
        applied, sent = self._flash(config), self._digest(config)
        if applied != sent:
            raise FlashMismatch(
                f"{self.url}: device applied configuration {applied[:16]}..., "
                f"sent {sent[:16]}...",
                counters=self.counters,
                hint="flash again; if it persists, the link corrupts data or the firmware is wrong",
            )
        self.config = config

    def digest(self, config: ChipConfig) -> str:
        """The digest this device reports for ``config`` once it holds it (SHA-256 hex of the
        configuration image for boards and served emulators, of the JSON for ``emu://``)."""
        return self._digest(config)

    def adopt(self, config: ChipConfig) -> None:
        """Use ``config`` without writing it: the device must already hold it, e.g. flashed by
        an earlier command on a served emulator or a board (``compare --no-flash``). Unless
        this object flashed ``config`` itself, the device is asked which configuration it
        holds (a board reads its image back); another digest, none, or a device that cannot
        tell raise :class:`ConfigNotHeld` naming both digests and the fix."""
        from mapper import ChipConfig

        if not isinstance(config, ChipConfig):
            raise TypeError(f"adopt(config): expected a mapper.ChipConfig, got {type(config).__name__}")
        config.validate()
        self._require_idle("adopt")
        wanted = self._digest(config)
        if self.config is not None and self._digest(self.config) == wanted:
            self.config = config  # this object flashed it and verified the digest
            return
        held = self._held_digest()
        if held != wanted:
            what = f"configuration {held}" if held is not None else "no configuration"
            raise ConfigNotHeld(
                f"{self.url}: the device holds {what}, not the given one ({wanted})",
                counters=self.counters,
                hint="flash it first (`spikeflash flash CONFIG --device URL`, or drop --no-flash)"
                     + ("" if self.holds_across_processes else "; emu:// lives in its process: "
                        "serve an emulator (`spikeflash emulate --pty`) to keep a configuration "
                        "between commands"))
        self.config = config

    def reset(self) -> None:
        """Clear all neuron states on the device (really: the states read back as initial)."""
        self._require_config("reset")
        self._reset()

    def read_states(self) -> dict[int, np.ndarray]:
        """Neuron states per core id, int16 ``(f, h, w)``."""
        self._require_config("read_states")
        return self._read_states()

    def run(
        self,
        inputs: Union[np.ndarray, torch.Tensor],
        *,
        layer: Optional[int] = None,
        dt_us: int = 1000,
        t0_us: Optional[int] = None,
        until_us: Optional[int] = None,
        timeout: Optional[float] = None,
        rasters: bool = True,
        max_raster_bytes: int = MAX_RASTER_BYTES,
    ) -> RunResult:
        """Run input events, or a ``(T, C, H, W)`` count raster entering core ``layer``.

        ``dt_us``: raster bin width in µs. ``t0_us``: time of bin 0 (None: the first input
        event's time for events, 0 for a raster), so absolute timestamps give rasters that span
        the run, never from 0. ``until_us``: also apply the leak ticks up to this time (µs)
        after the last event, as ``simulate`` does. ``timeout``: seconds to wait for the end of
        the run (None: a deadline that scales with the work). ``rasters=False`` returns events
        only. Rasters larger than ``max_raster_bytes`` raise :class:`RasterTooLarge` before
        the run starts. Returns the output events and a raster per monitored layer.
        """
        from snnlib.events import check_events, raster_to_events

        config = self._require_config("run")
        network = config.to_network()
        if isinstance(dt_us, bool) or not isinstance(dt_us, (int, np.integer)) or dt_us <= 0:
            raise ValueError(f"run(dt_us={dt_us!r}): the bin width must be a positive number of µs")
        for name, value in (("t0_us", t0_us), ("until_us", until_us)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                                      or value < 0):
                raise ValueError(f"run({name}={value!r}): expected a time in µs, 0..2**63-1")
        if isinstance(inputs, np.ndarray) and inputs.dtype == EVENT_DTYPE:
            events = inputs
            n_in_steps = 0
        else:
            raster = _as_raster(inputs)
            if layer is None:
                raise ValueError("run(inputs=raster) needs layer=<core id> that the raster enters")
            t0_us = 0 if t0_us is None else t0_us
            events = raster_to_events(raster, layer, dt_us, t0_us)
            n_in_steps = raster.shape[0]
        check_events(events, network.input_shapes())
        last_in = int(events["t"][-1]) if len(events) else None
        if until_us is not None and last_in is not None and until_us < last_in:
            raise ValueError(f"run(until_us={until_us}): earlier than the last input event (t = {last_in})")
        if t0_us is None:
            t0_us = int(events["t"][0]) if len(events) else (until_us or 0)
        names = config.monitored_layer_names() if rasters else {}
        end = max(last_in if last_in is not None else t0_us, until_us or 0)
        n_steps = max(n_in_steps, (end - t0_us) // dt_us + 1 if end >= t0_us else 0)
        shapes = {core: monitored_shape(network, core) for core in names}
        _check_raster_budget(shapes, n_steps, t0_us, end, dt_us, max_raster_bytes)
        before = self.counters.snapshot()
        out = self._run_events(events, timeout, until_us)  # from here on, never lose `out`
        if names and len(out) and int(out["t"].max()) >= t0_us + n_steps * dt_us:  # device clock ran on
            wanted = (int(out["t"].max()) - t0_us) // dt_us + 1
            n_steps = max(n_steps, min(wanted, max_raster_bytes // max(1, 4 * _neurons(shapes))))
        inside = (out["t"] >= t0_us) & (out["t"] < t0_us + n_steps * dt_us)
        return RunResult(out, _rasters(out[inside], names, shapes, t0_us, dt_us, n_steps), t0_us,
                         dt_us, n_steps, self.counters.since(before), len(out) - int(inside.sum()))

    def stream(self, *, max_queued: int = MAX_QUEUED_EVENTS, on_full: str = "raise",
               dvs_filter: Optional[DVSFilter] = None) -> Stream:
        """The live mode: run the chip on the device's own sensor (a devkit's pixel array; an
        emulator's replayed recording) and iterate over its output batches as they come.

        ``max_queued``: the most output events the host holds for the program (the bound of
        the queue between the device and the iteration; a batch always fits an empty queue).
        ``on_full``: when a batch does not fit, ``"raise"`` :class:`StreamOverflow` after the
        batches before it (the stream stops) or ``"drop"`` it, counted in ``counters.dropped``.
        ``dvs_filter``: the sensor's noise filter (samna devkits only). Use as a context
        manager; leaving it (or Ctrl-C in it, or ``close()``) stops the device's stream, and
        the device is ready for ``run`` again. The output equals the event-exact simulation
        of the sensor's events. Raises :class:`NoSensor` when the device has none."""
        self._require_config("stream")
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError(f"stream(max_queued={max_queued!r}): expected a number of events >= 1")
        if on_full not in ("raise", "drop"):
            raise ValueError(f"stream(on_full={on_full!r}): expected 'raise' or 'drop'")
        self._open_stream = Stream(self, lambda stop: self._stream(stop, dvs_filter), max_queued, on_full)
        return self._open_stream

    def _stream_closed(self, stream: Stream) -> None:
        if self._open_stream is stream:
            self._open_stream = None

    def close(self) -> None:
        """Stop the device (and its stream) and release it. Safe to call twice."""
        if self._open_stream is not None:
            self._open_stream.close()
        self._close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_config(self, what: str) -> "ChipConfig":
        self._require_idle(what)
        if self.config is None:
            raise NotFlashed(f"{self.url}: {what}() needs a configuration; call flash(config) first")
        return self.config

    def _require_idle(self, what: str) -> None:
        """Raise :class:`DeviceBusy` while a stream runs (one the device ended is closed here)."""
        if self._open_stream is not None and self._open_stream.ended:
            self._open_stream.close()
        if self._open_stream is not None:
            raise DeviceBusy(f"{self.url}: {what}() while a stream is open (or still stopping) on this device",
                             hint="close the stream first (leave its with block, or stream.close())")


def _as_raster(inputs) -> torch.Tensor:
    """A ``(T, C, H, W)`` raster from ``inputs``; structured arrays that are not EVENT_DTYPE
    (e.g. Tonic's ``(x, y, t, p)``) are refused naming the conversion."""
    if isinstance(inputs, np.ndarray) and inputs.dtype.names is not None:
        from snnlib.events import InvalidEventsError

        raise InvalidEventsError(
            f"run(inputs): a structured array with fields {inputs.dtype.names}; convert it with "
            "backend.files.events.xytp_to_events (Tonic x, y, t, p) or pass EVENT_DTYPE events")
    raster = torch.as_tensor(inputs)
    if raster.ndim != 4:
        raise ValueError(
            f"run(inputs): raster shape {tuple(raster.shape)}; expected (T, C, H, W) "
            "counts, or an EVENT_DTYPE event array"
        )
    return raster


def _check_raster_budget(shapes: dict, n_steps: int, t0_us: int, end_us: int, dt_us: int,
                         budget: int) -> None:
    """Raise :class:`RasterTooLarge` when int32 rasters of ``n_steps`` bins exceed ``budget``."""
    size = 4 * n_steps * _neurons(shapes)
    if size > budget:
        raise RasterTooLarge(
            f"run: rasters of {n_steps} bins of {dt_us} µs (t = {t0_us}..{end_us} µs) need "
            f"{size / 2**20:.0f} MiB, over the {budget / 2**20:.0f} MiB budget",
            hint="pass rasters=False for events only, a coarser dt_us, t0_us nearer the events, "
                 "or a larger max_raster_bytes")


def _neurons(shapes: dict) -> int:
    return sum(int(np.prod(s)) for s in shapes.values())


def _rasters(out: np.ndarray, names: dict, shapes: dict, t0_us: int, dt_us: int,
             n_steps: int) -> dict[str, torch.Tensor]:
    """Per monitored layer name, the counts of its output events (all inside the bins)."""
    from snnlib.events import events_to_raster

    return {name: torch.from_numpy(events_to_raster(out[out["layer"] == core], shapes[core],
                                                    dt_us, t0_us, n_steps))
            for core, name in names.items()}


def monitored_shape(network: IntegerNetwork, layer: int) -> tuple[int, int, int]:
    """``(c, h, w)`` of the events a monitored layer emits: a core's neuron map (unpooled),
    the DVS stage's output after polarity merge, pooling, ROI crop and diagonal mirroring, or
    the readout's classes ``(16, 1, 1)`` (channel = 1-based class)."""
    if layer == READOUT_LAYER_ID and network.readout is not None:
        return (READOUT_CLASSES + 1, 1, 1)
    if layer != DVS_LAYER_ID:
        return network.layers[layer].output_shape
    dvs = network.dvs
    c, h, w = dvs.input_shape
    (py, px), (oy, ox) = dvs.pooling, dvs.origin
    cy, cx = dvs.cut if dvs.cut is not None else (h // py - 1, w // px - 1)
    shape = (1 if dvs.merge_polarities else c, cy - oy + 1, cx - ox + 1)
    return (shape[0], shape[2], shape[1]) if dvs.mirror_diagonal else shape
