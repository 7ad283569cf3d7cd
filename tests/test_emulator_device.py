"""The in-process emulator (emu://) and the EmulatedChip it shares with the emulator server."""

from __future__ import annotations

import numpy as np
import pytest

from backend.devices import open_device
from backend.emulator.chip import EmulatedChip
from backend.errors import DeviceDisconnected, NotFlashed
from backend.testing.qualification import qualification_config, random_input


@pytest.fixture
def device():
    with open_device("emu://") as dev:
        yield dev


def test_chip_applies_config_and_reports_its_digest():
    config = qualification_config("pooled_chain")
    chip = EmulatedChip()
    assert chip.apply_config(config.to_json().encode()) == config.digest()
    assert set(chip.read_states()) == {1, 4}


def test_chip_keeps_previous_config_when_new_one_is_invalid():
    config = qualification_config("single_core")
    chip = EmulatedChip()
    chip.apply_config(config.to_json().encode())
    with pytest.raises(ValueError):
        chip.apply_config(b'{"not": "a config"')
    assert chip.config.digest() == config.digest()
    out, stats = chip.run(random_input(config.to_network(), 10))
    assert stats.events_in[0] == 10


def test_chip_run_stats_count_per_core():
    from snnlib import EventSimulator

    config = qualification_config("fanout_leak", 1)
    network = config.to_network()
    events = random_input(network, 500, seed=1)
    chip = EmulatedChip()
    chip.apply_config(config.to_json().encode())
    out, stats = chip.run(events)
    engine = EventSimulator(network)
    np.testing.assert_array_equal(out, engine.run(events))
    for core, c in engine.counters.items():
        assert stats.events_in[core] == c["events_in"]
        assert stats.events_out[core] == c["spikes_out"]
    assert stats.last_t == events["t"].max()
    assert stats.dropped == sum(c["dropped"] for c in engine.counters.values())


@pytest.mark.parametrize("chip", ["", None, 2])
def test_a_chip_that_is_not_a_name_is_refused_at_open(chip):
    """``open_device("emu://", chip=...)`` refuses an empty or non-string chip name at once,
    naming the fix, instead of reporting it and refusing every configuration later."""
    with pytest.raises(ValueError, match=r"chip=.*expected a chip name such as 'speck2f'"):
        open_device("emu://", chip=chip)


@pytest.mark.parametrize("call", ["reset", "read_states", "run"])
def test_needs_a_flash_first(device, call):
    args = (random_input(qualification_config("single_core").to_network(), 3),) if call == "run" else ()
    with pytest.raises(NotFlashed, match="flash"):
        getattr(device, call)(*args)


def test_states_persist_across_runs_and_reset_restores_initial(device):
    from snnlib import simulate

    config = qualification_config("fanout_leak", 2)
    network = config.to_network()
    device.flash(config)
    events = random_input(network, 800, seed=2)
    half = len(events) // 2
    split = np.concatenate([device.run(events[:half]).events, device.run(events[half:]).events])
    np.testing.assert_array_equal(split, simulate(network, events).events)
    device.reset()
    for core, state in device.read_states().items():
        np.testing.assert_array_equal(state, network.layers[core].initial_state
                                      if network.layers[core].initial_state is not None
                                      else np.zeros(network.layers[core].output_shape))
    np.testing.assert_array_equal(device.run(events).events, simulate(network, events).events)


def test_counters_accumulate(device):
    config = qualification_config("pooled_chain", 3)
    device.flash(config)
    events = random_input(config.to_network(), 300, seed=3)
    out1 = device.run(events).events
    device.reset()
    out2 = device.run(events).events
    c = device.counters
    assert (c.sent, c.received) == (600, len(out1) + len(out2))
    assert c.core_in[1] == 600
    assert c.core_out[1] + c.core_out[4] == c.received  # both cores monitored


def test_closed_device_refuses_work():
    dev = open_device("emu://")
    dev.close()
    dev.close()
    with pytest.raises(DeviceDisconnected, match="closed"):
        dev.info()
