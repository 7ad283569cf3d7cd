"""Codec properties (docs/protocol.md, reliability bar B.6 items 1-6), with hypothesis."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.errors import PartialFrame, ProtocolError
from backend.protocol import frames as fr
from backend.protocol.codec import END, HEADER, MAX_PAYLOAD, Frame, FrameDecoder, decode_stream, encode_frame
from backend.protocol.frames import FrameType
from snnlib.events import EVENT_DTYPE

FAST = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# payloads made mostly of the delimiter and escape bytes
nasty_bytes = st.lists(st.sampled_from([0xC0, 0xDB, 0xDC, 0xDD, 0x00, 0xFF]) | st.integers(0, 255),
                       max_size=300).map(bytes)
frame_st = st.builds(Frame, st.sampled_from(list(FrameType)), st.integers(0, 65535), nasty_bytes,
                     st.integers(0, 255))
frames_st = st.lists(frame_st, min_size=1, max_size=6)


def wire(frames: list[Frame]) -> bytes:
    return b"".join(encode_frame(f.type, f.seq, f.payload, f.flags) for f in frames)


@FAST
@given(frames_st)
def test_round_trip_every_frame_type_with_delimiter_payloads(frames):
    decoded, counters = decode_stream(wire(frames))
    assert decoded == frames
    assert counters.rejected == 0 and counters.dropped_bytes == 0


@FAST
@given(frames_st, st.lists(st.integers(0, 4000), max_size=20))
def test_any_split_gives_the_same_frames(frames, cuts):
    data = wire(frames)
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    decoder = FrameDecoder()
    got = [f for a, b in zip(bounds, bounds[1:]) for f in decoder.feed(data[a:b])]
    decoder.finish()
    assert got == frames


def test_byte_by_byte_feeding_equals_whole_buffer():
    frames = [Frame(FrameType.EVENTS, 7, bytes(range(256)) * 3), Frame(FrameType.ACK, 0, b"\xc0\xdb")]
    decoder = FrameDecoder()
    got = [f for byte in wire(frames) for f in decoder.feed(bytes([byte]))]
    assert got == frames


@FAST
@given(frames_st, st.lists(st.binary(max_size=80), min_size=1, max_size=4))
def test_garbage_before_and_between_frames_is_skipped_and_counted(frames, garbage):
    data = garbage[0] + b"".join(
        encode_frame(f.type, f.seq, f.payload, f.flags) + garbage[(i + 1) % len(garbage)] + END
        for i, f in enumerate(frames))
    decoded, counters = decode_stream(data)
    assert decoded == frames
    junk = sum(len(garbage[(i + 1) % len(garbage)].replace(END, b"")) for i in range(len(frames)))
    junk += len(garbage[0].replace(END, b""))
    assert counters.dropped_bytes == junk


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_protocol_errors(data):
    decoder = FrameDecoder()
    for frame in decoder.feed(data):  # a frame found in noise is exactly bytes of the noise
        assert encode_frame(frame.type, frame.seq, frame.payload, frame.flags)[1:-1] in data
    try:
        decoder.finish()
    except PartialFrame as exc:
        assert isinstance(exc, ProtocolError) and exc.received > 0


def _corrupted(frame: Frame, mutate) -> bytes:
    data = bytearray(encode_frame(frame.type, frame.seq, frame.payload, frame.flags))
    mutate(data)
    return bytes(data)



@settings(max_examples=1500, deadline=None)
@given(frame_st, st.data())
def test_every_single_bit_flip_is_caught_and_never_delivered(frame, data):
    encoded = encode_frame(frame.type, frame.seq, frame.payload, frame.flags)
    position = data.draw(st.integers(1, len(encoded) - 2))  # inside the frame
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(encoded)
    flipped[position] ^= 1 << bit
    follower = encode_frame(FrameType.ACK, 1, b"ok")
    decoded, counters = decode_stream(bytes(flipped) + follower)
    assert decoded[-1] == Frame(FrameType.ACK, 1, b"ok")
    assert frame not in decoded[:-1] and all(f == Frame(FrameType.ACK, 1, b"ok") for f in decoded)
    assert counters.rejected >= 1


@settings(max_examples=1500, deadline=None)
@given(frame_st, st.data())
def test_dropped_or_inserted_byte_is_caught(frame, data):
    encoded = bytearray(encode_frame(frame.type, frame.seq, frame.payload, frame.flags))
    position = data.draw(st.integers(1, len(encoded) - 2))
    if data.draw(st.booleans()):
        del encoded[position]
    else:
        encoded.insert(position, data.draw(st.integers(0, 255).filter(lambda b: b != 0xC0)))
    decoded, counters = decode_stream(bytes(encoded))
    assert decoded == [] and counters.rejected == 1


def test_every_bit_flip_of_one_frame_exhaustively():
    encoded = encode_frame(FrameType.EVENTS, 513, bytes([0xC0, 0xDB, 1, 2, 0xDD, 0xDC]) * 4)
    for position in range(1, len(encoded) - 1):
        for bit in range(8):
            data = bytearray(encoded)
            data[position] ^= 1 << bit
            decoded, counters = decode_stream(bytes(data))
            assert decoded == [] and counters.rejected >= 1, (position, bit)


@FAST
@given(frame_st, st.data())
def test_stream_cut_mid_frame_raises_partial_frame(frame, data):
    encoded = encode_frame(frame.type, frame.seq, frame.payload, frame.flags)
    cut = data.draw(st.integers(2, len(encoded) - 1))
    decoder = FrameDecoder()
    assert decoder.feed(encoded[:cut]) == []
    with pytest.raises(PartialFrame) as info:
        decoder.finish()
    assert info.value.received == cut - 1


def test_length_above_maximum_is_rejected_without_allocating():
    body = HEADER.pack(FrameType.EVENTS, 0, 1, 2**32 - 1) + b"abc"
    body += struct.pack("<I", zlib.crc32(body))
    decoded, counters = decode_stream(END + body + END)
    assert decoded == [] and counters.length_errors == 1


def test_endless_frame_is_not_buffered_beyond_the_maximum():
    decoder = FrameDecoder()
    chunk = b"\x01" * 65536
    for _ in range(5):
        decoder.feed(chunk)
    assert decoder.pending_bytes <= 2 * (MAX_PAYLOAD + 12)
    assert decoder.counters.oversize == 1
    assert decoder.feed(END + encode_frame(FrameType.OK, 3, b"x")) == [Frame(FrameType.OK, 3, b"x")]


def test_a_decoder_accepts_what_its_owner_announced_and_no_more():
    decoder = FrameDecoder(max_payload=16)
    assert decoder.feed(encode_frame(FrameType.STATUS, 1, bytes(16))) == [Frame(FrameType.STATUS, 1, bytes(16))]
    assert decoder.feed(encode_frame(FrameType.STATUS, 2, bytes(17))) == []
    assert decoder.counters.length_errors == 1
    decoder.feed(b"\x01" * 2 * (16 + 12) + b"\x01")  # past the longest escaped frame: dropped
    assert decoder.pending_bytes == 0 and decoder.counters.oversize == 1


def test_an_over_long_piece_is_dropped_up_to_its_end_whatever_the_split():
    """A piece past the longest frame is junk up to the next END, also when it ends in a valid
    frame whose leading END was lost: the stream fed whole and split at every byte gives the
    same frames and drops the same bytes."""
    frame = encode_frame(FrameType.STATUS, 1, b"x")
    stream = b"\x01" * (2 * (16 + 12) + 1) + frame[1:] + encode_frame(FrameType.OK, 2, b"y")
    whole = FrameDecoder(max_payload=16)
    assert whole.feed(stream) == [Frame(FrameType.OK, 2, b"y")] and whole.counters.oversize == 1
    for cut in range(1, len(stream)):
        split = FrameDecoder(max_payload=16)
        assert split.feed(stream[:cut]) + split.feed(stream[cut:]) == [Frame(FrameType.OK, 2, b"y")], cut
        assert (split.counters.oversize, split.counters.dropped_bytes) == (1, whole.counters.dropped_bytes), cut


def test_encoder_rejects_payload_over_the_maximum():
    with pytest.raises(ValueError, match="65537 bytes"):
        encode_frame(FrameType.EVENTS, 0, bytes(MAX_PAYLOAD + 1))


events_st = st.lists(
    st.tuples(st.integers(0, 2**40), st.integers(0, 15), st.integers(0, 1023), st.integers(0, 511),
              st.integers(0, 511)), max_size=200)


@FAST
@given(events_st, st.sampled_from([64, 200, 4096, MAX_PAYLOAD]))
def test_event_batches_round_trip(records, max_payload):
    events = np.array(sorted(records), EVENT_DTYPE)
    payloads = fr.pack_events(events, max_payload)
    assert all(len(p) <= max_payload for p in payloads)
    np.testing.assert_array_equal(fr.unpack_events(payloads), events)


def test_events_outside_the_wire_ranges_are_named():
    events = np.zeros(3, EVENT_DTYPE)
    events["channel"][2] = 1024
    with pytest.raises(ValueError, match=r"events\[2\]\.channel = 1024.*0\.\.1023"):
        fr.check_events_fit(events)


def test_control_payloads_round_trip():
    greeting = fr.Greeting(5, 0xDEADBEEF, 4096, 8, "speck2f", "fw 1.2")
    assert fr.Greeting.unpack(greeting.pack()) == greeting
    hello = fr.Hello(9, MAX_PAYLOAD, 16)
    assert fr.Hello.unpack(hello.pack()) == hello
    end = fr.EndOfRun(3, 10, 4, 999, 1, 0, {0: 10, 2: 3}, {0: 3, 2: 1})
    assert fr.EndOfRun.unpack(end.pack()) == end
    status = {name: i for i, name in enumerate(fr.STATUS_FIELDS)}
    assert fr.unpack_status(fr.pack_status(status)) == status
    with pytest.raises(ProtocolError, match="GREETING"):
        fr.Greeting.unpack(b"XXXX" + greeting.pack()[4:])
    with pytest.raises(ProtocolError, match="END_OF_RUN"):
        fr.EndOfRun.unpack(end.pack()[:-1])


@pytest.mark.parametrize("field, top", [("frame_type", 255), ("flags", 255), ("seq", 65535)])
def test_header_fields_are_encoded_from_zero_to_their_top_and_refused_outside(field, top):
    """type and flags are u8, seq u16: both ends round-trip, one past either end is refused."""
    fields = {"frame_type": FrameType.OK, "seq": 1, "flags": 0}
    for value in (0, top):
        encoded = encode_frame(**{**fields, field: value})
        (frame,), _ = decode_stream(encoded)
        assert (frame.type, frame.seq, frame.flags) == tuple({**fields, field: value}[k]
                                                             for k in ("frame_type", "seq", "flags"))
    for value in (-1, top + 1):
        with pytest.raises(ValueError, match="expected type and flags in 0..255 and seq in 0..65535"):
            encode_frame(**{**fields, field: value})


def test_a_payload_of_exactly_the_maximum_round_trips():
    payload = bytes(range(256)) * (MAX_PAYLOAD // 256)
    assert len(payload) == MAX_PAYLOAD
    decoded, counters = decode_stream(encode_frame(FrameType.EVENTS, 2, payload))
    assert decoded == [Frame(FrameType.EVENTS, 2, payload)] and counters.frames == 1


def _body(frame_type: int, seq: int, payload: bytes, length: int | None = None) -> bytes:
    """A frame body whose length field is ``length`` (default: the payload's), unescaped."""
    body = HEADER.pack(frame_type, 0, seq, len(payload) if length is None else length) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def _escaped(body: bytes) -> bytes:
    return body.replace(b"\xdb", b"\xdb\xdd").replace(END, b"\xdb\xdc")


def test_every_rejected_piece_is_counted_once_under_its_reason_with_its_bytes():
    """One piece of each kind the receiver drops, between good frames: each is counted under
    its own reason, ``rejected`` is their sum and ``dropped_bytes`` the bytes of the pieces."""
    good = encode_frame(FrameType.OK, 1, b"ok")
    bad_crc = bytearray(_body(FrameType.OK, 2, b"abc"))
    bad_crc[-1] ^= 1
    pieces = {"escape_errors": _escaped(_body(FrameType.OK, 3, b"x")) + b"\xdb\x01",
              "short_frames": _escaped(_body(FrameType.OK, 4, b"")[:-1]),
              "length_errors": _escaped(_body(FrameType.OK, 5, b"abc", length=4)),
              "crc_errors": _escaped(bytes(bad_crc))}
    for reason, piece in pieces.items():
        decoded, counters = decode_stream(good + piece + good)
        assert decoded == [Frame(FrameType.OK, 1, b"ok")] * 2, reason
        assert getattr(counters, reason) == 1 and counters.rejected == 1, reason
        assert counters.dropped_bytes == len(piece) and counters.frames == 2, reason
    decoded, counters = decode_stream(b"".join(good + piece for piece in pieces.values()) + good)
    assert len(decoded) == 5 and counters.rejected == 4 and counters.frames == 5
    assert counters.dropped_bytes == sum(map(len, pieces.values()))


def test_a_frame_with_an_empty_payload_is_the_shortest_piece_accepted():
    empty = _body(FrameType.ACK, 9, b"")
    assert len(empty) == HEADER.size + 4
    assert decode_stream(END + _escaped(empty) + END)[0] == [Frame(FrameType.ACK, 9, b"")]
    decoded, counters = decode_stream(END + _escaped(empty[1:]) + END)
    assert decoded == [] and counters.short_frames == 1


def test_a_piece_is_held_up_to_twice_the_longest_frame_and_dropped_one_byte_past():
    """The bound of docs/protocol.md: ``2 * (P + 12)`` bytes without an END are held, one more
    is discarded as it arrives (``oversize``)."""
    limit = 2 * (16 + 12)
    decoder = FrameDecoder(max_payload=16)
    decoder.feed(b"\x01" * limit)
    assert decoder.pending_bytes == limit and decoder.counters.oversize == 0
    decoder.feed(b"\x01")
    assert decoder.pending_bytes == 0 and decoder.counters.oversize == decoder.counters.rejected == 1
    assert decoder.counters.dropped_bytes == limit + 1


def test_a_first_frame_without_its_leading_end_is_decoded():
    """The receiver cuts at every END: the bytes before the first END are a piece like any."""
    frame = encode_frame(FrameType.STATUS, 4, b"st")
    assert FrameDecoder().feed(frame[1:]) == [Frame(FrameType.STATUS, 4, b"st")]


def test_after_finish_a_decoder_decodes_a_new_stream_like_a_fresh_one():
    """finish() ends a stream, also one cut inside an over-long piece: the next stream, even
    one whose first frame lost its leading END, decodes as with a new decoder."""
    frame = encode_frame(FrameType.STATUS, 4, b"st")
    for cut_stream in (b"\x01" * 100, frame[:5]):
        decoder = FrameDecoder(max_payload=16)
        decoder.feed(cut_stream)
        try:
            decoder.finish()
        except PartialFrame:
            pass
        assert decoder.pending_bytes == 0
        assert decoder.feed(frame[1:]) == [Frame(FrameType.STATUS, 4, b"st")], cut_stream
