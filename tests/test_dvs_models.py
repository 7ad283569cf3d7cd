"""DVS models end to end: the DVS stage's options from Python and from ``spikeflash map``,
``mapping.input`` for any model, biases that need the slow clock, and the one-polarity stage
refused alike by the network and the chip configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backend.app.cli import main
from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.files.events import save_events, load_events
from mapper import ChipConfig, ConfigError, DVSConfig, MappingError, map_model
from snnlib import (DVS_LAYER_ID, CoreLayer, Destination, DVSInput, IntegerNetwork, SpikingLayer,
                    SumPool2d, empty_events, raster_to_events, simulate)
from snnlib.network import InvalidNetworkError


def relay(channels: int) -> nn.Sequential:
    """A 1x1 conv passing each input event on as one spike at the same place (channel 0)."""
    model = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False), SpikingLayer(threshold=1.0))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    return model


def sensor_events(n: int = 400, size: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = empty_events(n)
    events["t"] = np.sort(rng.integers(0, 50_000, n))
    events["layer"] = DVS_LAYER_ID
    events["channel"] = rng.integers(0, 2, n)
    events["y"], events["x"] = rng.integers(0, size, (2, n))
    return events


def test_a_dvs_model_maps_and_runs_on_the_emulator_with_mapping_input():
    torch.manual_seed(0)
    model = nn.Sequential(SumPool2d(4), nn.Conv2d(2, 4, 3, bias=False), SpikingLayer(), SumPool2d(2),
                          nn.Conv2d(4, 3, 3, bias=False), SpikingLayer())
    with torch.no_grad():
        for conv in (model[1], model[4]):
            conv.weight.uniform_(0.0, 0.8)
    mapping = map_model(model, (2, 128, 128), dvs=True)
    assert mapping.input == DVS_LAYER_ID and mapping.input_cores == []
    assert "the DVS stage (layer 13" in mapping.describe_input()
    raster = (torch.rand(10, 2, 128, 128) < 0.02).float()
    events = raster_to_events(raster, layer=mapping.input, dt_us=1000)
    expected = simulate(mapping.config.to_network(), events).events
    assert len(expected) > 0
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as device:
        device.flash(mapping.config)
        device.reset()
        np.testing.assert_array_equal(device.run(events).events, expected)


def test_mapping_input_names_the_core_or_refuses_when_the_input_fans_out():
    assert map_model(relay(2), (2, 8, 8)).input == 0

    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = relay(2), relay(2)

        def forward(self, x):
            return self.a(x) + self.b(x)

    fork = nn.Sequential(Fork(), nn.Conv2d(1, 1, 1, bias=False), SpikingLayer())
    mapping = map_model(fork, (2, 8, 8))
    assert len(mapping.input_cores) == 2
    with pytest.raises(MappingError, match="send every input event once per core in input_cores"):
        mapping.input
    assert map_model(fork, (2, 8, 8), dvs=True).input == DVS_LAYER_ID


def _window_reference(events, origin, size, on_only, mirror_x):
    """What a 1-channel relay behind the DVS stage emits: ON events in the window, moved to
    the window's coordinates, x mirrored."""
    (oy, ox), (h, w) = origin, size
    keep = (events["y"] >= oy) & (events["y"] < oy + h) & (events["x"] >= ox) & (events["x"] < ox + w)
    if on_only:
        keep &= events["channel"] == 1
    kept = events[keep]
    y, x = kept["y"] - oy, kept["x"] - ox
    return sorted(zip(kept["t"].tolist(), y.tolist(), ((w - 1 - x) if mirror_x else x).tolist()))


def test_cli_dvs_flags_mirror_the_python_template(tmp_path, capsys):
    torch.save(relay(1), tmp_path / "relay.pt")
    argv = ["map", str(tmp_path / "relay.pt"), "--trust-pickle", "--input-shape", "1,32,48", "--dvs", "--dvs-input-size",
            "128,128", "--dvs-origin", "16,40", "--dvs-polarity", "on", "--dvs-mirror", "x", "--dvs-monitor"]
    assert main(argv) == 0
    assert "input events enter the DVS stage (layer 13; x < 128, y < 128" in capsys.readouterr().out
    config = ChipConfig.load(tmp_path / "relay.json")
    template = DVSConfig((2, 128, 128), on_channel=True, off_channel=False, origin=(16, 40), mirror_x=True,
                         monitor=True)
    assert config == map_model(relay(1), (1, 32, 48), dvs=template).config
    dvs = config.dvs
    assert (dvs.merge_polarities, dvs.on_channel, dvs.off_channel) == (True, True, False)
    assert (dvs.origin, dvs.cut, dvs.mirror_x, dvs.monitor) == ((16, 40), (47, 87), True, True)
    events = sensor_events(2000)
    out = simulate(config.to_network(), events).events
    relayed = out[out["layer"] != DVS_LAYER_ID]
    assert sorted(zip(relayed["t"].tolist(), relayed["y"].tolist(), relayed["x"].tolist())) == \
        _window_reference(events, (16, 40), (32, 48), on_only=True, mirror_x=True)
    assert np.count_nonzero(out["layer"] == DVS_LAYER_ID) == len(relayed)  # the monitored DVS stage


def test_cli_dvs_window_off_the_sensor_and_flags_without_dvs_are_refused(tmp_path, capsys):
    torch.save(relay(2), tmp_path / "relay.pt")
    assert main(["map", str(tmp_path / "relay.pt"), "--trust-pickle", "--input-shape", "2,64,64", "--dvs",
                 "--dvs-input-size", "128,128", "--dvs-origin", "80,0"]) == 2
    assert "input: the model's input window must lie on the 128x128 sensor" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["map", str(tmp_path / "relay.pt"), "--trust-pickle", "--input-shape", "2,64,64", "--dvs-origin", "1,1"])
    assert exit_.value.code == 2
    assert "the --dvs-* options need --dvs" in capsys.readouterr().err


def test_a_bias_without_the_slow_clock_is_a_problem_and_the_option_fixes_it(tmp_path, capsys):
    model = nn.Sequential(nn.Conv2d(2, 2, 1), SpikingLayer(threshold=1.0))
    with torch.no_grad():
        model[0].weight.fill_(0.0)
        model[0].bias.fill_(0.5)
    torch.save(model, tmp_path / "biased.pt")
    with pytest.raises(MappingError) as err:
        map_model(model, (2, 4, 4))
    (problem,) = err.value.report.violations
    assert "without the slow clock it does nothing" in str(problem) and "--slow-clock-us" in str(problem)
    assert main(["map", str(tmp_path / "biased.pt"), "--trust-pickle", "--input-shape", "2,4,4"]) == 2
    assert "pass slow_clock_period_us=<time step in µs> (CLI: --slow-clock-us)" in capsys.readouterr().err
    assert main(["map", str(tmp_path / "biased.pt"), "--trust-pickle", "--input-shape", "2,4,4", "--slow-clock-us", "1000"]) == 0
    config = ChipConfig.load(tmp_path / "biased.json")
    assert config.slow_clock_period_us == 1000 and config.cores[0].leak_enable
    # the bias alone drives the neurons: one spike per neuron every second tick
    events = empty_events(1)
    events["t"], events["layer"] = 10_000, 0
    save_events(tmp_path / "in.npz", events)
    assert main(["run", str(tmp_path / "biased.json"), "--events", str(tmp_path / "in.npz")]) == 0
    out = load_events(tmp_path / "in_out.npz")
    assert len(out) == 5 * 2 * 4 * 4, len(out)  # ticks at 1..10 ms: 5 crossings of threshold 1
    with pytest.raises(ValueError, match="slow_clock_period_us=0"):
        map_model(model, (2, 4, 4), slow_clock_period_us=0)


def test_a_one_polarity_dvs_stage_is_refused_alike_and_its_merged_form_passes_both():
    core = CoreLayer(np.ones((2, 1, 3, 3), np.int8), (1, 8, 8), 1, -1)
    one = IntegerNetwork({0: core}, DVSInput((1, 8, 8), destinations=[Destination(0)]))
    with pytest.raises(InvalidNetworkError, match=r"expected \(2, h, w\): the sensor has 2 polarities"):
        one.validate()
    with pytest.raises(ConfigError, match=r"dvs.input_shape: \(1, 8, 8\); expected \(2, h, w\)"):
        ChipConfig.from_network(one)
    merged = IntegerNetwork({0: core}, DVSInput((2, 8, 8), merge_polarities=True, off_channel=False,
                                                destinations=[Destination(0)]))
    assert ChipConfig.from_network(merged.validate()).to_network().dvs.output_shape == (1, 8, 8)
    unmerged = IntegerNetwork({0: core}, DVSInput((2, 8, 8), destinations=[Destination(0)]))
    with pytest.raises(InvalidNetworkError, match="sends channels up to 1"):
        unmerged.validate()
    with pytest.raises(ConfigError, match="sends channels up to 1 but layer 0 has 1 input channels"):
        ChipConfig.from_network(unmerged)
