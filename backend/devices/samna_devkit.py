"""``samna://<name>:<index>``: a SynSense Speck devkit driven through samna.

Coded against samna's API as sinabs 3.x uses it (``docs/chip-model.md``, "Boards and samna"): discovery by
``device_type_name`` sorted by USB address, ``samna.device.open_device``, a model with
``apply_configuration`` and source/sink nodes joined to our own nodes by two
``samna.graph.EventFilterGraph``s, and the devkit stop-watch for timestamps. samna is imported
only when a device is opened (:func:`backend.devices.samna_support.import_samna`).

Differences from sinabs, on purpose:

* a run ends on an explicit marker, not "read until quiet": once the stop-watch has passed
  the last input timestamp a ``ReadNeuronValue`` fence is written, and the run ends when its
  ``NeuronValue`` reply arrives (outputs are delivered in order before it);
* ``reset()`` re-applies the configuration with ``neurons_initial_value`` set to the
  configured initial states (zeros by default), never random values (sinabs#148);
* a flash is applied, not read back: samna offers no read of the chip's configuration (a
  model's ``get_configuration()``, which sinabs never calls for Speck, would return the host's
  copy), so the device does not claim "flash-verify" and ``spikeflash flash`` says so;
* the sensor drives the chip only during :meth:`~backend.devices.base.Device.stream`: the
  configuration is applied again with ``dvs_layer.pass_sensor_events = True`` and the
  ``dvs_filter`` asked for (Speck Dev Kit Datasheet §3.2.3.5, §3.2.3.8), and the flashed one
  (sensor events dropped) when the stream ends.

The slow clock is the devkit's external one (Speck Dev Kit Datasheet, SynSense, Aug 2023,
§3.2.6.3.2: ``io.set_slow_clk(True)``, ``io.set_slow_clk_rate(<integer Hz>)``); every core
is written with ``leak_internal_slow_clk_enable = False``, which §3.2.4.7 requires with an
external clock (True selects the clock counted from internal DVS events).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional

import numpy as np

from backend.devices.base import Device, DeviceInfo
from backend.protocol.timing import POLL_SLICE_S
from backend.errors import (
    DeviceDisconnected,
    DeviceNotFound,
    DeviceOpenError,
    FlashError,
    LinkTimeout,
    RunTimeout,
    UnsupportedURL,
)
from snnlib.events import EVENT_DTYPE, InvalidEventsError
from snnlib.network import DVS_LAYER_ID
from snnlib.readout import READOUT_LAYER_ID

if TYPE_CHECKING:
    import threading

    from backend.devices.stream import DVSFilter
    from mapper import ChipConfig
    from snnlib import IntegerNetwork


@dataclass(frozen=True)
class SamnaBoard:
    """A devkit kind: samna's ``device_type_name``, its chip, and the node class names."""

    type_name: str
    chip: str
    source_node: str
    sink_node: str


_SPECK2E = ("speck2e", "BasicSourceNode_speck2e_event_speck2e_input_event",
            "BasicSinkNode_speck2e_event_output_event")
_SPECK2F = ("speck2f", "BasicSourceNode_speck2f_event_input_event",
            "BasicSinkNode_speck2f_event_output_event")
#: URL name -> board (``docs/chip-model.md``, "Boards and samna")
BOARDS = {
    "speck2e": SamnaBoard("Speck2eTestBoard", *_SPECK2E),
    "speck2edevkit": SamnaBoard("Speck2eDevKit", *_SPECK2E),
    "speck2fmodule": SamnaBoard("Speck2fModuleDevKit", *_SPECK2F),
    "speck2fdevkit": SamnaBoard("Speck2fDevKit", *_SPECK2F),
}
#: seconds to wait for each reply beyond the input's own duration
REPLY_TIMEOUT = 2.0
#: extra seconds per million events written or read
TIMEOUT_PER_M_EVENTS = 10.0


def parse_samna_url(url: str) -> tuple[str, int]:
    """``"samna://speck2fdevkit:1"`` -> ``("speck2fdevkit", 1)``; the index defaults to 0."""
    rest = url.removeprefix("samna://") if isinstance(url, str) else ""
    name, _, index = rest.partition(":")
    if not isinstance(url, str) or not url.startswith("samna://") or name not in BOARDS or (
        index and not index.isdigit()
    ):
        raise UnsupportedURL(
            f"SamnaDevice(url={url!r}): expected 'samna://<name>:<index>' with name one of "
            f"{sorted(BOARDS)} and index >= 0, e.g. 'samna://speck2fdevkit:0'"
        )
    return name, int(index or 0)


def find_samna_devices(samna: Any) -> dict[str, Any]:
    """All supported devkits samna sees, as ``{url: samna DeviceInfo}`` (numbered per type by
    USB address, as sinabs numbers them)."""
    by_type: dict[str, list] = {}
    for info in samna.device.get_all_devices():
        by_type.setdefault(info.device_type_name, []).append(info)
    found = {}
    for name, board in BOARDS.items():
        infos = sorted(by_type.get(board.type_name, []), key=lambda i: i.usb_device_address)
        found.update({f"samna://{name}:{i}": info for i, info in enumerate(infos)})
    return found


def write_samna_configuration(network: IntegerNetwork, config: Any) -> Any:
    """Fill a samna ``SpeckConfiguration`` from an integer network (``docs/chip-model.md``, "Boards and samna").

    Weights go as ``[f][c][x][y]`` (torch's ky, kx swapped), initial states as ``[f][x][y]``.
    The DVS stage never passes sensor events: input comes from the host.
    """
    for core, layer in network.layers.items():
        cl = config.cnn_layers[core]
        c, h, w = layer.input_shape
        f, ho, wo = layer.output_shape
        cl.dimensions = {
            "input_shape": {"size": {"x": w, "y": h}, "feature_count": c},
            "output_shape": {"size": {"x": wo, "y": ho}, "feature_count": f},
            "padding": {"x": layer.padding[1], "y": layer.padding[0]},
            "stride": {"x": layer.stride[1], "y": layer.stride[0]},
            "kernel_size": int(layer.weights.shape[2]),
        }
        cl.weights = np.transpose(np.asarray(layer.weights), (0, 1, 3, 2)).astype(int).tolist()
        bias = np.zeros(f, int) if layer.bias is None else np.asarray(layer.bias, int)
        cl.biases = bias.tolist()
        cl.leak_enable = bool(layer.leak_enable)
        cl.leak_internal_slow_clk_enable = False  # leak ticks come from the devkit's external clock
        cl.threshold_high = int(layer.threshold_high)
        cl.threshold_low = int(layer.threshold_low)
        cl.return_to_zero = layer.reset == "zero"
        state = np.zeros((f, ho, wo), int) if layer.initial_state is None else layer.initial_state
        cl.neurons_initial_value = np.transpose(np.asarray(state, int), (0, 2, 1)).tolist()
        cl.monitor_enable = bool(layer.monitor)
        _write_destinations(cl.destinations, layer.destinations)
    if network.readout is not None:
        _write_readout(config.readout, network.readout)
    dvs = network.dvs
    config.dvs_layer.pass_sensor_events = False
    if dvs is not None:
        d = config.dvs_layer
        _, h, w = dvs.input_shape
        py, px = dvs.pooling
        cut = dvs.cut if dvs.cut is not None else (h // py - 1, w // px - 1)
        d.merge = dvs.merge_polarities
        d.on_channel, d.off_channel = dvs.on_channel, dvs.off_channel
        d.pooling.y, d.pooling.x = py, px
        d.origin.y, d.origin.x = dvs.origin
        d.cut.y, d.cut.x = cut
        d.mirror.x, d.mirror.y = dvs.mirror_x, dvs.mirror_y
        d.mirror_diagonal = dvs.mirror_diagonal
        d.monitor_enable = dvs.monitor
        _write_destinations(d.destinations, dvs.destinations)
    return config


def write_dvs_filter(config: Any, dvs_filter: Optional[DVSFilter]) -> Any:
    """Set a samna ``SpeckConfiguration``'s ``dvs_filter`` (Speck Dev Kit Datasheet §3.2.3.5):
    off for None; else one mode, its threshold (slow-clock ticks) and window (0 x 0 for the
    low-pass mode, as the datasheet sets it)."""
    f = config.dvs_filter
    f.enable = dvs_filter is not None
    if dvs_filter is not None:
        f.hot_pixel_filter_enable = dvs_filter.mode == "hot-pixel"
        f.low_pass_mode_enable = dvs_filter.mode == "low-pass"
        f.threshold = dvs_filter.threshold
        f.filter_size.y, f.filter_size.x = (0, 0) if dvs_filter.mode == "low-pass" else dvs_filter.size
    return config


def _write_readout(ro: Any, readout) -> None:
    """The readout layer as the datasheet (§3.2.5.3) and sinabs' readout tutorial set it:
    addressing mode 0b11 (1x * 1y * 16f: classes are channels of a 1x1 map), the moving-average
    length through the low-pass filter switches, ``ReadoutPinValue`` events on."""
    ro.enable = True
    ro.readout_configuration_sel = 0b11
    ro.threshold = int(readout.threshold)
    ro.low_pass_filter_disable = readout.average == 1
    ro.low_pass_filter32_not16 = readout.average == 32
    ro.readout_pin_monitor_enable = True


def _write_destinations(slots: Any, destinations: list) -> None:
    for slot, dest in zip(slots, destinations):
        slot.enable = True
        slot.layer = dest.layer
        slot.pooling = dest.pooling
        slot.feature_shift = dest.feature_shift


def neuron_address(channel: int, y: int, x: int, shape: tuple[int, int, int]) -> int:
    """Address of neuron ``(channel, y, x)`` in a ``(f, h, w)`` map for Read/WriteNeuronValue:
    ``c | x << cb | y << (cb + xb)`` with ``cb, xb`` the bit widths of f and w
    (``ceil(log2(n))``, 0 for n = 1).

    Source: sinabs 3.1.3, ``sinabs/backend/dynapcnn/io.py``, ``calculate_neuron_address`` (the
    only public statement of the layout; the datasheet has none). It shifts y by ``cb + yb``
    (the bit width of h) instead: the same for maps with equal bit widths of h and w, which
    sinabs' tests use; for other maps the layout is assumed (docs/chip-model.md), since
    sinabs' form gives two neurons one address when w needs more bits than h."""
    f, _, w = shape
    cb, xb = (f - 1).bit_length(), (w - 1).bit_length()
    return channel | (x << cb) | (y << (cb + xb))


def slow_clock_rate_hz(period_us: int, url: str) -> int:
    """The devkit's slow clock rate in integer Hz for a period in µs (``set_slow_clk_rate``
    takes an int); a period that does not divide one second exactly raises :class:`FlashError`."""
    if 1_000_000 % period_us:
        raise FlashError(f"{url}: slow_clock_period_us={period_us} is {1e6 / period_us:.6g} Hz; the "
                         "devkit's slow clock runs at an integer rate in Hz",
                         hint="map with a period that divides 1,000,000 µs, e.g. 1000 (1 kHz) or 400 (2.5 kHz)")
    return 1_000_000 // period_us


class SamnaDevice(Device):
    """A Speck devkit through samna. ``url``: ``samna://<name>:<index>`` (see :data:`BOARDS`)."""

    def __init__(self, url: str):
        from backend.devices.samna_support import import_samna

        name, index = parse_samna_url(url)
        super().__init__(url)
        self.board = BOARDS[name]
        self._samna = samna = import_samna()
        found = find_samna_devices(samna)
        key = f"samna://{name}:{index}"
        if key not in found:
            raise DeviceNotFound(
                f"{self.url}: no such devkit (samna sees: {sorted(found) or 'none'})",
                hint="plug it in, check `spikeflash devices`, or use another index",
            )
        self._device_info = found[key]
        self._handle = samna.device.open_device(self._device_info)
        if self._handle is None:
            raise DeviceOpenError(f"{self.url}: samna could not open the devkit",
                                  hint="close other programs using it (it opens once per machine)")
        self._model = self._handle.get_model()
        chip_module = getattr(samna, self.board.chip)
        self._chip_module = chip_module
        self._source = getattr(samna, self.board.source_node)()
        self._sink = getattr(samna, self.board.sink_node)()
        self._graphs = [samna.graph.EventFilterGraph(), samna.graph.EventFilterGraph()]
        self._graphs[0].sequential([self._source, self._model.get_sink_node()])
        self._graphs[1].sequential([self._model.get_source_node(), self._sink])
        for graph in self._graphs:
            graph.start()
        self._samna_config: Any = None

    def info(self) -> DeviceInfo:
        self._require_open()
        return DeviceInfo(self.url, "samna", self.board.chip,
                          f"samna {getattr(self._samna, '__version__', 'unknown')}",
                          capabilities=("read-states", "reset-states", "leak"))

    def _flash(self, config: ChipConfig) -> str:
        """Apply ``config``; the digest returned is the host's (samna has no read-back)."""
        self._require_open()
        network = config.to_network()
        samna_config = write_samna_configuration(
            network, self._chip_module.configuration.SpeckConfiguration())
        if network.slow_clock_period_us is not None:  # the leak clock runs from the start
            io = self._handle.get_io_module()
            io.set_slow_clk(True)
            io.set_slow_clk_rate(slow_clock_rate_hz(network.slow_clock_period_us, self.url))
        self._model.apply_configuration(samna_config)
        self._samna_config = samna_config
        return config.digest()

    def _reset(self) -> None:
        self._require_open()
        self._model.apply_configuration(self._samna_config)
        self._handle.get_stop_watch().reset()

    def _read_states(self) -> dict[int, np.ndarray]:
        self._require_open()
        network = self.config.to_network()
        event = self._chip_module.event
        shapes = {core: layer.output_shape for core, layer in network.layers.items()}
        requests, where = [], {}
        for core, shape in shapes.items():
            for c, y, x in np.ndindex(*shape):
                request = event.ReadNeuronValue()
                request.layer, request.address = core, neuron_address(c, y, x, shape)
                requests.append(request)
                where[(core, request.address)] = (c, y, x)
        self._sink.get_events()  # drain
        self._source.write(requests)
        states = {core: np.zeros(shape, np.int16) for core, shape in shapes.items()}
        pending = set(where)
        deadline = time.monotonic() + REPLY_TIMEOUT + TIMEOUT_PER_M_EVENTS * len(requests) / 1e6
        while pending:
            for ev in self._sink.get_events():
                key = (getattr(ev, "layer", None), getattr(ev, "address", None))
                if isinstance(ev, event.NeuronValue) and key in pending:
                    states[key[0]][where[key]] = ev.neuron_state
                    pending.discard(key)
            if pending and time.monotonic() > deadline:
                raise LinkTimeout(f"{self.url}: {len(pending)} of {len(requests)} neuron states "
                                  "were not returned in time", counters=self.counters)
        return states

    def _run_events(self, events: np.ndarray, timeout: Optional[float],
                    until_us: Optional[int] = None) -> np.ndarray:
        """The devkit's stop watch starts at the run's first event: input times are sent
        relative to it and output times shifted back, so absolute timestamps work."""
        self._require_open()
        event = self._chip_module.event
        self._sink.get_events()  # drain what arrived between runs
        origin = int(events["t"][0]) if len(events) else 0
        relative = events.copy()
        relative["t"] -= origin
        watch = self._handle.get_stop_watch()
        watch.reset()
        watch.start()
        started = time.monotonic()
        self._source.write(events_to_samna(relative, event))
        last_t = max(int(relative["t"].max()) if len(events) else 0, (until_us or origin) - origin)
        if timeout is None:
            timeout = last_t / 1e6 + REPLY_TIMEOUT + TIMEOUT_PER_M_EVENTS * len(events) / 1e6
        deadline = started + timeout
        time.sleep(max(0.0, min(deadline, started + last_t / 1e6) - time.monotonic()))
        fence_core = min(self.config.to_network().layers)
        fence = event.ReadNeuronValue()
        fence.layer, fence.address = fence_core, 0
        self._source.write([fence])
        received: list = []
        while True:
            batch = self._sink.get_events()
            done = next((i for i, ev in enumerate(batch) if isinstance(ev, event.NeuronValue)
                         and ev.layer == fence_core and ev.address == 0), None)
            received.extend(batch if done is None else batch[:done])
            if done is not None:
                break
            if time.monotonic() > deadline:
                spikes = [ev for ev in received if isinstance(ev, event.Spike)]
                raise RunTimeout(
                    f"{self.url}: run did not end within {timeout:.1f} s: read {len(spikes)} "
                    f"events, last timestamp {max((s.timestamp for s in spikes), default=None)} µs, "
                    f"input ends at {last_t} µs", counters=self.counters)
        watch.stop()
        out = samna_to_events([ev for ev in received if isinstance(ev, (event.Spike, event.ReadoutPinValue))])
        out["t"] += origin
        c = self.counters
        c.sent += len(events)
        c.received += len(out)
        for core, n in zip(*np.unique(out["layer"], return_counts=True)):
            c.core_out[int(core)] = c.core_out.get(int(core), 0) + int(n)
        return out

    def _stream(self, stop: threading.Event, dvs_filter: Optional[DVSFilter]) -> Iterator[np.ndarray]:
        """The devkit's pixel array drives the chip: the configuration again, with sensor events
        passed and ``dvs_filter``; output as the sink delivers it (times from the stop watch,
        started with the stream); the flashed configuration again when it ends. ``sent`` stays
        0: the sensor's events never reach the host (monitor the DVS stage to see them)."""
        self._require_open()
        network = self.config.to_network()
        if network.dvs is None:
            raise InvalidEventsError(f"{self.url}: stream(): the sensor's events enter the DVS stage, and "
                                     "this configuration has none; map the model with dvs=True (--dvs)")
        event = self._chip_module.event
        live = write_samna_configuration(network, self._chip_module.configuration.SpeckConfiguration())
        live.dvs_layer.pass_sensor_events = True
        write_dvs_filter(live, dvs_filter)
        self._sink.get_events()  # drain what arrived before
        watch = self._handle.get_stop_watch()
        watch.reset()
        watch.start()
        try:
            self._model.apply_configuration(live)
            while not stop.is_set():
                batch = [ev for ev in self._sink.get_events() if isinstance(ev, (event.Spike, event.ReadoutPinValue))]
                if batch:
                    out = samna_to_events(batch)
                    for core, n in zip(*np.unique(out["layer"], return_counts=True)):
                        self.counters.core_out[int(core)] = self.counters.core_out.get(int(core), 0) + int(n)
                    yield out
                else:
                    stop.wait(POLL_SLICE_S)
        finally:
            self._model.apply_configuration(self._samna_config)  # sensor events dropped again
            watch.stop()

    def _close(self) -> None:
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            for graph in self._graphs:
                graph.stop()
        finally:
            self._samna.device.close_device(handle)

    def _require_open(self) -> None:
        if self._handle is None:
            raise DeviceDisconnected(f"{self.url}: the device was closed; open it again")


def events_to_samna(events: np.ndarray, event_module: Any) -> list:
    """Our input events as samna events: ``Spike`` for cores, ``DvsEvent`` for layer 13
    (channel = polarity). One Python object per event: that is samna's API."""
    out = []
    for t, layer, channel, y, x in events.tolist():
        if layer == DVS_LAYER_ID:
            ev = event_module.DvsEvent()
            ev.p = bool(channel)
        else:
            ev = event_module.Spike()
            ev.layer, ev.feature = layer, channel
        ev.x, ev.y, ev.timestamp = x, y, t
        out.append(ev)
    return out


def samna_to_events(spikes: list) -> np.ndarray:
    """samna ``Spike`` objects (and ``ReadoutPinValue``s: layer 12, channel = the class ``index``)
    as an EVENT_DTYPE array, in the order given."""
    return np.array([(s.timestamp, s.layer, s.feature, s.y, s.x) if hasattr(s, "layer")
                     else (s.timestamp, READOUT_LAYER_ID, s.index, 0, 0) for s in spikes], dtype=EVENT_DTYPE)
