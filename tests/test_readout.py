"""The readout layer of Speck 2e/2f (docs/chip-model.md, "Readout"): its moving average,
threshold and output events in the engine against a reference written here, the erratum
(channel 4(k-1) -> class k) in the mapper, and the same events from the emulator over a pty
and from the samna driver (stand-in)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from backend.analysis.compare import compare
from backend.devices import open_device
from backend.devices.samna_devkit import SamnaDevice, write_samna_configuration
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.protocol.config_image import decode_image, encode_image
from mapper import ChipConfig, ChipSpec, MappingError, get_chip, map_model
from samna_standin import SpeckConfiguration, make_samna
from snnlib import (READOUT_LAYER_ID, CoreLayer, Destination, IntegerNetwork, Readout, SpikingLayer,
                    EventSimulator, empty_events, raster_to_events, simulate)
from snnlib.network import DVSInput, InvalidNetworkError
from snnlib.readout import ReadoutState

PERIOD = 1000


def relay_network(readout: Readout, channels: int = 9) -> IntegerNetwork:
    """Core 0 passes input channel c on as one spike of channel c (a 1x1 map) to the readout."""
    weights = np.eye(channels, dtype=np.int8)[:, :, None, None]
    core = CoreLayer(weights, (channels, 1, 1), 1, -1, destinations=[Destination(READOUT_LAYER_ID)])
    return IntegerNetwork({0: core}, slow_clock_period_us=PERIOD, readout=readout)


def reference(events, readout: Readout, until_us: int) -> list[tuple]:
    """The readout's events, restated: per tick, window counts, moving average, threshold."""
    history, out = [], []
    for tick in range(PERIOD, until_us + 1, PERIOD):
        counts = [0] * 16
        for t, c in zip(events["t"].tolist(), events["channel"].tolist()):
            if tick - PERIOD <= t < tick and c % readout.channel_stride == 0 and c // readout.channel_stride < 15:
                counts[c // readout.channel_stride + 1] += 1
        history = ([counts] + history)[:readout.average]
        means = [sum(h[k] for h in history) // readout.average for k in range(16)]
        best = max(range(1, 16), key=lambda k: (means[k], -k))
        if means[best] > readout.threshold:
            out.append((tick, READOUT_LAYER_ID, best, 0, 0))
    return out


def input_events(n=2000, channels=9, seed=0, end_us=40_000):
    rng = np.random.default_rng(seed)
    events = empty_events(n)
    events["t"] = np.sort(rng.integers(0, end_us, n))
    events["channel"] = rng.choice(channels, n, p=np.linspace(1, 3, channels) / np.linspace(1, 3, channels).sum())
    return events


@pytest.mark.parametrize("readout", [Readout(0, 1, 4), Readout(2, 16, 4), Readout(1, 32, 1), Readout(200, 1, 4)])
def test_engine_readout_matches_the_reference_across_runs(readout):
    events = input_events()
    network = relay_network(readout)
    expected = reference(events, readout, 45_000)
    assert bool(expected) == (readout.threshold < 200)
    got = simulate(network, events, until_us=45_000).events
    assert got.tolist() == expected  # the relay core is not monitored: readout events only
    engine = EventSimulator(network)
    split = np.concatenate([engine.run(events[:150]), engine.run(events[150:], until_us=45_000)])
    assert split.tolist() == expected
    assert any(e[2] != 1 for e in expected) or readout.threshold == 200  # several classes win


def test_idle_readout_ticks_at_rest_are_skipped_exactly():
    """300 empty windows between two bursts, and 1.7e12 before camera time: the readout at rest
    (no counts in its windows) skips them and reports what the reference reports per tick."""
    readout = Readout(1, 16, 4)
    events = input_events(600, end_us=20_000, seed=3)
    events["t"][300:] += 300 * PERIOD + 17  # then off the tick grid
    until = int(events["t"][-1]) + 40 * PERIOD
    expected = reference(events, readout, until)
    assert len(expected) and simulate(relay_network(readout), events, until_us=until).events.tolist() == expected
    camera_t0 = 1_700_000_000_000_000  # µs, a multiple of the period
    events["t"] += camera_t0
    got = simulate(relay_network(readout), events, until_us=until + camera_t0).events
    assert got.tolist() == [(t + camera_t0, *rest) for t, *rest in expected]


def test_the_readout_defaults_and_which_channel_reads_as_which_class():
    assert READOUT_LAYER_ID == 12 and Readout() == Readout(threshold=0, average=16, channel_stride=4)
    classes = Readout(channel_stride=4).class_of(np.arange(64)).tolist()
    assert classes == [k // 4 + 1 if k % 4 == 0 and k <= 56 else 0 for k in range(64)]  # 4(k-1) -> k, k <= 15
    assert Readout(channel_stride=1).class_of(np.arange(17)).tolist() == [*range(1, 16), 0, 0]


def readout_events(t, channel):
    events = empty_events(len(t))
    events["t"], events["channel"] = t, channel
    return events


def test_the_readout_ticks_at_each_period_on_the_window_before_it_and_strictly_above_its_threshold():
    state = ReadoutState(Readout(threshold=1, average=1, channel_stride=1), PERIOD)
    # window [0, 1000): class 1 twice (t = 0 and 999); t = 1000 opens the next window
    spikes = readout_events([0, 999, 1000, 1500, 1500, 1999], [0, 0, 0, 2, 1, 1])
    assert state.advance(spikes[:3], 999).tolist() == []  # no tick before 1000
    assert state.advance(spikes[3:], 1000).tolist() == [(1000, 12, 1, 0, 0)]  # 2 > 1, reported at t = 1000
    # window [1000, 2000): class 1 once, class 2 (channel 1) twice, class 3 once
    assert state.advance(readout_events([], []), 2999).tolist() == [(2000, 12, 2, 0, 0)]
    assert state.advance(readout_events([3000], [5]), 4000).tolist() == []  # 1 is not above 1
    state.reset()
    ties = readout_events([10, 20, 30, 40], [4, 3, 3, 4])  # classes 5 and 4 twice each: the lowest wins
    assert state.advance(ties, 1000).tolist() == [(1000, 12, 4, 0, 0)]


def test_the_readout_average_is_the_floor_of_the_sum_over_the_last_windows():
    state = ReadoutState(Readout(threshold=0, average=16, channel_stride=4), PERIOD)
    out = state.advance(readout_events([100] * 31, [8] * 31), 17 * PERIOD)  # class 3: 31 spikes in window 1
    # floor(31 / 16) = 1 > 0 for the 16 ticks that hold the window, then 0
    assert out.tolist() == [(tick * PERIOD, 12, 3, 0, 0) for tick in range(1, 17)]
    state = ReadoutState(Readout(threshold=0, average=16, channel_stride=4), PERIOD)
    assert state.advance(readout_events([100] * 15, [8] * 15), 3 * PERIOD).tolist() == []  # floor(15 / 16) = 0


def test_a_network_refuses_a_readout_it_cannot_feed():
    with pytest.raises(InvalidNetworkError, match="set slow_clock_period_us"):
        IntegerNetwork(relay_network(Readout()).layers, readout=Readout()).validate()
    with pytest.raises(InvalidNetworkError, match="has no readout"):
        IntegerNetwork(relay_network(Readout()).layers, slow_clock_period_us=PERIOD).validate()
    with pytest.raises(InvalidNetworkError, match="at most 57 channels"):
        relay_network(Readout(), channels=58).validate()


def classifier() -> nn.Sequential:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), SpikingLayer(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3, bias=False), SpikingLayer())
    with torch.no_grad():
        model[0].weight.uniform_(0.0, 0.6)
        model[3].weight.uniform_(0.0, 0.3)
    return model


def test_mapper_spreads_the_classes_for_the_erratum_and_the_config_round_trips():
    mapping = map_model(classifier(), (1, 8, 8), slow_clock_period_us=PERIOD, readout=Readout(1, 16))
    config = mapping.config
    assert config.readout == Readout(1, 16, 4)
    (last,) = [c for c in config.cores.values() if c.destinations == [Destination(READOUT_LAYER_ID)]]
    assert last.weights.shape[0] == 9 and not last.weights[[1, 2, 3, 5, 6, 7]].any()
    assert any("channel 4(k-1), read as class k" in n.action for n in mapping.report.transformations)
    assert ChipConfig.from_json(config.to_json()) == config
    assert decode_image(encode_image(config)).to_json() == config.to_json()
    assert config.monitored_layer_names()[READOUT_LAYER_ID] == "readout"
    with pytest.raises(MappingError, match="ticks with the slow clock"):
        map_model(classifier(), (1, 8, 8), readout=True)
    with pytest.raises(MappingError, match="has no readout layer"):
        map_model(classifier(), (1, 8, 8), ChipSpec("plain", get_chip("speck2f").cores), readout=True,
                  slow_clock_period_us=PERIOD)
    flat = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), SpikingLayer())
    with pytest.raises(MappingError, match="the readout takes a 1x1 output"):
        map_model(flat, (1, 8, 8), readout=True, slow_clock_period_us=PERIOD)



def test_a_readout_without_the_erratum_keeps_the_classes_in_place_and_a_refused_one_spreads_nothing():
    direct = ChipSpec("direct", get_chip("speck2f").cores, readout_stride=1)
    mapping = map_model(classifier(), (1, 8, 8), direct, slow_clock_period_us=PERIOD, readout=True)
    (last,) = [c for c in mapping.config.cores.values() if c.destinations == [Destination(READOUT_LAYER_ID)]]
    assert mapping.config.readout.channel_stride == 1 and last.weights.shape[0] == 3
    assert not any("erratum" in n.action for n in mapping.report.transformations)
    with pytest.raises(MappingError) as err:  # no slow clock: refused, and nothing moved
        map_model(classifier(), (1, 8, 8), readout=True)
    assert not any("erratum" in n.action for n in err.value.report.transformations)

@pytest.mark.parametrize("bias", [None, (0.05, -0.1, 0.2)])
def test_the_erratum_spread_moves_each_class_bias_with_its_weights(bias):
    """A biased last layer (its bias a leak on the slow clock): class k's weights and bias both
    move to channel 4(k-1), the channels between get neither; a bias-free layer stays bias-free.
    The same model mapped without the readout gives the unspread core."""
    model = classifier()
    if bias is not None:
        biased = nn.Linear(4 * 6 * 6, 3)
        with torch.no_grad():
            biased.weight.copy_(model[3].weight)
            biased.bias.copy_(torch.tensor(bias))
        model[3] = biased

    def last_core(readout):
        config = map_model(model, (1, 8, 8), slow_clock_period_us=PERIOD, readout=readout).config
        (core,) = [c for c in config.cores.values() if c.layer_names[0] == "3"]
        return core
    plain, spread = last_core(False), last_core(Readout(1, 16))
    assert spread.scale == plain.scale
    assert np.array_equal(spread.weights[::4], plain.weights) and not spread.weights[[1, 2, 3, 5, 6, 7]].any()
    if bias is None:
        assert plain.bias is None and spread.bias is None
    else:
        assert np.array_equal(np.sign(plain.bias), np.sign(bias))
        assert spread.bias.tolist() == [plain.bias[0], 0, 0, 0, plain.bias[1], 0, 0, 0, plain.bias[2]]


def _mapped_with_readout():
    mapping = map_model(classifier(), (1, 8, 8), slow_clock_period_us=PERIOD, readout=Readout(0, 1))
    events = raster_to_events((torch.rand(30, 1, 8, 8) < 0.4).float(), layer=mapping.input, dt_us=PERIOD)
    return mapping.config, events


def test_the_emulator_over_a_pty_reports_the_readout_bit_exact():
    config, events = _mapped_with_readout()
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as device:
        result = compare(config, device, events)
    assert result.bit_exact, str(result)
    (summary,) = [s for s in result.layers if s.layer == READOUT_LAYER_ID]
    assert summary.name == "readout" and summary.expected > 5


def test_the_samna_driver_writes_the_readout_and_reads_its_pin_values(monkeypatch):
    monkeypatch.setitem(sys.modules, "samna", make_samna([("Speck2fDevKit", 1)]))
    config, events = _mapped_with_readout()
    written = write_samna_configuration(config.to_network(), SpeckConfiguration()).readout
    assert (written.enable, written.readout_configuration_sel, written.threshold,
            written.low_pass_filter_disable, written.readout_pin_monitor_enable) == (True, 0b11, 0, True, True)
    with SamnaDevice("samna://speck2fdevkit:0") as device:
        result = compare(config, device, events)
    assert result.bit_exact, str(result)
    assert any(s.layer == READOUT_LAYER_ID and s.received > 5 for s in result.layers)


def test_cli_map_sends_the_output_to_the_readout(tmp_path, capsys):
    from backend.app.cli import main

    torch.save(classifier(), tmp_path / "model.pt")
    assert main(["map", str(tmp_path / "model.pt"), "--trust-pickle", "--input-shape", "1,8,8", "--slow-clock-us", "1000",
                 "--readout", "2", "--readout-average", "32"]) == 0
    assert ChipConfig.load(tmp_path / "model.json").readout == Readout(2, 32, 4)
    assert "read as class k" in capsys.readouterr().out


def test_only_a_core_can_send_to_the_readout():
    dvs = DVSInput(input_shape=(2, 1, 1), destinations=[Destination(READOUT_LAYER_ID)])
    network = relay_network(Readout(), channels=2)
    problems = IntegerNetwork(network.layers, dvs=dvs, slow_clock_period_us=PERIOD,
                              readout=Readout()).problems()
    assert [(p.path, "is not a layer of the network" in p.message) for p in problems] == \
        [("dvs.destinations[0].layer", True)]
