"""Absolute timestamps (camera time, e.g. 1.7e15 µs) on the simulator, emu://, an emulator on
a pty and one on TCP: the same output, rasters that span the run's own events, a raster budget
checked before the run, idle stretches that cost nothing without leaking layers (and past rest
with them), leak ticks up to ``until_us`` on every device, negative timestamps refused up front."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import RasterTooLarge
from backend.testing.qualification import NETWORKS, random_input
from engine_reference import ReferenceChip
from mapper import ChipConfig
from snnlib import simulate
from snnlib.events import InvalidEventsError

CAMERA_T0 = 1_700_000_000_000_000  # µs


@pytest.fixture(scope="module", params=["emu", "pty", "tcp"])
def device(request):
    if request.param == "emu":
        with open_device("emu://") as dev:
            yield dev
        return
    with ServedEmulator(EmulatorServer(), request.param) as served, open_device(served.url) as dev:
        yield dev


def config_of(name: str, period_us: int | None = None) -> ChipConfig:
    network = NETWORKS[name](0)
    if period_us is not None:
        network.slow_clock_period_us = period_us
    return ChipConfig.from_network(network)


def test_a_camera_stream_runs_bit_exact_with_rasters_from_its_first_event(device):
    config = config_of("pooled_chain", period_us=1000)  # a slow clock, but no layer leaks
    events = random_input(config.to_network(), 400, duration_us=20_000, seed=1)
    events["t"] += CAMERA_T0
    expected = simulate(config.to_network(), events).events
    device.flash(config)
    device.reset()
    result = device.run(events, dt_us=1000)
    assert len(expected) and (result.events == expected).all()
    assert result.t0_us == int(events["t"][0]) and result.n_steps <= 21
    assert sum(int(r.sum()) for r in result.rasters.values()) == len(expected) - result.outside_rasters


def test_an_idle_day_costs_nothing_without_leak_and_oversized_rasters_are_refused_first(device):
    config = config_of("pooled_chain", period_us=1)  # 1 µs ticks over 8.6e10 µs: never stepped
    events = random_input(config.to_network(), 200, duration_us=5000, seed=2)
    events["t"] += CAMERA_T0
    events["t"][100:] += 86_400 * 10**6  # a day later
    device.flash(config)
    device.reset()
    sent = device.counters.sent
    with pytest.raises(RasterTooLarge, match=r"rasters of \d+ bins of 1000 µs .* rasters=False"):
        device.run(events)
    assert device.counters.sent == sent  # refused before the run
    result = device.run(events, rasters=False)
    assert result.rasters == {} and (result.events == simulate(config.to_network(), events).events).all()


def test_leak_ticks_up_to_until_us_match_simulation(device):
    config = config_of("fanout_leak")  # core 5 leaks on a 400 µs clock
    events = random_input(config.to_network(), 150, duration_us=3000, seed=3)
    expected = simulate(config.to_network(), events, until_us=40_000).events
    device.flash(config)
    device.reset()
    result = device.run(events, until_us=40_000)
    assert int(expected["t"].max()) > 3000 and (result.events == expected).all()
    assert result.n_steps == 41


def resting_leak_network():
    """fanout_leak with biases that drive core 5 down to its lower bound (-8): a few idle ticks
    bring it to rest, after which a tick changes nothing."""
    network = NETWORKS["fanout_leak"](0)
    network.layers[5].bias = np.array([-2, -1], np.int16)
    return network


def test_idle_leak_ticks_at_rest_are_skipped_exactly():
    """Gaps of 5,000 and 2,500 ticks: the engine skips the ticks once the network is at rest,
    and gives what the plain-Python reference chip gives stepping every one of them."""
    network = resting_leak_network()
    events = random_input(network, 300, seed=11)
    events["t"][100:] += 2_000_000
    events["t"][200:] += 1_000_003  # off the tick grid
    until = int(events["t"][-1]) + 50_000
    reference = ReferenceChip(network)
    reference.run(events.tolist(), until_us=until)
    got = simulate(network, events, until_us=until)
    assert len(got.events) and got.events.tolist() == reference.out
    assert all((got.states[c] == np.array(reference.v[c])).all() for c in network.layers)


def test_a_camera_stream_through_a_leaking_network_at_rest_runs_on_every_device(device):
    """4.25e12 leak ticks lie before the first event at 1.7e15 µs (the grid counts from 0): core
    5 comes to rest at its lower bound after a few and the rest are skipped, so every device
    gives in moments what the same events near 0 give from that rest state."""
    network = resting_leak_network()
    events = random_input(network, 300, seed=12)
    settled = copy.deepcopy(network)
    settled.layers[5].initial_state = np.full(settled.layers[5].output_shape, -8, np.int16)
    expected = simulate(settled, events, until_us=int(events["t"][-1]) + 20_000).events
    expected["t"] += CAMERA_T0  # a multiple of the 400 µs period: the same tick phase
    events["t"] += CAMERA_T0
    assert len(expected) and (simulate(network, events, until_us=int(events["t"][-1]) + 20_000).events
                              == expected).all()
    device.flash(ChipConfig.from_network(network))
    device.reset()
    got = device.run(events, until_us=int(events["t"][-1]) + 20_000, rasters=False, timeout=60).events
    assert (got == expected).all()


def test_negative_timestamps_are_refused_before_the_run(device):
    config = config_of("single_core")
    events = random_input(config.to_network(), 20, seed=4)
    shift = int(events["t"][0]) + 100
    events["t"] -= shift
    device.flash(config)
    sent = device.counters.sent
    with pytest.raises(InvalidEventsError, match=r"events\[0\].t = -100: timestamps are µs in 0..2\*\*63-1"):
        device.run(events)
    with pytest.raises(ValueError, match=r"t0_us=-1"):
        device.run(events[10:], t0_us=-1)
    assert device.counters.sent == sent
    events["t"] += shift
    assert (device.run(events).events == simulate(config.to_network(), events).events).all()


def test_bounded_steps_give_the_same_run_as_one_call(monkeypatch):
    from backend.emulator import chip as chip_module

    monkeypatch.setattr(chip_module, "STEP_EVENTS", 7)
    monkeypatch.setattr(chip_module, "STEP_TICKS", 3)
    config = config_of("fanout_leak")
    events = random_input(config.to_network(), 120, duration_us=9000, seed=5)
    events["t"][60:] += 50_000  # a gap of 125 ticks
    chip = chip_module.EmulatedChip()
    chip.apply_config(config.to_json().encode())
    steps = list(chip.steps(events, until_us=70_000))
    expected = simulate(config.to_network(), events, until_us=70_000)
    assert len(steps) > 60 and (np.concatenate([out for out, _ in steps]) == expected.events).all()
    assert all((chip.read_states()[c] == expected.states[c]).all() for c in expected.states)


def test_a_step_ends_only_where_a_bound_ends_it(monkeypatch):
    """A step holds as many events as its bounds allow: the events whose gaps hold at most
    STEP_TICKS leak ticks, at most STEP_EVENTS of them (here 3 ticks and 7 events)."""
    from backend.emulator import chip as chip_module

    monkeypatch.setattr(chip_module, "STEP_EVENTS", 7)
    monkeypatch.setattr(chip_module, "STEP_TICKS", 3)
    config = config_of("fanout_leak", period_us=100)
    events = random_input(config.to_network(), 40, seed=6)
    events["t"][:20] = np.arange(20) * 100  # one event per tick: 4 events span 3 ticks
    events["t"][20:] = 2000 + np.arange(20)  # 20 events within one tick: 7 per step
    chip = chip_module.EmulatedChip()
    chip.apply_config(config.to_json().encode())
    ends = [stats.last_t for _, stats in chip.steps(events) if stats.last_t >= 0]
    assert ends == [300, 700, 1100, 1500, 1900, 2006, 2013, 2019]
