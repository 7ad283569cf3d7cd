"""The samna driver against a stand-in samna (tests/samna_standin.py); the real samna is never
imported here (PyPI's package downloads at import)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from backend.errors import DeviceNotFound, FlashError, SamnaUnavailable, UnsupportedURL
from backend.testing.qualification import NETWORKS, random_input
from backend.devices.samna_devkit import (
    SamnaDevice,
    events_to_samna,
    find_samna_devices,
    neuron_address,
    parse_samna_url,
    slow_clock_rate_hz,
    samna_to_events,
    write_samna_configuration,
)
from snnlib.readout import READOUT_LAYER_ID, Readout
from samna_standin import SpeckConfiguration, config_to_network, make_samna

KITS = [("Speck2fDevKit", 7), ("Speck2fDevKit", 3), ("Speck2eDevKit", 5), ("DummyBoard", 1)]


@pytest.fixture
def samna(monkeypatch):
    standin = make_samna(KITS)
    monkeypatch.setitem(sys.modules, "samna", standin)
    return standin


@pytest.mark.parametrize("url, expected", [
    ("samna://speck2fdevkit:0", ("speck2fdevkit", 0)),
    ("samna://speck2edevkit:12", ("speck2edevkit", 12)),
    ("samna://speck2fmodule", ("speck2fmodule", 0)),
])
def test_parse_url(url, expected):
    assert parse_samna_url(url) == expected


@pytest.mark.parametrize("url", ["samna://", "samna://davis346:0", "samna://speck2fdevkit:-1",
                                 "samna://speck2fdevkit:x", "speck2fdevkit:0"])
def test_parse_url_rejects_with_the_names(url):
    with pytest.raises(UnsupportedURL, match="speck2fdevkit"):
        parse_samna_url(url)


def test_discovery_numbers_devkits_by_usb_address(samna):
    found = find_samna_devices(samna)
    assert sorted(found) == ["samna://speck2edevkit:0", "samna://speck2fdevkit:0", "samna://speck2fdevkit:1"]
    assert found["samna://speck2fdevkit:0"].usb_device_address == 3
    assert found["samna://speck2fdevkit:1"].usb_device_address == 7


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_configuration_fields_round_trip(name):
    network = NETWORKS[name](1)
    config = write_samna_configuration(network, SpeckConfiguration())
    back = config_to_network(config, network.slow_clock_period_us)
    assert config.dvs_layer.pass_sensor_events is False
    assert sorted(back.layers) == sorted(network.layers)
    for core, layer in network.layers.items():
        got = back.layers[core]
        np.testing.assert_array_equal(got.weights, layer.weights)
        cl = config.cnn_layers[core]
        assert np.array(cl.weights).shape == layer.weights.shape  # [f][c][x][y], square kernels
        for field in ("input_shape", "threshold_high", "threshold_low", "stride", "padding",
                      "reset", "leak_enable", "destinations", "monitor"):
            assert getattr(got, field) == getattr(layer, field), (core, field)
        initial = np.zeros(layer.output_shape) if layer.initial_state is None else layer.initial_state
        np.testing.assert_array_equal(got.initial_state, initial)
        assert cl.leak_internal_slow_clk_enable is False  # datasheet §3.2.4.7: external slow clock
    if network.dvs is not None:
        d = config.dvs_layer
        assert (d.pooling.y, d.pooling.x, d.cut.y, d.cut.x, d.mirror.x) == (2, 2, 6, 7, True)
        assert back.dvs.destinations == network.dvs.destinations


def test_a_dvs_stage_without_a_cut_keeps_up_to_the_last_pooled_pixel():
    network = NETWORKS["dvs_input"](0)
    network.dvs = dataclasses.replace(network.dvs, input_shape=(2, 16, 24), pooling=(2, 4), origin=(0, 0), cut=None)
    d = write_samna_configuration(network, SpeckConfiguration()).dvs_layer
    assert (d.pooling.y, d.pooling.x, d.origin.y, d.origin.x) == (2, 4, 0, 0)
    assert (d.cut.y, d.cut.x) == (16 // 2 - 1, 24 // 4 - 1) == (7, 5)  # inclusive: the last pooled row, column


@pytest.mark.parametrize("average, disable, thirty_two", [(1, True, False), (16, False, False), (32, False, True)])
def test_the_readout_is_written_as_the_datasheet_sets_it(average, disable, thirty_two):
    network = NETWORKS["single_core"](0)
    network.readout = Readout(threshold=300, average=average, channel_stride=4)
    ro = write_samna_configuration(network, SpeckConfiguration()).readout
    assert (ro.enable, ro.readout_configuration_sel, ro.readout_pin_monitor_enable) == (True, 0b11, True)
    assert (ro.threshold, ro.low_pass_filter_disable, ro.low_pass_filter32_not16) == (300, disable, thirty_two)
    assert write_samna_configuration(NETWORKS["single_core"](0), SpeckConfiguration()).readout.enable is False


def test_weights_are_written_x_before_y():
    network = NETWORKS["single_core"](0)
    w = network.layers[0].weights
    cl = write_samna_configuration(network, SpeckConfiguration()).cnn_layers[0]
    assert cl.weights[1][0][2][0] == w[1, 0, 0, 2]  # [f][c][x][y] vs torch (f, c, y, x)


def test_neuron_address_packs_channel_x_y():
    assert neuron_address(3, 0, 0, (4, 6, 6)) == 3
    assert neuron_address(0, 0, 1, (4, 6, 6)) == 4
    assert neuron_address(0, 1, 0, (4, 6, 6)) == 4 * 8
    shape = (5, 7, 9)
    addresses = {neuron_address(c, y, x, shape) for c in range(5) for y in range(7) for x in range(9)}
    assert len(addresses) == 5 * 7 * 9


def _sinabs_address(x, y, c, shape):
    """sinabs 3.1.3 ``calculate_neuron_address`` restated (importing it imports samna)."""
    import math

    channel, height, width = shape
    xb, yb, cb = (math.ceil(math.log2(n)) for n in (width, height, channel))
    return (y << (cb + yb)) | (x << cb) | c


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 4, 4), (5, 7, 7), (16, 32, 32), (3, 5, 8)])
def test_neuron_address_is_sinabs_layout_where_h_and_w_need_the_same_bits(shape):
    f, h, w = shape
    for c, y, x in np.ndindex(*shape):
        assert neuron_address(c, y, x, shape) == _sinabs_address(x, y, c, shape)


def test_slow_clock_rate_is_integer_hz_and_a_period_off_one_second_is_refused(samna):
    from backend.testing.qualification import qualification_config
    from mapper import ChipConfig

    assert slow_clock_rate_hz(400, "samna://x") == 2500 and isinstance(slow_clock_rate_hz(1000, "x"), int)
    with pytest.raises(FlashError, match=r"slow_clock_period_us=300 is 3333.33 Hz.*integer rate in Hz"):
        slow_clock_rate_hz(300, "samna://x")
    config = qualification_config("fanout_leak", 1)
    network = config.to_network()
    network.slow_clock_period_us = 300
    with SamnaDevice("samna://speck2fdevkit:0") as dev, pytest.raises(FlashError, match="divides 1,000,000"):
        dev.flash(ChipConfig.from_network(network))


def test_flash_says_it_was_applied_not_read_back(samna, tmp_path, capsys):
    from backend.app.cli import main
    from backend.testing.qualification import qualification_config

    qualification_config("fanout_leak", 1).save(tmp_path / "c.json")
    with SamnaDevice("samna://speck2fdevkit:0") as dev:
        assert "flash-verify" not in dev.info().capabilities
    assert main(["flash", str(tmp_path / "c.json"), "--device", "samna://speck2fdevkit:0"]) == 0
    assert "to samna://speck2fdevkit:0; applied (this device cannot read its configuration back)" in \
        capsys.readouterr().out


def test_event_conversion_round_trip(samna):
    network = NETWORKS["single_core"](0)
    events = random_input(network, 50)
    spikes = events_to_samna(events, samna.speck2f.event)
    assert all(isinstance(s, samna.speck2f.event.Spike) for s in spikes)
    np.testing.assert_array_equal(samna_to_events(spikes), events)
    dvs = events.copy()
    dvs["layer"] = 13
    converted = events_to_samna(dvs, samna.speck2f.event)
    assert isinstance(converted[0], samna.speck2f.event.DvsEvent)
    assert converted[0].p == bool(dvs[0]["channel"])


def test_open_unknown_index_lists_what_samna_sees(samna):
    with pytest.raises(DeviceNotFound, match=r"samna://speck2fdevkit:1"):
        SamnaDevice("samna://speck2fdevkit:5")


def test_open_and_close_drive_graphs_and_handle(samna):
    dev = SamnaDevice("samna://speck2edevkit")
    info = dev.info()
    assert (info.kind, info.chip, info.firmware) == ("samna", "speck2e", "samna 0.0-standin")
    assert all(g.started for g in dev._graphs)
    assert len(samna.device.opened) == 1
    dev.close()
    dev.close()
    assert not any(g.started for g in dev._graphs)
    assert samna.device.opened == {}


def test_pypi_stub_is_refused_without_import(monkeypatch):
    from backend.devices.samna_support import samna_status

    monkeypatch.delitem(sys.modules, "samna", raising=False)

    status = samna_status()
    if status.state == "real":
        pytest.skip("a real samna is installed here")
    with pytest.raises(SamnaUnavailable, match="--index-url|pip install"):
        SamnaDevice("samna://speck2fdevkit:0")
    assert "samna" not in sys.modules


@pytest.mark.parametrize("name", ["fanout_leak", "dvs_input"])
def test_flash_run_compare_through_samna_nodes(samna, name):
    from backend.analysis.compare import compare
    from backend.testing.qualification import qualification_config

    config = qualification_config(name, 4)
    with SamnaDevice("samna://speck2fdevkit:1") as dev:
        result = compare(config, dev, random_input(config.to_network(), 600, seed=4))
        kit = samna.device.opened[next(iter(samna.device.opened))]
        assert kit.io.period_us == config.to_network().slow_clock_period_us
        assert kit.watch.resets >= 1 and not kit.watch.running
    assert result.bit_exact, str(result)
    assert result.n_received > 0
    assert samna.device.opened == {}


def test_each_run_adds_its_output_per_core_to_the_counters_and_readout_values_sit_at_the_origin(samna):
    from backend.testing.qualification import qualification_config

    config = qualification_config("fanout_leak", 4)
    events = random_input(config.to_network(), 600, seed=4)
    with SamnaDevice("samna://speck2fdevkit:1") as dev:
        dev.flash(config)
        out = dev.run(events).events
        dev.reset()
        assert dev.run(events).events.tolist() == out.tolist()
        layers, counts = np.unique(out["layer"], return_counts=True)
        assert len(out) and dev.counters.core_out == {int(c): 2 * int(n) for c, n in zip(layers, counts)}
    pin = samna.speck2f.event.ReadoutPinValue(timestamp=7, index=3)
    assert samna_to_events([pin]).tolist() == [(7, READOUT_LAYER_ID, 3, 0, 0)]


def test_reset_restores_initial_states_read_back_by_neuron_address(samna):
    from backend.testing.qualification import qualification_config
    from snnlib import EventSimulator

    config = qualification_config("fanout_leak", 5)
    network = config.to_network()
    events = random_input(network, 300, seed=5)
    with SamnaDevice("samna://speck2fdevkit:0") as dev:
        dev.flash(config)
        dev.run(events)
        engine = EventSimulator(network)
        engine.run(events)
        for core, state in dev.read_states().items():
            np.testing.assert_array_equal(state, engine.states[core])
        dev.reset()
        engine.reset()
        for core, state in dev.read_states().items():
            np.testing.assert_array_equal(state, engine.states[core])
            assert np.any(state != 0) == (core == 0)  # only core 0 has initial states


def test_a_stream_runs_the_chip_on_the_devkits_pixel_array_with_its_dvs_filter(samna):
    from backend.devices.stream import DVSFilter
    from backend.testing.qualification import qualification_config
    from snnlib import simulate

    config = qualification_config("dvs_input", 6)
    network = config.to_network()
    scene = random_input(network, 500, seed=6)  # what the camera sees (DVS events, layer 13)
    expected = simulate(network, scene).events
    with SamnaDevice("samna://speck2fdevkit:0") as dev:
        kit = samna.device.opened[next(iter(samna.device.opened))]
        kit.pixel_array = events_to_samna(scene, kit.event_types)
        dev.flash(config)
        assert not kit.model.config.dvs_layer.pass_sensor_events  # flashed: host input only
        with dev.stream(dvs_filter=DVSFilter("hot-pixel", threshold=5)) as stream:
            applied = kit.model.config
            got = []
            while sum(map(len, got)) < len(expected):  # a live sensor never ends: read what it made
                batch = stream.poll(30.0)
                assert batch is not None and len(batch), "no output from the pixel array"
                got.append(batch)
        assert applied.dvs_layer.pass_sensor_events and kit.watch.resets >= 1
        f = applied.dvs_filter
        assert (f.enable, f.hot_pixel_filter_enable, f.low_pass_mode_enable, f.threshold) == (True, True, False, 5)
        assert (f.filter_size.y, f.filter_size.x) == (3, 3)
        assert (np.concatenate(got) == expected).all()
        assert not kit.model.config.dvs_layer.pass_sensor_events  # the flashed configuration again
        events = random_input(network, 300, seed=7)
        assert (dev.run(events).events == simulate(network, events).events).all()


def test_a_stream_needs_a_dvs_stage_and_a_filter_is_for_devkits_only(samna):
    from backend.devices import open_device
    from backend.devices.stream import DVSFilter
    from backend.testing.qualification import qualification_config
    from snnlib.events import InvalidEventsError

    with SamnaDevice("samna://speck2fdevkit:0") as dev:
        dev.flash(qualification_config("fanout_leak"))
        with pytest.raises(InvalidEventsError, match="dvs=True"):
            dev.stream().collect()
    with open_device("emu://", sensor=random_input(qualification_config("fanout_leak").to_network(), 9)) as dev:
        dev.flash(qualification_config("fanout_leak"))
        with pytest.raises(ValueError, match="only a samna devkit"):
            dev.stream(dvs_filter=DVSFilter()).collect()
    with pytest.raises(ValueError, match="1..15"):
        DVSFilter(size=(0, 3))
    with pytest.raises(ValueError, match="mode='hot_pixel'.*expected 'noise', 'hot-pixel' or 'low-pass'"):
        DVSFilter("hot_pixel")  # a typo is named, not written to the devkit as some mode
    for threshold in (-1, True, 2.0):
        with pytest.raises(ValueError, match="expected slow-clock ticks, an int >= 0"):
            DVSFilter(threshold=threshold)
    assert DVSFilter("low-pass", 25, size=(0, 0)).threshold == 25
