"""Hardware-vs-simulation comparison on real parts: the emulator agrees bit for bit, and a
device computing with a perturbed configuration is caught at the right place."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from backend.analysis.compare import compare
from backend.devices import open_device
from backend.testing.qualification import NETWORKS, qualification_config, random_input
from engine_reference import ReferenceChip
from snnlib.events import EVENT_DTYPE


@pytest.fixture
def device():
    with open_device("emu://") as dev:
        yield dev


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_emulator_is_bit_exact(device, name):
    config = qualification_config(name, 7)
    result = compare(config, device, random_input(config.to_network(), 2000, seed=7))
    monitored = len(config.monitored_layer_names())
    assert result.bit_exact and result.same_order
    assert result.n_expected > 0
    assert str(result).splitlines()[0] == f"bit-exact: {result.n_expected} events on {monitored} layers agree"
    assert [s.mismatches for s in result.layers] == [0] * monitored


def _perturbed(config, core, index, delta):
    network = copy.deepcopy(config.to_network())
    network.layers[core].weights[index] += delta
    return type(config).from_network(network, chip=config.chip)


def test_first_divergence_is_located(device):
    from snnlib import EventSimulator, simulate

    config = qualification_config("pooled_chain", 8)
    wrong = _perturbed(config, 4, (1, 2, 0, 1), 9)
    device.flash(config)
    # a faulty chip: it holds `config` (its digest) but computes with `wrong`'s weights, as a
    # corrupted weight memory would
    device._open_chip()._engine = EventSimulator(wrong.to_network())
    events = random_input(config.to_network(), 2000, seed=8)
    result = compare(config, device, events, flash=False)
    assert not result.bit_exact
    d = result.first_divergence
    assert d.layer == 4 and d.neuron[0] == 1  # only output channel 1 of core 4 changed
    expected = simulate(config.to_network(), events).events
    received = simulate(wrong.to_network(), events).events
    key = ["t", "layer", "channel", "y", "x"]
    before = lambda e: np.sort(e[e["t"] < d.t_us], order=key)  # noqa: E731
    np.testing.assert_array_equal(before(expected), before(received))  # nothing earlier differs
    at_t = lambda e: e[(e["t"] == d.t_us) & (e["layer"] == 4)]  # noqa: E731
    np.testing.assert_array_equal(d.expected_events, at_t(expected))
    np.testing.assert_array_equal(d.received_events, at_t(received))
    c, y, x = d.neuron
    count = lambda e: int(np.sum((e["channel"] == c) & (e["y"] == y) & (e["x"] == x)))  # noqa: E731
    assert (d.expected, d.received) == (count(d.expected_events), count(d.received_events))
    assert d.expected != d.received
    # the states: each network replayed from reset through the input up to and including t
    # by the plain-Python reference chip (the device holds the perturbed configuration)
    prefix = events[events["t"] <= d.t_us].tolist()
    states = []
    for network in (config.to_network(), wrong.to_network()):
        reference = ReferenceChip(network)
        reference.run(prefix)
        states.append(reference.states()[4][c][y][x])
    assert (d.state_expected, d.state_received) == tuple(states)
    summary = {s.layer: s for s in result.layers}
    assert summary[1].mismatches == 0 and summary[4].mismatches > 0
    assert summary[4].first_mismatch_us == d.t_us
    assert (summary[4].expected, summary[4].received) == (int(np.sum(expected["layer"] == 4)),
                                                          int(np.sum(received["layer"] == 4)))
    text = str(result)
    assert text.startswith(f"DIVERGED at t={d.t_us} µs, layer 4")
    assert f"neuron (channel={c}, y={y}, x={x})" in text
    assert f"state after t: simulation {states[0]}, device {states[1]}" in text


def test_compare_flashes_by_default(device):
    config = qualification_config("single_core", 9)
    device.flash(_perturbed(config, 0, (0, 0, 0, 0), 5))
    assert compare(config, device, random_input(config.to_network(), 500, seed=9)).bit_exact
    assert device.config is config


def test_compare_rejects_bad_arguments(device):
    config = qualification_config("single_core")
    with pytest.raises(TypeError, match=r"compare\(events\).*EVENT_DTYPE"):
        compare(config, device, np.zeros(3))
    with pytest.raises(TypeError, match="config_or_model"):
        compare("config.json", device, np.zeros(0, EVENT_DTYPE))
