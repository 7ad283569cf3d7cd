"""Event files: real .npy/.npz files in tmp_path, (x, y, t, p) conversion, input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.files.events import (
    METADATA_KEY,
    XYTP_DTYPE,
    XYTP_FIELDS,
    EventFileError,
    events_to_xytp,
    load_event_file,
    load_events,
    save_events,
    xytp_to_events,
)
from snnlib import DVS_LAYER_ID, EVENT_DTYPE, empty_events
from snnlib.events import InvalidEventsError


def random_events(n: int, seed: int = 0, layers=(0,), t0: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev["t"] = t0 + np.sort(rng.integers(0, 10**9, n))
    ev["layer"] = rng.choice(layers, n)
    ev["channel"] = rng.integers(0, 64, n)
    ev["y"] = rng.integers(0, 128, n)
    ev["x"] = rng.integers(0, 128, n)
    return ev


def test_npy_round_trip_keeps_every_field(tmp_path):
    ev = random_events(1000, t0=5 * 10**12)  # absolute time far from zero stays as is
    path = save_events(tmp_path / "in.npy", ev)
    assert path.read_bytes()[:6] == b"\x93NUMPY"
    back = load_events(path)
    assert back.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(back, ev)
    assert load_event_file(path).metadata == {}


def test_npz_holds_named_arrays_and_metadata(tmp_path):
    per_layer = {"layer_0": random_events(50, 1), "layer_3": random_events(20, 2, layers=(3,))}
    path = save_events(tmp_path / "out.npz", per_layer, metadata={"dt_us": 1000, "chip": "speck2f"})
    loaded = load_event_file(path)
    assert loaded.metadata == {"dt_us": 1000, "chip": "speck2f"}
    assert sorted(loaded.arrays) == ["layer_0", "layer_3"]
    for name, ev in per_layer.items():
        np.testing.assert_array_equal(loaded.arrays[name], ev)
        np.testing.assert_array_equal(load_events(path, name=name), ev)
    with np.load(path, allow_pickle=False) as raw:  # a plain npz any numpy can read
        assert set(raw.files) == {"layer_0", "layer_3", METADATA_KEY}


def test_single_array_npz_and_empty_arrays(tmp_path):
    path = save_events(tmp_path / "one.npz", empty_events(0))
    assert load_events(path).shape == (0,)
    assert load_event_file(path).arrays.keys() == {"events"}


def test_file_with_wrong_field_dtype_names_field_and_expected_dtype(tmp_path):
    bad_dtype = np.dtype([("t", "<i4"), ("layer", "<i2"), ("channel", "<i2"), ("y", "<i2"), ("x", "<i2")])
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros(3, dtype=bad_dtype))
    with pytest.raises(EventFileError, match=r"field 't' has dtype int32; expected int64") as err:
        load_events(path)
    assert err.value.field == "t"
    assert isinstance(err.value, InvalidEventsError)  # one except clause catches every event error


def test_file_with_missing_field_names_it(tmp_path):
    path = tmp_path / "missing.npz"
    np.savez(path, events=np.zeros(3, dtype=[("t", "<i8"), ("layer", "<i2"), ("x", "<i2")]))
    with pytest.raises(EventFileError, match=r"no field 'channel'.*EVENT_DTYPE"):
        load_events(path)


def test_saving_an_xytp_array_as_events_points_to_conversion(tmp_path):
    with pytest.raises(EventFileError, match="xytp_to_events"):
        save_events(tmp_path / "tonic.npy", np.zeros(3, dtype=XYTP_DTYPE))


def test_unstructured_and_unordered_and_unknown_files_are_refused(tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(5))
    with pytest.raises(EventFileError, match="not structured"):
        load_events(tmp_path / "plain.npy")
    ev = random_events(10)
    ev["t"][4] = -1
    with pytest.raises(EventFileError, match=r"events: events\[4\].t = -1 is earlier than events\[3\]"):
        save_events(tmp_path / "x.npy", ev)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(EventFileError, match="not a readable numpy .npy file"):
        load_events(tmp_path / "junk.npy")
    with pytest.raises(EventFileError, match="no such file"):
        load_events(tmp_path / "absent.npz")
    with pytest.raises(EventFileError, match=r"suffix '.csv'"):
        save_events(tmp_path / "ev.csv", ev[:3])


def test_save_refuses_bad_arguments(tmp_path):
    ev = random_events(5)
    with pytest.raises(EventFileError, match="save as .npz"):
        save_events(tmp_path / "a.npy", ev, metadata={"dt_us": 1})
    with pytest.raises(EventFileError, match=r"got 2 array\(s\); save as .npz"):
        save_events(tmp_path / "a.npy", {"a": ev, "b": ev})
    for arrays, metadata in (({"a": ev, "b": ev}, None), (ev, {"dt_us": 1}), (ev, {"sensor_size": [4, 4], "dt_us": 1})):
        with pytest.raises(EventFileError, match="an .aedat4 file holds one DVS event array and only the metadata"):
            save_events(tmp_path / "a.aedat4", arrays, metadata)
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(EventFileError, match="array name 3"):
        save_events(tmp_path / "a.npz", {3: ev})
    with pytest.raises(EventFileError, match="JSON-serialisable"):
        save_events(tmp_path / "a.npz", ev, metadata={"when": object()})
    with pytest.raises(EventFileError, match=r"events\['b'\]: dtype float64 is not structured"):
        save_events(tmp_path / "a.npz", {"a": ev, "b": np.zeros(3)})
    path = save_events(tmp_path / "two.npz", {"a": ev, "b": ev})
    with pytest.raises(EventFileError, match=r"holds 2 arrays \['a', 'b'\]; pass name="):
        load_events(path)
    with pytest.raises(EventFileError, match=r"name='c': not in"):
        load_events(path, name="c")


def test_metadata_that_is_not_a_json_object_is_refused(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, events=random_events(3), **{METADATA_KEY: np.array("[1, 2]")})
    with pytest.raises(EventFileError, match="expected a JSON object"):
        load_event_file(path)


def test_xytp_round_trip_keeps_absolute_time_and_field_order():
    ev = random_events(200, t0=123_456_789)
    xytp = events_to_xytp(ev)
    assert xytp.dtype.names == ("x", "y", "t", "p")
    assert xytp["t"][0] == ev["t"][0]
    np.testing.assert_array_equal(xytp["p"], ev["channel"])
    back = xytp_to_events(xytp, layer=0)
    np.testing.assert_array_equal(back, ev)


def test_xytp_to_events_reads_tonic_layouts():
    # Tonic's DVSGesture layout: x, y, p (bool), t -- another field order, read by name
    tonic = np.zeros(3, dtype=[("x", "<i2"), ("y", "<i2"), ("p", "?"), ("t", "<i8")])
    tonic["x"], tonic["y"], tonic["p"], tonic["t"] = [1, 2, 3], [4, 5, 6], [True, False, True], [10, 20, 20]
    ev = xytp_to_events(tonic)
    assert ev.dtype == EVENT_DTYPE
    assert ev["layer"].tolist() == [DVS_LAYER_ID] * 3
    assert ev["channel"].tolist() == [1, 0, 1]
    assert ev["t"].tolist() == [10, 20, 20]
    assert ev["x"].tolist() == [1, 2, 3] and ev["y"].tolist() == [4, 5, 6]


def test_events_to_xytp_specksim_dtype_and_range_checks():
    specksim = np.dtype([("x", np.uint32), ("y", np.uint32), ("t", np.uint32), ("p", np.uint32)])
    ev = random_events(20)
    out = events_to_xytp(ev, dtype=specksim)
    assert out.dtype == specksim
    np.testing.assert_array_equal(out["t"], ev["t"])
    late = ev.copy()
    late["t"][-1] = 2**33
    with pytest.raises(EventFileError, match=r"events\['t'\]\[19\] = 8589934592 does not fit uint32"):
        events_to_xytp(late, dtype=specksim)
    wrong_order = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "<i2")])
    with pytest.raises(EventFileError, match="in that order"):
        events_to_xytp(ev, dtype=wrong_order)
    with pytest.raises(EventFileError, match="field 'x' is float32"):
        events_to_xytp(ev, dtype=[("x", "<f4"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")])


@pytest.mark.parametrize("source, target", [(s, t) for s in ("x", "y", "channel", "t")
                                             for t in ("<u4", "<u2", "<u1", "<i2")] + [("channel", "?")])
def test_events_to_xytp_takes_each_type_s_range_ends_and_rejects_one_past_them(source, target):
    # e.g. x = -1 into specksim's uint32 must be refused, not wrap to 4294967295
    fields = {"x": "x", "y": "y", "channel": "p", "t": "t"}
    kind = np.dtype(target)
    lo, hi = (0, 1) if kind.kind == "b" else (np.iinfo(kind).min, np.iinfo(kind).max)
    dtype = np.dtype([(f, target if f == fields[source] else "<i8") for f in XYTP_FIELDS])
    ev = random_events(1)
    for value in (lo, hi):
        if value > np.iinfo(EVENT_DTYPE[source]).max or (source == "t" and value < 0):
            continue  # int16 fields cannot hold uint32's top; times are never negative
        ev[source] = value
        assert events_to_xytp(ev, dtype=dtype)[fields[source]].tolist() == [value]
    for value in (lo - 1, hi + 1):
        if not np.iinfo(EVENT_DTYPE[source]).min <= value <= np.iinfo(EVENT_DTYPE[source]).max:
            continue
        if source == "t" and value < 0:
            continue  # refused earlier, as a negative time (tests/test_absolute_time.py)
        ev[source] = value
        with pytest.raises(EventFileError, match=rf"events\['{source}'\]\[0\] = {value} does not fit {kind}"):
            events_to_xytp(ev, dtype=dtype)


def test_xytp_to_events_rejects_values_past_the_event_fields_at_both_ends():
    xytp = np.zeros(1, dtype=[("x", "<i8"), ("y", "<u8"), ("t", "<u8"), ("p", "<i4")])
    for name, ok, bad in [("x", (-32768, 32767), (-32769, 32768)), ("p", (-32768, 32767), (-32769, 32768)),
                          ("y", (0, 32767), (32768, 2**64 - 1)), ("t", (0, 2**63 - 1), (2**63, 2**64 - 1))]:
        row = xytp.copy()
        for value in ok:
            row[name] = value
            assert xytp_to_events(row, layer=0)["channel" if name == "p" else name].tolist() == [value]
        for value in bad:
            row[name] = value
            with pytest.raises(EventFileError, match=rf"xytp\['{name}'\]\[0\] = {value} does not fit"):
                xytp_to_events(row, layer=0)  # into a core: p is a channel (DVS: 0 or 1 only)


@pytest.mark.parametrize("layer", [-1, 32768, 1.0, True])
def test_xytp_to_events_takes_only_a_layer_id(layer):
    xytp = np.zeros(1, dtype=XYTP_DTYPE)
    assert xytp_to_events(xytp, layer=0)["layer"].tolist() == [0]
    assert xytp_to_events(xytp, layer=32767)["layer"].tolist() == [32767]
    with pytest.raises(EventFileError, match=rf"layer={layer!r}: expected a layer id, an int in \[0, 32767\]"):
        xytp_to_events(xytp, layer=layer)


def test_events_to_xytp_refuses_to_drop_the_layer():
    ev = random_events(30, layers=(0, 2))
    with pytest.raises(EventFileError, match=r"holds layers \[0, 2\]"):
        events_to_xytp(ev)
    assert len(events_to_xytp(ev[ev["layer"] == 2])) == np.count_nonzero(ev["layer"] == 2)


def test_xytp_to_events_validation():
    with pytest.raises(EventFileError, match="structured array with fields x, y, t, p"):
        xytp_to_events(np.zeros((3, 4)))
    with pytest.raises(EventFileError, match="has no field 'p'"):
        xytp_to_events(np.zeros(3, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8")]))
    with pytest.raises(EventFileError, match="field 't' has dtype float64"):
        xytp_to_events(np.zeros(3, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<f8"), ("p", "<i2")]))
    big = np.zeros(2, dtype=[("x", "<i4"), ("y", "<i4"), ("t", "<i8"), ("p", "<i4")])
    big["x"][1] = 40_000
    with pytest.raises(EventFileError, match=r"xytp\['x'\]\[1\] = 40000 does not fit int16"):
        xytp_to_events(big)
    unordered = np.zeros(3, dtype=XYTP_DTYPE)
    unordered["t"] = [5, 3, 9]
    with pytest.raises(EventFileError, match=r"xytp: events\[1\].t = 3"):
        xytp_to_events(unordered)


def test_save_rejects_non_arrays_and_2d(tmp_path):
    with pytest.raises(EventFileError, match="got list"):
        save_events(tmp_path / "a.npz", [1, 2])
    with pytest.raises(EventFileError, match=r"events: events: got a ndarray .* shape \(2, 2\)"):
        save_events(tmp_path / "a.npy", empty_events(4).reshape(2, 2))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**40), st.integers(0, 15), st.integers(0, 1023),
            st.integers(-32768, 32767), st.integers(-32768, 32767),
        ),
        max_size=40,
    )
)
def test_any_event_array_survives_npz_and_xytp(tmp_path_factory, rows):
    ev = np.array(sorted(rows), dtype=[("t", "<i8"), ("layer", "<i2"), ("channel", "<i2"),
                                        ("y", "<i2"), ("x", "<i2")]).astype(EVENT_DTYPE)
    path = save_events(tmp_path_factory.mktemp("h") / "e.npz", {"all": ev}, metadata={"n": len(ev)})
    loaded = load_event_file(path)
    np.testing.assert_array_equal(loaded.arrays["all"], ev)
    assert loaded.metadata == {"n": len(ev)}
    one_layer = ev.copy()
    one_layer["layer"] = 7
    np.testing.assert_array_equal(xytp_to_events(events_to_xytp(one_layer), layer=7), one_layer)
