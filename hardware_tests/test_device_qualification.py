"""Qualify the device named by SPIKEFLASH_DEVICE: info, flash with verification, reset that
really zeroes states, runs (events and rasters), counters, bit-exact agreement with the
event-exact simulation on several networks, and a long run."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backend.analysis.compare import compare, compare_outputs
from backend.errors import ConfigNotHeld
from backend.testing.qualification import NETWORKS, qualification_config, random_input


@pytest.fixture
def chip(device):
    return device.info().chip


def test_info_names_chip_and_firmware(device):
    info = device.info()
    assert info.kind in ("emulator", "serial", "samna")
    assert info.chip and info.firmware
    assert info.url == device.url


def test_flash_verifies_and_reflashes(device, chip):
    first = qualification_config("single_core", 0, chip)
    second = qualification_config("pooled_chain", 0, chip)
    device.flash(first)
    assert device.config is first
    device.flash(second)
    assert device.config is second
    assert set(device.read_states()) == set(second.to_network().layers)


@pytest.mark.parametrize("name", ["single_core", "fanout_leak"])
def test_reset_really_restores_initial_states(device, chip, name):
    config = qualification_config(name, 2, chip)
    network = config.to_network()
    device.flash(config)
    device.run(random_input(network, 400, seed=2))
    assert any(np.any(s != _initial(network, core)) for core, s in device.read_states().items())
    device.reset()
    for core, state in device.read_states().items():
        assert state.dtype == np.int16
        np.testing.assert_array_equal(state, _initial(network, core))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bit_exact_with_simulation(device, chip, name):
    config = qualification_config(name, 3, chip)
    events = random_input(config.to_network(), 3000, seed=3)
    result = compare(config, device, events)
    assert result.bit_exact, str(result)
    assert result.n_expected == result.n_received > 0
    assert str(result).startswith(f"bit-exact: {result.n_expected} events on ")


def test_divergence_is_located(device, chip):
    """A device computing with one changed weight: its output against the simulation of the
    original configuration diverges first at that weight's channel, and compare() without
    flashing refuses the device, which holds another configuration (tests/test_compare.py checks
    the states compare() adds, on a chip whose weight memory is corrupted)."""
    from snnlib import simulate

    config = qualification_config("single_core", 4, chip)
    network = copy.deepcopy(config.to_network())
    network.layers[0].weights[2, 1, 1, 1] += 7 if network.layers[0].weights[2, 1, 1, 1] < 100 else -7
    device.flash(type(config).from_network(network, chip=chip))
    device.reset()
    events = random_input(network, 2000, seed=4)
    received = device.run(events, rasters=False).events
    result = compare_outputs(simulate(config.to_network(), events).events, received, config)
    assert not result.bit_exact
    d = result.first_divergence
    assert d.layer == 0 and d.neuron[0] == 2  # only channel 2 has the changed weight
    assert str(result).startswith("DIVERGED at t=")
    with pytest.raises(ConfigNotHeld, match="holds configuration"):
        compare(config, device, events, flash=False)


def test_run_counts_and_raster_alignment(device, chip):
    config = qualification_config("pooled_chain", 5, chip)
    network = config.to_network()
    device.flash(config)
    device.reset()
    sent_before, received_before = device.counters.sent, device.counters.received
    raster = torch.randint(0, 3, (6, 2, 8, 8))
    result = device.run(raster, layer=1, dt_us=500, t0_us=1000)
    assert device.counters.sent - sent_before == int(raster.sum())
    assert device.counters.received - received_before == len(result.events)
    assert (result.counters.sent, result.counters.received) == (int(raster.sum()), len(result.events))
    assert sum(result.counters.core_out.values()) >= len(result.events)  # monitored cores' spikes
    assert result.n_steps >= 6 and (result.t0_us, result.dt_us) == (1000, 500)
    for core, name in config.monitored_layer_names().items():
        expected = result.events[result.events["layer"] == core]
        raster_out = result.rasters[name]
        assert raster_out.shape == (result.n_steps, *network.layers[core].output_shape)
        assert int(raster_out.sum()) == len(expected)
        bins = (expected["t"] - 1000) // 500
        assert np.array_equal(np.bincount(bins, minlength=result.n_steps),
                              raster_out.sum(dim=(1, 2, 3)).numpy())


@pytest.mark.slow
def test_long_run_loses_nothing(device, chip):
    from snnlib import simulate

    config = qualification_config("single_core", 6, chip)
    network = config.to_network()
    device.flash(config)
    device.reset()
    events = random_input(network, 200_000, duration_us=2_000_000, seed=6)
    expected = simulate(network, events).events
    out = device.run(events).events
    assert len(out) == len(expected) > 0
    np.testing.assert_array_equal(out, expected)  # same events in the same order


def _initial(network, core):
    layer = network.layers[core]
    return np.zeros(layer.output_shape, np.int16) if layer.initial_state is None else layer.initial_state
