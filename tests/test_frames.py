"""Payload layouts and their checks (backend/protocol/frames.py, docs/protocol.md): every
bound at, below and above it."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import ProtocolError
from backend.protocol import frames as fr
from backend.protocol.codec import MAX_PAYLOAD
from snnlib.events import EVENT_DTYPE


@pytest.mark.parametrize("max_payload, fits", [(63, False), (64, True),
                                               (MAX_PAYLOAD, True), (MAX_PAYLOAD + 1, False)])
def test_an_announced_max_payload_is_accepted_from_64_to_65536_bytes(max_payload, fits):
    if fits:
        fr.check_announced("GREETING", max_payload, 4)
    else:
        with pytest.raises(ProtocolError, match=f"max_payload = {max_payload} bytes"):
            fr.check_announced("GREETING", max_payload, 4)


@pytest.mark.parametrize("window, fits", [(0, False), (1, True), (256, True), (257, False)])
def test_an_announced_window_is_accepted_from_1_to_256_frames(window, fits):
    if fits:
        fr.check_announced("HELLO", 1024, window)
    else:
        with pytest.raises(ProtocolError, match=f"window = {window} frames"):
            fr.check_announced("HELLO", 1024, window)


@pytest.mark.parametrize("name, top", [("layer", 15), ("channel", 1023), ("y", 511), ("x", 511)])
def test_an_event_field_is_carried_from_0_to_its_top_and_refused_outside(name, top):
    events = np.zeros(3, EVENT_DTYPE)
    events["t"] = [0, 1, 2]
    events[name] = [0, top, 0]
    fr.check_events_fit(events)
    np.testing.assert_array_equal(fr.unpack_events(fr.pack_events(events, 64)), events)
    for bad in (-1, top + 1):
        events[name][2] = bad
        with pytest.raises(ValueError, match=rf"events\[2\]\.{name} = {bad}: .* 0\.\.{top}"):
            fr.check_events_fit(events)


def test_a_negative_timestamp_is_refused_and_zero_is_carried():
    events = np.zeros(2, EVENT_DTYPE)
    fr.check_events_fit(events)
    fr.check_events_fit(events[:0])
    events["t"][1] = -1
    with pytest.raises(ValueError, match=r"events\[1\]\.t = -1 µs"):
        fr.check_events_fit(events)


@pytest.mark.parametrize("max_payload", [64, 71, 72, 1024])
def test_events_fill_each_payload_up_to_max_payload(max_payload):
    """A full batch holds (max_payload - 8) // 8 events: the 8-byte base time, then 8 per event."""
    events = np.zeros(300, EVENT_DTYPE)
    events["t"] = np.arange(300)
    per = (max_payload - 8) // 8
    payloads = fr.pack_events(events, max_payload)
    assert [fr.count_events(p) for p in payloads] == [per] * (300 // per) + ([300 % per] if 300 % per else [])
    assert all(len(p) == 8 + 8 * fr.count_events(p) <= max_payload for p in payloads)
    assert fr.events_per_frame(max_payload) == per


def test_an_events_payload_is_a_base_time_and_whole_8_byte_records():
    payload = fr.pack_events(np.zeros(2, EVENT_DTYPE), 64)[0]
    assert len(fr.unpack_events([payload])) == 2
    assert len(fr.unpack_events([payload[:8]])) == 0
    assert fr.unpack_events([]).dtype == EVENT_DTYPE and len(fr.unpack_events([])) == 0
    with pytest.raises(ProtocolError, match="EVENTS payload of 7 bytes"):
        fr.unpack_events([payload[:7]])
    for extra in (1, 7):
        with pytest.raises(ProtocolError, match="not a multiple of 8"):
            fr.unpack_events([payload + bytes(extra)])


@pytest.mark.parametrize("layout, what", [(fr.STATE_DATA, "STATE_DATA"), (fr.ERROR, "ERROR"),
                                          (fr.CONFIG_APPLIED, "CONFIG_APPLIED")])
def test_a_payload_shorter_than_its_layout_is_a_protocol_error(layout, what):
    assert fr.unpack_struct(layout, bytes(layout.size), what) == layout.unpack(bytes(layout.size))
    with pytest.raises(ProtocolError, match=f"{what} payload of {layout.size - 1} bytes; expected at least {layout.size}"):
        fr.unpack_struct(layout, bytes(layout.size - 1), what)


def test_run_end_carries_until_us_only_when_given_and_never_negative():
    assert fr.run_until(fr.pack_run_end(3)) is None
    assert fr.run_until(fr.pack_run_end(3, 0)) == 0
    assert fr.run_until(fr.pack_run_end(3, 2**63 - 1)) == 2**63 - 1
    assert fr.run_until(fr.pack_run_end(3, 5)[:-1]) is None  # not a whole until_us
    with pytest.raises(ProtocolError, match="until_us = -1"):
        fr.run_until(fr.pack_run_end(3, -1))


def test_an_end_of_run_must_hold_exactly_its_core_records():
    end = fr.EndOfRun(1, 2, 3, 4, 0, 0, {0: 2, 13: 1}, {0: 3, 13: 0})
    payload = end.pack()
    assert len(payload) == fr.EndOfRun.HEAD.size + 2 * 17
    assert fr.EndOfRun.unpack(payload) == end
    one_sided = fr.EndOfRun(1, 2, 3, 4, 0, 0, {0: 2}, {1: 3})  # a core missing from one side counts 0
    assert fr.EndOfRun.unpack(one_sided.pack()).core_in == {0: 2, 1: 0}
    assert fr.EndOfRun.unpack(one_sided.pack()).core_out == {0: 0, 1: 3}
    for wrong in (payload[:-1], payload + b"\x00"):
        with pytest.raises(ProtocolError, match="does not hold 2 core records"):
            fr.EndOfRun.unpack(wrong)


def test_status_data_needs_all_ten_counters_and_ignores_more():
    values = {name: 10 + i for i, name in enumerate(fr.STATUS_FIELDS)}
    payload = fr.pack_status(values)
    assert len(payload) == 80
    assert fr.unpack_status(payload) == fr.unpack_status(payload + bytes(8)) == values
    assert fr.unpack_status(fr.pack_status({"runs": 4})) == {**dict.fromkeys(fr.STATUS_FIELDS, 0), "runs": 4}
    with pytest.raises(ProtocolError, match="STATUS_DATA of 79 bytes; expected 80"):
        fr.unpack_status(payload[:-1])


def test_a_greeting_carries_a_chip_of_up_to_16_bytes_and_a_firmware_of_up_to_64():
    long = fr.Greeting(1, 2, 1024, 4, "c" * 20, "f" * 70)
    back = fr.Greeting.unpack(long.pack())
    assert (back.chip, back.firmware) == ("c" * 16, "f" * 64)
    short = fr.Greeting(1, 2, 1024, 4, "speck2f", "emu 1")
    assert fr.Greeting.unpack(short.pack()) == short
    with pytest.raises(ProtocolError, match="GREETING starts with b'XPKF'"):
        fr.Greeting.unpack(b"X" + short.pack()[1:])
    with pytest.raises(ProtocolError, match="HELLO starts with"):
        fr.Hello.unpack(b"X" + fr.Hello(3, 1024, 4).pack()[1:])
