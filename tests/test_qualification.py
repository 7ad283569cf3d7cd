"""The qualification networks exercise what their docstrings promise: every core and the DVS
stage are monitored and spike on a random input, and each listed chip rule (mixed signs, the
lower clamp, zero reset, initial states, feature shift, leak with biases, DVS mirroring, the
alternative rules a device could implement) changes the simulated output when removed, so a
device that gets it wrong fails the bit-exact qualification."""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pytest

from backend.testing.qualification import NETWORKS, entry_layer, random_input
from snnlib import simulate
from snnlib.engine import ChipModelOptions
from snnlib.network import DVS_LAYER_ID, IntegerNetwork

N_EVENTS = 3000  # as hardware_tests/test_device_qualification.py


def _output(network: IntegerNetwork, options: ChipModelOptions | None = None) -> np.ndarray:
    """The simulated output events of ``network`` on its qualification input (seed 3)."""
    return simulate(network, random_input(network, N_EVENTS, seed=3), options).events


def _changed(name: str, edit: Callable[[IntegerNetwork], None]) -> bool:
    """Whether ``edit`` (applied to a copy of network ``name``, seed 0) changes the output."""
    network = NETWORKS[name](0)
    edited = copy.deepcopy(network)
    edit(edited)
    return not np.array_equal(_output(network), _output(edited.validate()))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_core_and_dvs_stage_is_monitored_and_spikes(name):
    network = NETWORKS[name](0)
    layers = set(network.layers) | ({DVS_LAYER_ID} if network.dvs is not None else set())
    assert all(layer.monitor for layer in network.layers.values())
    assert network.dvs is None or network.dvs.monitor
    assert set(np.unique(_output(network)["layer"]).tolist()) == layers


def _no_clamp(core: int):
    def edit(network):
        network.layers[core].threshold_low = -32768
    return edit


def _positive_weights(core: int):
    def edit(network):
        network.layers[core].weights = np.abs(network.layers[core].weights)
    return edit


def _subtract_reset(core: int):
    def edit(network):
        network.layers[core].reset = "subtract"
    return edit


def _zero_initial_state(network):
    network.layers[0].initial_state = None


def _no_feature_shift(network):
    network.layers[0].destinations[1].feature_shift = 0


def _no_leak(network):
    network.layers[5].leak_enable = False


def _no_bias(network):
    network.layers[5].bias = None


def _slower_clock(network):
    network.slow_clock_period_us *= 2


def _no_mirror(network):
    network.dvs.mirror_x = False


RULES = {  # (network, what it promises) -> an edit that removes it
    ("single_core", "mixed-sign weights"): _positive_weights(0),
    ("single_core", "lower clamp"): _no_clamp(0),
    ("pooled_chain", "lower clamp of core 1"): _no_clamp(1),
    ("pooled_chain", "lower clamp of core 4"): _no_clamp(4),
    ("pooled_chain", "mixed-sign weights of core 4"): _positive_weights(4),
    ("pooled_chain", "zero reset of core 4"): _subtract_reset(4),
    ("fanout_leak", "non-zero initial states"): _zero_initial_state,
    ("fanout_leak", "feature shift"): _no_feature_shift,
    ("fanout_leak", "leak"): _no_leak,
    ("fanout_leak", "leak biases"): _no_bias,
    ("fanout_leak", "400 us slow clock"): _slower_clock,
    ("fanout_leak", "lower clamp of core 2"): _no_clamp(2),
    ("fanout_leak", "lower clamp of core 5"): _no_clamp(5),
    ("dvs_input", "mirror x"): _no_mirror,
    ("dvs_input", "lower clamp"): _no_clamp(3),
}


@pytest.mark.parametrize("name, rule", sorted(RULES))
def test_each_promised_rule_changes_the_output_when_removed(name, rule):
    assert _changed(name, RULES[name, rule])


@pytest.mark.parametrize("options, names", [
    (ChipModelOptions(lower_bound="reject"), ["fanout_leak", "pooled_chain", "single_core"]),
    (ChipModelOptions(leak_can_fire=False), ["fanout_leak"]),
])
def test_a_device_with_an_alternative_rule_fails_the_qualification_of(options, names):
    """Networks whose seed-3 output (as qualified on hardware) the alternative rule changes
    (dvs_input's seed-3 output happens not to reach its clamp in a way ``reject`` changes)."""
    changed = [name for name in sorted(NETWORKS)
               if not np.array_equal(_output(NETWORKS[name](3)), _output(NETWORKS[name](3), options))]
    assert set(names) <= set(changed)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_input_enters_the_entry_layer_over_its_whole_shape(name):
    network = NETWORKS[name](0)
    layer, (c, h, w) = entry_layer(network)
    events = random_input(network, N_EVENTS, duration_us=2000, seed=1)
    assert np.all(events["layer"] == layer)
    assert np.all(np.diff(events["t"].astype(np.int64)) >= 0)
    assert events["t"].min() == 0 and events["t"].max() == 1990
    for field, size in (("channel", c), ("y", h), ("x", w)):
        assert sorted(np.unique(events[field]).tolist()) == list(range(size))
