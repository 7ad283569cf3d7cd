"""Hardware-vs-simulation comparison on real parts: the emulator agrees bit for bit, and a
device computing with a perturbed configuration is caught at the right place."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from backend.analysis.compare import SHOWN_EVENTS, compare, compare_outputs
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


def _events(*rows) -> np.ndarray:
    """EVENT_DTYPE events from ``(t, layer, channel, y, x)`` rows."""
    events = np.zeros(len(rows), EVENT_DTYPE)
    for field, values in zip(("t", "layer", "channel", "y", "x"), zip(*rows)):
        events[field] = values
    return events


def test_a_layer_summary_counts_mismatches_and_spans_the_first_to_the_last():
    same = [(50, 1, 0, 0, 0)]
    expected = _events(*same, (100, 1, 0, 1, 1), (200, 1, 1, 0, 0), (300, 1, 2, 0, 0), (300, 1, 2, 0, 0))
    received = _events(*same, (200, 1, 1, 0, 1), (300, 1, 2, 0, 0))  # 100 missing, 200 moved, 300 once
    result = compare_outputs(expected, received, qualification_config("pooled_chain"))  # cores 1, 4
    first, second = result.layers
    assert (first.layer, first.expected, first.received, first.mismatches) == (1, 5, 3, 4)
    assert (first.first_mismatch_us, first.last_mismatch_us) == (100, 300)
    assert (second.layer, second.expected, second.received, second.mismatches) == (4, 0, 0, 0)
    assert (second.first_mismatch_us, second.last_mismatch_us) == (None, None)
    assert not result.bit_exact and not result.same_order
    assert "mismatches      4  first 100 µs, last 300 µs" in str(result)
    assert str(result).splitlines()[-1].endswith("mismatches      0")


def test_the_first_divergence_is_the_earliest_over_all_layers():
    expected = _events((10, 0, 0, 0, 0), (70, 0, 3, 2, 1), (90, 2, 0, 0, 0), (90, 2, 1, 0, 0),
                       (60, 5, 0, 0, 0))  # layer 5: expected only
    received = _events((10, 0, 0, 0, 0), (40, 2, 1, 5, 4), (70, 0, 3, 2, 1), (70, 0, 3, 2, 1),
                       (50, 6, 0, 0, 0))  # layer 6: received only
    d = compare_outputs(expected, received).first_divergence
    assert (d.layer, d.neuron, d.t_us, d.expected, d.received) == (2, (1, 5, 4), 40, 0, 1)
    assert len(d.expected_events) == 0 and len(d.received_events) == 1
    summaries = {s.layer: (s.expected, s.received, s.mismatches) for s in compare_outputs(expected, received).layers}
    assert summaries == {0: (2, 3, 1), 2: (2, 1, 3), 5: (1, 0, 1), 6: (0, 1, 1)}
    report = str(compare_outputs(expected, received))
    assert report.startswith("DIVERGED at t=40 µs, layer 2 (core 2), neuron (channel=1, y=5, x=4): "
                             "expected 0 event(s), received 1\n  expected at t: none\n"
                             "  received at t: 1 event(s): (ch=1, y=5, x=4)\n")


def test_the_report_shows_at_most_shown_events_per_side():
    crowd = [(30, 0, c, 0, 0) for c in range(SHOWN_EVENTS + 2)]
    report = str(compare_outputs(_events(*crowd), _events(*crowd[:SHOWN_EVENTS])))
    assert f"expected at t: {SHOWN_EVENTS + 2} event(s): " in report
    assert report.count("(ch=") == 2 * SHOWN_EVENTS and ", ... 2 more\n" in report
    assert f"(ch={SHOWN_EVENTS - 1}, y=0, x=0)\n" in report  # the received side: all shown, no "more"


def test_the_same_events_in_another_order_are_bit_exact_but_reported_as_reordered():
    rows = [(20, 0, 0, 0, 0), (20, 0, 1, 0, 0), (30, 3, 0, 1, 0)]
    result = compare_outputs(_events(*rows), _events(rows[1], rows[0], rows[2]))
    assert result.bit_exact and not result.same_order and result.first_divergence is None
    assert str(result).splitlines()[0] == ("bit-exact: 3 events on 2 layers agree "
                                           "(same events per timestamp, in a different order)")
    in_order = compare_outputs(_events(*rows), _events(*rows))
    assert in_order.same_order and str(in_order).splitlines()[0] == "bit-exact: 3 events on 2 layers agree"
