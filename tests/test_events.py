"""Raster <-> events conversions and event-array validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snnlib import EVENT_DTYPE, InvalidEventsError, check_events, events_to_raster, raster_to_events


def as_events(rows) -> np.ndarray:
    return np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE)


rasters = hnp.arrays(np.int32, hnp.array_shapes(min_dims=4, max_dims=4, max_side=5), elements=st.integers(0, 3))


@settings(max_examples=150, deadline=None)
@given(raster=rasters, dt=st.integers(1, 5000), t0=st.integers(0, 10**12), layer=st.integers(0, 32767))
def test_round_trip_keeps_every_count_and_absolute_time(raster, dt, t0, layer):
    events = raster_to_events(raster, layer, dt, t0)
    assert events.dtype == EVENT_DTYPE and events.size == raster.sum()
    assert (events["layer"] == layer).all()
    check_events(events)  # sorted by t
    if events.size:
        assert events["t"].min() >= t0 and ((events["t"] - t0) % dt == 0).all()
    back = events_to_raster(events, raster.shape[1:], dt, t0, n_steps=raster.shape[0])
    np.testing.assert_array_equal(back, raster)


def test_order_within_a_bin_and_explicit_values():
    raster = np.zeros((2, 2, 2, 3), np.int64)
    raster[0, 1, 0, 2] = 2
    raster[0, 0, 1, 0] = 1
    raster[1, 0, 0, 1] = 1
    events = raster_to_events(torch.tensor(raster, dtype=torch.float32), 4, 1000, t0_us=5_000)
    assert events.tolist() == [(5000, 4, 0, 1, 0), (5000, 4, 1, 0, 2), (5000, 4, 1, 0, 2), (6000, 4, 0, 0, 1)]


def test_events_to_raster_bins_by_absolute_time():
    events = as_events([(2_500, 0, 0, 0, 0), (3_999, 0, 0, 0, 0), (4_000, 0, 1, 1, 0)])
    raster = events_to_raster(events, (2, 2, 1), dt_us=1000, t0_us=2_000)
    assert raster.shape == (3, 2, 2, 1) and raster.dtype == np.int32
    assert raster[0, 0, 0, 0] == 1 and raster[1, 0, 0, 0] == 1 and raster[2, 1, 1, 0] == 1 and raster.sum() == 3
    assert events_to_raster(events[:0], (2, 2, 1), 1000).shape == (0, 2, 2, 1)


def test_layer_selection_and_mixed_layers():
    events = as_events([(0, 1, 0, 0, 0), (0, 2, 0, 0, 0), (5, 2, 0, 0, 0)])
    assert events_to_raster(events, (1, 1, 1), 1, layer=2)[:, 0, 0, 0].tolist() == [1, 0, 0, 0, 0, 1]
    with pytest.raises(InvalidEventsError, match=r"events\[1\].layer = 2: events of several layers \(first is 1\)"):
        events_to_raster(events, (1, 1, 1), 1)


@pytest.mark.parametrize("rows, kw, fragment", [
    ([(5, 0, 0, 0, 0)], dict(t0_us=10), "events[0].t = 5: before t0_us = 10"),
    ([(0, 0, 0, 0, 0), (50, 0, 0, 0, 0)], dict(n_steps=3), "events[1].t = 50: after the last bin: 3 bins"),
    ([(0, 0, 2, 0, 0)], {}, "events[0].channel = 2: outside shape (2, 3, 4): expected 0 <= channel < 2"),
    ([(0, 0, 0, 3, 0)], {}, "events[0].y = 3"),
    ([(0, 0, 0, 0, -1)], {}, "events[0].x = -1"),
    ([(3, 0, 0, 0, 0), (2, 0, 0, 0, 0)], {}, "events[1].t = 2 is earlier than events[0].t = 3"),
    ([(-5, 0, 0, 0, 0), (2, 0, 0, 0, 0)], {}, "events[0].t = -5: timestamps are µs in 0..2**63-1"),
])
def test_events_to_raster_rejects_what_it_cannot_place(rows, kw, fragment):
    with pytest.raises(InvalidEventsError) as err:
        events_to_raster(as_events(rows), (2, 3, 4), 10, **kw)
    assert fragment in str(err.value)
    assert err.value.field in ("t", "channel", "y", "x") and err.value.index is not None


@pytest.mark.parametrize("raster, kw, fragment", [
    (np.full((1, 1, 1, 1), -1), {}, "raster[0, 0, 0, 0] = -1: counts must be >= 0"),
    (np.full((1, 1, 1, 1), 0.5), {}, "raster[0, 0, 0, 0] = 0.5: counts must be integers"),
    (np.zeros((1, 1, 1)), {}, "expected (T, C, H, W)"),
    (np.zeros((1, 1, 1, 1)), dict(dt_us=0), "dt_us=0"),
    (np.zeros((1, 1, 1, 1)), dict(t0_us=1.5), "t0_us=1.5"),
    (np.zeros((1, 1, 1, 1)), dict(t0_us=-1), "t0_us=-1"),
])
def test_raster_to_events_rejects_bad_rasters(raster, kw, fragment):
    args = dict(layer=0, dt_us=1000) | kw
    with pytest.raises(InvalidEventsError) as err:
        raster_to_events(raster, **args)
    assert fragment in str(err.value)


def test_check_events_bounds_per_layer():
    shapes = {0: (2, 4, 4), 13: (2, 128, 128)}
    check_events(as_events([(0, 13, 1, 127, 127), (1, 0, 1, 3, 3)]), shapes)
    with pytest.raises(InvalidEventsError, match=r"events\[1\].x = 4: out of range for layer 0: expected 0 <= x < 4"):
        check_events(as_events([(0, 13, 1, 127, 127), (1, 0, 1, 3, 4)]), shapes)
    with pytest.raises(InvalidEventsError, match=r"events\[0\].layer = 5: not a layer of the network \(layers: \[0, 13\]\)"):
        check_events(as_events([(0, 5, 0, 0, 0)]), shapes)
    with pytest.raises(InvalidEventsError, match="1-D numpy array of snnlib.EVENT_DTYPE"):
        check_events([(0, 0, 0, 0, 0)])


@pytest.mark.parametrize("field, k", [("channel", 2), ("y", 3), ("x", 4)])
def test_each_coordinate_is_checked_at_both_ends_of_its_range(field, k):
    shapes, shape = {0: (2, 3, 4), 13: (5, 6, 7)}, (2, 3, 4)
    size = shape[("channel", "y", "x").index(field)]
    for value, ok in ((-1, False), (0, True), (size - 1, True), (size, False)):
        events = as_events([(0, 0, 1, 2, 3), (5, 0, 1, 2, 3)])
        events[field][1] = value
        if ok:
            assert check_events(events, shapes) is events
            assert events_to_raster(events, shape, 10).sum() == 2
            continue
        with pytest.raises(InvalidEventsError) as err:
            check_events(events, shapes)
        assert (err.value.field, err.value.value, err.value.index) == (field, value, 1)
        with pytest.raises(InvalidEventsError) as err:
            events_to_raster(events, shape, 10)
        assert (err.value.field, err.value.value, err.value.index) == (field, value, 1)
    assert k == size


@pytest.mark.parametrize("layer", [-1, 1, 12, 14, 300])
def test_an_event_of_a_layer_without_a_shape_is_named_whatever_its_id(layer):
    events = as_events([(0, 13, 0, 0, 0), (1, layer, 0, 0, 0)])
    with pytest.raises(InvalidEventsError) as err:
        check_events(events, {0: (1, 1, 1), 13: (1, 1, 1)})
    assert (err.value.field, err.value.value, err.value.index) == ("layer", layer, 1)


def test_a_coordinate_is_checked_against_its_own_layers_shape_not_a_neighbours():
    shapes = {0: (1, 1, 2), 1: (9, 9, 9)}  # layer 0's row of limits is followed by a wider layer's
    for field in ("channel", "y", "x"):
        events = as_events([(0, 0, 0, 0, 0)])
        events[field][0] = shapes[0][("channel", "y", "x").index(field)]
        with pytest.raises(InvalidEventsError) as err:
            check_events(events, shapes)
        assert (err.value.field, err.value.index) == (field, 0)


def test_the_last_bin_ends_at_t0_plus_n_steps_times_dt():
    events = as_events([(100, 0, 0, 0, 0), (129, 0, 0, 0, 0)])
    assert events_to_raster(events, (1, 1, 1), 10, t0_us=100).flatten().tolist() == [1, 0, 1]
    assert events_to_raster(events, (1, 1, 1), 10, t0_us=100, n_steps=3).flatten().tolist() == [1, 0, 1]
    assert events_to_raster(events[:0], (1, 1, 1), 10, n_steps=0).shape == (0, 1, 1, 1)
    with pytest.raises(InvalidEventsError, match=r"events\[1\].t = 130: after the last bin: 3 bins of 10 us from t0_us = 100 end at 130"):
        events_to_raster(as_events([(100, 0, 0, 0, 0), (130, 0, 0, 0, 0)]), (1, 1, 1), 10, t0_us=100, n_steps=3)
    with pytest.raises(InvalidEventsError, match=r"events\[0\].t = 99: before t0_us = 100"):
        events_to_raster(as_events([(99, 0, 0, 0, 0)]), (1, 1, 1), 10, t0_us=100)


@pytest.mark.parametrize("kw, fragment", [
    (dict(dt_us=True), "dt_us=True"), (dict(t0_us=True), "t0_us=True"), (dict(n_steps=-1), "n_steps=-1"),
    (dict(n_steps=True), "n_steps=True"), (dict(shape=(1, 0, 1)), "shape=(1, 0, 1)"), (dict(shape=(1, 1)), "shape=(1, 1)"),
])
def test_events_to_raster_refuses_bools_and_bad_sizes(kw, fragment):
    args = dict(shape=(1, 1, 1), dt_us=1) | kw
    with pytest.raises(InvalidEventsError) as err:
        events_to_raster(as_events([(0, 0, 0, 0, 0)]), **args)
    assert fragment in str(err.value)


def test_raster_to_events_takes_int16_layers_and_sizes_to_their_ends():
    assert raster_to_events(np.ones((1, 1, 1, 1), np.int64), layer=32767, dt_us=1).tolist() == [(0, 32767, 0, 0, 0)]
    assert raster_to_events(np.ones((1, 1, 1, 1), bool), layer=-32768, dt_us=1).tolist() == [(0, -32768, 0, 0, 0)]
    wide = np.zeros((1, 1, 1, 32768), np.int8)
    wide[0, 0, 0, -1] = 2
    assert raster_to_events(wide, layer=0, dt_us=1, t0_us=0).tolist() == [(0, 0, 0, 0, 32767)] * 2
    for raster, layer in ((np.zeros((1, 1, 32769, 1)), 0), (np.zeros((1, 1, 1, 1)), 32768), (np.zeros((1, 1, 1, 1)), -32769)):
        with pytest.raises(InvalidEventsError, match="must fit int16"):
            raster_to_events(raster, layer=layer, dt_us=1)
