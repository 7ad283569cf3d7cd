"""backend.app.dvs_shapes: the synthetic event-camera dataset of the DVS demo: seeded, on the
sensor, absolute time, and events where a DVS pixel would make them."""

from __future__ import annotations

import numpy as np
import pytest

from backend.app.dvs_shapes import (DIRECTIONS, FRAME_US, REFRACTORY_US, SHAPES, T0_US, _fire, class_names,
                                    make_recordings)
from backend.files.events import XYTP_DTYPE, xytp_to_events


def test_recordings_are_seeded_balanced_on_the_sensor_and_in_absolute_time():
    recordings = make_recordings(24, seed=3, duration_us=50_000)
    again = make_recordings(24, seed=3, duration_us=50_000)
    other = make_recordings(24, seed=4, duration_us=50_000)
    assert all(np.array_equal(a.events, b.events) for a, b in zip(recordings, again))
    assert not np.array_equal(recordings[0].events, other[0].events)
    assert [r.label for r in recordings] == list(range(12)) * 2
    assert [class_names()[r.label] for r in recordings[:5]] == [
        "square right", "square left", "square down", "square up", "frame right"]
    assert len(class_names()) == len(SHAPES) * len(DIRECTIONS) == 12
    for i, r in enumerate(recordings):
        ev = r.events
        assert ev.dtype == XYTP_DTYPE and len(ev) > 1000
        assert r.t0_us == T0_US + i * 60_000  # one recording, 10 ms between samples
        assert r.t0_us <= ev["t"][0] and ev["t"][-1] < r.t0_us + 50_000
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].min() >= 0 and ev["x"].max() < 128 and ev["y"].min() >= 0 and ev["y"].max() < 128
        assert set(np.unique(ev["p"])) == {0, 1}
        assert xytp_to_events(ev)["layer"][0] == 13  # loads as DVS input


@pytest.mark.parametrize("direction, axis, on_side", [("right", "x", 1), ("left", "x", -1),
                                                      ("down", "y", 1), ("up", "y", -1)])
def test_a_bright_shape_turns_pixels_on_at_its_leading_edge_and_off_behind(direction, axis, on_side):
    recordings = make_recordings(12, seed=0)
    for r in recordings:
        if r.direction != direction:
            continue
        on, off = r.events[r.events["p"] == 1], r.events[r.events["p"] == 0]
        lead = np.median(on[axis].astype(float)) - np.median(off[axis].astype(float))
        assert on_side * lead > 5, (r.shape, direction, lead)  # pixels apart, the way it moves


def test_a_pixel_emits_one_event_per_threshold_crossed_at_the_interpolated_time():
    times = np.arange(19) * FRAME_US
    ramp = (np.arange(19) / 16).reshape(19, 1, 1)  # log intensity up by 1/16 per frame
    x, y, t, p = _fire(ramp, np.full((1, 1), 0.25), times)
    assert p.tolist() == [1] * 4 and x.tolist() == y.tolist() == [0] * 4
    assert t.tolist() == [4 * FRAME_US, 8 * FRAME_US, 12 * FRAME_US, 16 * FRAME_US]
    x, y, t, p = _fire(-ramp, np.full((1, 1), 0.25), times + 5)
    assert p.tolist() == [0] * 4 and t.tolist() == [k * FRAME_US + 5 for k in (4, 8, 12, 16)]
    early = ramp[:, :, [0, 0]] + np.array([0.0, 1 / 32])  # pixel 1 half a frame ahead after frame 0
    early[0] = 0.0
    x, y, t, p = _fire(early, np.full((1, 2), 0.25), times)
    assert x.tolist() == [0, 1] * 4  # frame by frame, each frame's events in pixel order
    assert t.tolist() == [t for k in (4, 8, 12, 16) for t in (k * FRAME_US, k * FRAME_US - FRAME_US // 2)]


def test_a_pixel_stays_silent_for_the_refractory_period():
    times = np.arange(12) * FRAME_US
    step = np.zeros((12, 1, 2))
    step[3:, 0, 0] = 1.0  # pixel 0: a jump of 1.0 (four thresholds of 0.25) between frames 2 and 3
    _, _, t, p = _fire(step, np.full((1, 2), 0.25), times)
    assert p.tolist() == [1, 1, 1, 1]
    assert t[0] == 2 * FRAME_US + FRAME_US // 4  # the first threshold, a quarter into the jump
    assert np.diff(t).tolist() == [REFRACTORY_US] * 3


def test_make_recordings_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"n=0: expected an int >= 1"):
        make_recordings(0)
    with pytest.raises(ValueError, match=r"sensor_size=\(64,\): expected \(height, width\)"):
        make_recordings(1, sensor_size=(64,))
    with pytest.raises(ValueError, match=r"must fit the sensor \(32, 32\); make them smaller"):
        make_recordings(1, sensor_size=(32, 32))
    with pytest.raises(ValueError, match=r"travel=-1: expected a number of pixels > 0"):
        make_recordings(1, travel=-1)
    with pytest.raises(ValueError, match=r"duration_us=100: expected an int >= 500"):
        make_recordings(1, duration_us=100)
