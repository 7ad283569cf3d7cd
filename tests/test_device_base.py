"""The arguments of ``Device.run`` (backend/devices/base.py), checked before anything runs:
each at, below and above its bound, on emu:// (the same code serves every device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.devices import open_device
from backend.devices.base import MAX_RASTER_BYTES, Device, RasterTooLarge
from backend.testing.qualification import NETWORKS, random_input
from mapper import ChipConfig


@pytest.fixture(scope="module")
def device() -> Device:
    with open_device("emu://") as dev:
        dev.flash(ChipConfig.from_network(NETWORKS["single_core"](0)))
        yield dev


def run(device: Device, inputs, **options):
    """``device.run`` from a reset, so that every call's time starts over."""
    device.reset()
    return device.run(inputs, **options)


@pytest.fixture(scope="module")
def events(device):
    return random_input(device.config.to_network(), 20, seed=4)


def test_the_bin_width_is_a_positive_whole_number_of_us(device, events):
    assert run(device, events, dt_us=1).dt_us == 1
    assert run(device, events, dt_us=np.int64(7)).dt_us == 7
    sent = device.counters.sent
    for dt_us in (0, -1, True, 1.0):
        with pytest.raises(ValueError, match=rf"run\(dt_us={dt_us!r}\): the bin width must be a positive"):
            run(device, events, dt_us=dt_us)
    assert device.counters.sent == sent


@pytest.mark.parametrize("name", ["t0_us", "until_us"])
def test_t0_us_and_until_us_are_times_from_0(device, events, name):
    start = int(events["t"][0])
    assert run(device, events[:0], **{name: 0}).n_steps >= 0  # 0 is a time
    sent = device.counters.sent
    for value in (-1, True, 1.5):
        with pytest.raises(ValueError, match=rf"run\({name}={value!r}\): expected a time in µs"):
            run(device, events, **{name: value})
    assert device.counters.sent == sent
    fits = start if name == "t0_us" else int(events["t"][-1])
    assert run(device, events, **{name: fits}).t0_us == start


def test_until_us_may_equal_the_last_input_event_but_not_precede_it(device, events):
    last = int(events["t"][-1])
    result = run(device, events, until_us=last, dt_us=1000)
    assert result.t0_us == int(events["t"][0])
    assert result.n_steps == (last - result.t0_us) // 1000 + 1
    with pytest.raises(ValueError, match=rf"run\(until_us={last - 1}\): earlier than the last input event \(t = {last}\)"):
        run(device, events, until_us=last - 1)


def test_until_us_stretches_the_rasters_past_the_last_event(device, events):
    first, last = int(events["t"][0]), int(events["t"][-1])
    result = run(device, events, until_us=last + 10_000, dt_us=1000)
    assert result.n_steps == (last + 10_000 - first) // 1000 + 1
    assert run(device, events[:0], until_us=5000, dt_us=1000).t0_us == 5000  # no events: from until_us


def test_a_raster_input_needs_its_layer_and_four_dimensions(device):
    shape = device.config.to_network().input_shapes()[0]
    raster = torch.zeros((3, *shape))
    raster[1, 0, 0, 0] = 1
    result = run(device, raster, layer=0, dt_us=1000)
    assert result.t0_us == 0 and result.n_steps >= 3
    with pytest.raises(ValueError, match="needs layer=<core id>"):
        run(device, raster)
    with pytest.raises(ValueError, match=r"raster shape \(3, .*\); expected \(T, C, H, W\)"):
        run(device, raster[:, 0], layer=0)


def test_rasters_of_exactly_the_budget_are_made_and_one_byte_less_refuses_them(device, events):
    result = run(device, events, dt_us=1000)
    neurons = sum(int(np.prod(r.shape[1:])) for r in result.rasters.values())
    size = 4 * result.n_steps * neurons
    assert run(device, events, dt_us=1000, max_raster_bytes=size).n_steps == result.n_steps
    sent = device.counters.sent
    with pytest.raises(RasterTooLarge, match=f"rasters of {result.n_steps} bins of 1000 µs"):
        run(device, events, dt_us=1000, max_raster_bytes=size - 1)
    assert device.counters.sent == sent
    assert MAX_RASTER_BYTES == 1 << 30  # the documented default budget, 1 GiB


def test_the_bins_span_t0_us_to_the_last_event_or_until_us(device, events):
    """One bin at 0 for an empty run; none when t0_us is after every event and until_us."""
    empty = run(device, events[:0], dt_us=1)
    assert (empty.t0_us, empty.n_steps) == (0, 1)
    assert all(r.shape[0] == 1 for r in empty.rasters.values())
    last = int(events["t"][-1])
    late = run(device, events, dt_us=1000, t0_us=last + 1)
    assert late.n_steps == 0 and all(r.shape[0] == 0 for r in late.rasters.values())
    at_last = run(device, events, dt_us=1000, t0_us=last)
    assert at_last.n_steps == 1
