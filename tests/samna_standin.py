"""A small stand-in for the ``samna`` module, faithful to the API sinabs uses (``docs/chip-model.md``, "Boards and samna"),
for unit tests of ``backend.devices.samna_devkit``: install it with
``monkeypatch.setitem(sys.modules, "samna", make_samna(...))``.

It is a working devkit, not a recorder: the model turns the applied ``SpeckConfiguration``
back into an ``IntegerNetwork`` (the inverse of the driver's conversion, written
independently here) and runs written events through ``snnlib.EventSimulator``; it answers
``ReadNeuronValue`` with ``NeuronValue`` in order with the spikes.

Where samna's behaviour matters and is unknown here, it is the strict one: a core's leak
ticks come from the devkit's external slow clock only when ``leak_internal_slow_clk_enable``
is False (the datasheet's internal, DVS-count clock is not modelled: such a core never
ticks) and that clock was switched on (``set_slow_clk(True)``), ``set_slow_clk_rate`` takes an int as a pybind-bound ``int`` parameter does, and the
model has no ``get_configuration`` (samna reads no configuration back from the chip).

The devkit's pixel array is ``kit.pixel_array``, a list of ``DvsEvent``s it produces: applying a
configuration whose ``dvs_layer.pass_sensor_events`` is True feeds them to the chip (the
datasheet's §3.2.3.8: otherwise sensor events are dropped). ``dvs_filter`` (§3.2.3.5) is held
as written, not modelled.
"""

from __future__ import annotations

import copy
import types

import numpy as np

from snnlib.events import EVENT_DTYPE
from snnlib.network import DVS_LAYER_ID, CoreLayer, Destination, DVSInput, IntegerNetwork
from snnlib.readout import READOUT_LAYER_ID, Readout


class _Record:
    """An attribute bag; dict values assigned to it become nested records (as pybind does)."""

    def __init__(self, **fields):
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name, value):
        object.__setattr__(self, name, _Record(**value) if isinstance(value, dict) else value)


def _destination():
    return _Record(enable=False, layer=0, pooling=1, feature_shift=0)


def _cnn_layer():
    return _Record(dimensions=None, weights=[], biases=[], leak_enable=False,
                   leak_internal_slow_clk_enable=True, threshold_high=0,
                   threshold_low=0, return_to_zero=False, neurons_initial_value=[],
                   monitor_enable=False, destinations=[_destination(), _destination()])


def SpeckConfiguration():  # noqa: N802 (samna's class name)
    xy = lambda v: _Record(x=v, y=v)  # noqa: E731
    dvs = _Record(merge=False, on_channel=True, off_channel=True, pooling=xy(1), origin=xy(0),
                  cut=xy(127), mirror=xy(False), mirror_diagonal=False, monitor_enable=False,
                  pass_sensor_events=True, destinations=[_destination(), _destination()])
    dvs_filter = _Record(enable=False, filter_size=xy(0), hot_pixel_filter_enable=False,
                         low_pass_mode_enable=False, threshold=0)
    readout = _Record(enable=False, readout_configuration_sel=0, threshold=0, low_pass_filter_disable=False,
                      low_pass_filter32_not16=False, readout_pin_monitor_enable=False)
    return _Record(cnn_layers=[_cnn_layer() for _ in range(9)], dvs_layer=dvs, dvs_filter=dvs_filter,
                   readout=readout)


def _event_types():
    return types.SimpleNamespace(
        Spike=type("Spike", (_Record,), {}),
        DvsEvent=type("DvsEvent", (_Record,), {}),
        ReadNeuronValue=type("ReadNeuronValue", (_Record,), {}),
        ReadoutPinValue=type("ReadoutPinValue", (_Record,), {}),
        NeuronValue=type("NeuronValue", (_Record,), {}),
    )


def config_to_network(config, slow_clock_period_us=None) -> IntegerNetwork:
    """The network a SpeckConfiguration describes (cores with weights written)."""
    def dests(slots):
        return [Destination(d.layer, d.pooling, d.feature_shift) for d in slots if d.enable]

    layers = {}
    for core, cl in enumerate(config.cnn_layers):
        if not cl.weights:
            continue
        dims = cl.dimensions
        weights = np.transpose(np.array(cl.weights, np.int8), (0, 1, 3, 2))
        layers[core] = CoreLayer(
            weights, (dims.input_shape.feature_count, dims.input_shape.size.y, dims.input_shape.size.x),
            cl.threshold_high, cl.threshold_low, (dims.stride.y, dims.stride.x),
            (dims.padding.y, dims.padding.x), "zero" if cl.return_to_zero else "subtract",
            np.array(cl.biases, np.int16), cl.leak_enable and not cl.leak_internal_slow_clk_enable,
            np.transpose(np.array(cl.neurons_initial_value, np.int16), (0, 2, 1)),
            dests(cl.destinations), cl.monitor_enable)
    d = config.dvs_layer
    dvs = None
    if any(s.enable for s in d.destinations):
        dvs = DVSInput((2, 128, 128), d.merge, d.on_channel, d.off_channel, (d.pooling.y, d.pooling.x),
                       (d.origin.y, d.origin.x), (d.cut.y, d.cut.x), d.mirror.x, d.mirror.y,
                       d.mirror_diagonal, dests(d.destinations), d.monitor_enable)
    ro = config.readout
    readout = None
    if ro.enable and ro.readout_pin_monitor_enable and ro.readout_configuration_sel == 0b11:
        average = 1 if ro.low_pass_filter_disable else 32 if ro.low_pass_filter32_not16 else 16
        readout = Readout(ro.threshold, average, 4)  # Speck 2e/2f: class k reads channel 4(k-1)
    return IntegerNetwork(layers, dvs, slow_clock_period_us, readout)


class _Node:
    def __init__(self):
        self.targets, self.buffer = [], []

    def write(self, events):
        for target in self.targets:
            target.receive(list(events))

    def receive(self, events):
        self.buffer.extend(events)

    def get_events(self):
        events, self.buffer = self.buffer, []
        return events


class _Model:
    def __init__(self, kit):
        self.kit, self.config, self.engine = kit, None, None
        self.source = _Node()
        self.sink = _Node()
        self.sink.receive = self._process

    def apply_configuration(self, config):
        from snnlib import EventSimulator

        self.config = copy.deepcopy(config)
        io = self.kit.io
        self.engine = EventSimulator(config_to_network(self.config, io.period_us if io.slow_clk else None))
        if self.config.dvs_layer.pass_sensor_events:
            self._process(list(self.kit.pixel_array))

    def get_sink_node(self):
        return self.sink

    def get_source_node(self):
        return self.source

    def _process(self, events):
        ev = self.kit.event_types
        pending = []
        for e in events + [None]:
            if isinstance(e, (ev.Spike, ev.DvsEvent)):
                layer = DVS_LAYER_ID if isinstance(e, ev.DvsEvent) else e.layer
                channel = int(e.p) if isinstance(e, ev.DvsEvent) else e.feature
                pending.append((e.timestamp, layer, channel, e.y, e.x))
                continue
            if pending:
                out = self.engine.run(np.array(pending, EVENT_DTYPE))
                self.source.write([ev.ReadoutPinValue(index=int(o["channel"]), timestamp=int(o["t"]))
                                   if o["layer"] == READOUT_LAYER_ID else
                                   ev.Spike(layer=int(o["layer"]), feature=int(o["channel"]),
                                            y=int(o["y"]), x=int(o["x"]), timestamp=int(o["t"]))
                                   for o in out])
                pending = []
            if isinstance(e, ev.ReadNeuronValue):
                state = self.engine.states[e.layer]
                f, _, w = state.shape
                cb, xb = (f - 1).bit_length(), (w - 1).bit_length()
                c, x, y = e.address & ((1 << cb) - 1), (e.address >> cb) & ((1 << xb) - 1), e.address >> (cb + xb)
                self.source.write([ev.NeuronValue(layer=e.layer, address=e.address,
                                                  neuron_state=int(state[c, y, x]))])


class _DevKit:
    def __init__(self, chip_events):
        self.event_types = chip_events
        self.io = _Record(period_us=None, slow_clk=False)
        self.io.set_slow_clk = lambda on: setattr(self.io, "slow_clk", bool(on))
        self.io.set_slow_clk_rate = self._set_rate
        self.watch = _Record(running=False, resets=0)
        self.watch.start = lambda: setattr(self.watch, "running", True)
        self.watch.stop = lambda: setattr(self.watch, "running", False)
        self.watch.reset = lambda: setattr(self.watch, "resets", self.watch.resets + 1)
        self.pixel_array: list = []  # DvsEvents the sensor produces
        self.model = _Model(self)

    def _set_rate(self, hz):
        if not isinstance(hz, int) or isinstance(hz, bool):  # pybind11: an int parameter
            raise TypeError(f"set_slow_clk_rate(): incompatible function arguments: {hz!r}")
        self.io.period_us = 1_000_000 // hz

    def get_model(self):
        return self.model

    def get_stop_watch(self):
        return self.watch

    def get_io_module(self):
        return self.io


class _Graph:
    def __init__(self):
        self.started, self.nodes = False, []

    def sequential(self, nodes):
        self.nodes = nodes
        for a, b in zip(nodes, nodes[1:]):
            a.targets.append(b)

    def start(self):
        self.started = True

    def stop(self):
        self.started = False


def make_samna(boards: list[tuple[str, int]]) -> types.ModuleType:
    """A stand-in samna seeing devkits ``[(device_type_name, usb_device_address), ...]``."""
    samna = types.ModuleType("samna")
    samna.__version__ = "0.0-standin"
    chips = {"speck2e": _event_types(), "speck2f": _event_types()}
    for name, events in chips.items():
        setattr(samna, name, types.SimpleNamespace(
            event=events, configuration=types.SimpleNamespace(SpeckConfiguration=SpeckConfiguration)))
    samna.BasicSourceNode_speck2f_event_input_event = _Node
    samna.BasicSinkNode_speck2f_event_output_event = _Node
    samna.BasicSourceNode_speck2e_event_speck2e_input_event = _Node
    samna.BasicSinkNode_speck2e_event_output_event = _Node
    samna.graph = types.SimpleNamespace(EventFilterGraph=_Graph)
    infos = [_Record(device_type_name=t, usb_device_address=a) for t, a in boards]
    opened: dict[int, _DevKit] = {}

    def open_device(info):
        chip = "speck2e" if info.device_type_name.startswith("Speck2e") else "speck2f"
        return opened.setdefault(id(info), _DevKit(chips[chip]))

    def close_device(handle):
        for key, kit in list(opened.items()):
            if kit is handle:
                del opened[key]

    samna.device = types.SimpleNamespace(get_all_devices=lambda: list(infos), open_device=open_device,
                                         close_device=close_device, opened=opened)
    return samna
