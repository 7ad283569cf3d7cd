"""Two ends of the reliable link (backend/protocol/link.py) joined back to back in memory, on a
clock that the test owns: a clean stream is delivered in order with no retransmission, NACK or
duplicate at all, also across the wrap of the 16-bit sequence numbers, and a frame lost at
the wrap is recovered exactly once. Alone on a silent port, a waiting recv returns at its deadline."""

from __future__ import annotations

import pytest

from backend.protocol.codec import decode_stream, encode_frame
from backend.protocol.frames import U16, FrameType
from backend.protocol.link import Link
from backend.protocol.timing import POLL_SLICE_S

WINDOW = 4


class Clock:
    """Monotonic seconds that advance 1 µs per reading, so deadlines pass in a test that
    hangs yet no retransmission timer (0.2 s) expires on a healthy exchange."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now


class Pair:
    """Host ``a`` and device ``b``; ``lose(seqs)`` drops a's sequenced frames with those seqs
    once each on their way to b."""

    def __init__(self, first_seq: int):
        self.clock = Clock()
        self.to_b, self.to_a, self.lost = bytearray(), bytearray(), set()
        self.a = Link(self._from_a, lambda timeout: self._take(self.to_a), self._no_control, clock=self.clock)
        self.b = Link(self._from_b, lambda timeout: self._take(self.to_b), self._no_control, clock=self.clock)
        for link in (self.a, self.b):
            link.restart(window=WINDOW, max_payload=1024)
        # start both sequence spaces a few frames before the wrap (a session of that many
        # frames would get there by itself; restart() always starts at 0)
        self.a._tx_seq = self.b._rx_expected = first_seq
        self.seqs_b_got: list[int] = []
        self.wire_from_b = bytearray()

    @staticmethod
    def _no_control(frame):
        raise AssertionError(f"unexpected control frame {frame}")

    @staticmethod
    def _take(buffer: bytearray) -> bytes:
        data = bytes(buffer)
        buffer.clear()
        return data

    def _from_a(self, wire: bytes) -> None:
        (frame,), _ = decode_stream(wire)
        if frame.type not in (FrameType.ACK, FrameType.NACK) and frame.seq in self.lost:
            self.lost.discard(frame.seq)
            return
        self.to_b.extend(wire)

    def _from_b(self, wire: bytes) -> None:
        self.wire_from_b.extend(wire)
        self.to_a.extend(wire)

    def stream(self, n: int) -> list[bytes]:
        """Send ``n`` frames from a in batches of the window; return what b delivers."""
        delivered = []
        for start in range(0, n, WINDOW):
            for i in range(start, min(start + WINDOW, n)):
                self.a.send(FrameType.EVENTS, i.to_bytes(4, "little"), deadline=self.clock.now + 0.1)
            for _ in range(3):  # b acks or nacks, a answers (retransmits on a NACK), b acks
                self.b.pump(0)
                self.a.pump(0)
            while (frame := self.b.recv(self.clock.now + 1e-4)) is not None:
                self.seqs_b_got.append(frame.seq)
                delivered.append(frame.payload)
        return delivered


@pytest.mark.parametrize("first_seq", [0, 65530, 65535])
def test_a_clean_stream_is_delivered_in_order_without_any_retransmission(first_seq):
    pair = Pair(first_seq)
    assert pair.stream(40) == [i.to_bytes(4, "little") for i in range(40)]
    assert pair.seqs_b_got == [(first_seq + i) % 65536 for i in range(40)]
    pair.clock.now += 10.0  # long past every retransmission timeout: all 40 were acknowledged
    pair.a.pump(0)
    for name in ("retransmits", "nacks_rx", "nacks_tx", "duplicates", "out_of_order"):
        assert pair.a.counters[name] == 0 and pair.b.counters[name] == 0, name
    assert pair.a.counters["frames_tx"] == 40 and pair.b.counters["acks_tx"] == 10  # one ACK per window


def test_a_frame_lost_at_the_wrap_is_recovered_once_by_go_back_n():
    pair = Pair(65534)
    pair.lost = {0}  # the first frame after 65535
    assert pair.stream(12) == [i.to_bytes(4, "little") for i in range(12)]
    assert pair.seqs_b_got == [65534, 65535, *range(10)]
    # b saw seq 1 before 0: one NACK(0); a resent the frames from 0 that were in flight
    assert pair.b.counters["nacks_tx"] == 1 and pair.a.counters["nacks_rx"] == 1
    assert pair.b.counters["out_of_order"] == 1
    assert pair.a.counters["retransmits"] == 2  # seqs 0 and 1, the unacknowledged ones


def test_acks_from_before_the_wrap_release_nothing_after_it():
    pair = Pair(65535)
    assert len(pair.stream(3)) == 3  # seqs 65535, 0, 1: all acknowledged
    pair.a.send(FrameType.EVENTS, b"x", deadline=pair.clock.now + 0.1)  # seq 2, in flight
    pair.to_a.extend(encode_frame(FrameType.ACK, 0, U16.pack(65535)))  # a duplicate ACK from before the wrap
    pair.a.pump(0)
    pair.clock.now += 0.25  # one retransmission timeout: seq 2 must still be waiting
    pair.a.pump(0)
    assert pair.a.counters["retransmits"] == 1


def test_control_frames_carry_seq_0_and_the_next_expected_seq():
    """docs/protocol.md: control frames (HELLO, GREETING, ACK, NACK) have seq = 0, also after
    sequenced frames; an ACK's or NACK's payload is the next expected seq."""
    pair = Pair(65534)
    pair.lost = {0}
    pair.stream(12)
    frames, _ = decode_stream(bytes(pair.wire_from_b))
    kinds = {frame.type for frame in frames}
    assert kinds == {FrameType.ACK, FrameType.NACK}
    assert all(frame.seq == 0 for frame in frames)
    nack = next(frame for frame in frames if frame.type == FrameType.NACK)
    assert U16.unpack(nack.payload) == (0,)  # frame 0 was lost: 0 is expected next
    assert U16.unpack(frames[-1].payload) == (10,)  # all 12, 65534 .. 9, received
    sent = len(pair.wire_from_b)
    pair.b.send_control(FrameType.GREETING, b"greeting")
    (greeting,), _ = decode_stream(bytes(pair.wire_from_b[sent:]))
    assert (greeting.type, greeting.seq, greeting.payload) == (FrameType.GREETING, 0, b"greeting")


def test_recv_on_a_silent_port_returns_none_at_its_deadline_not_past_it():
    """A waiting ``recv`` blocks on its port in slices of at most POLL_SLICE_S and never past
    its deadline: on a port where nothing arrives (each read waits its whole timeout on the
    test's clock) it returns None exactly at the deadline."""
    now, waits = [0.0], []

    def silent(timeout: float) -> bytes:
        waits.append(timeout)
        now[0] += timeout
        return b""
    link = Link(lambda wire: None, silent, Pair._no_control, clock=lambda: now[0])
    link.restart(window=WINDOW, max_payload=1024)
    assert link.recv(deadline=0.12) is None
    assert now[0] == pytest.approx(0.12) and max(waits) <= POLL_SLICE_S
    assert link.recv(deadline=0.12) is None and now[0] == pytest.approx(0.12)  # a passed deadline: no wait


class Wire:
    """One Link on the test's clock whose incoming bytes the test queues and whose outgoing
    frames it reads back decoded."""

    def __init__(self, rto: float = 1.0, link_rate: float = 1e9, max_retries: int = 3):
        self.now, self.incoming, self.out = 0.0, bytearray(), bytearray()
        self.link = Link(self.out.extend, self._take, Pair._no_control, rto=rto, link_rate=link_rate,
                         max_retries=max_retries, clock=lambda: self.now)
        self.link.restart(window=WINDOW, max_payload=1024)

    def _take(self, timeout: float) -> bytes:
        data = bytes(self.incoming)
        self.incoming.clear()
        return data

    def at(self, now: float, *wire: bytes) -> list:
        """Let ``now`` come, deliver ``wire``, pump once; the frames the link sent meanwhile."""
        self.now = now
        for piece in wire:
            self.incoming.extend(piece)
        sent = len(self.out)
        self.link.pump(0)
        return decode_stream(bytes(self.out[sent:]))[0]


def test_the_retransmission_timeout_adds_the_bytes_in_flight_at_link_rate_and_doubles_per_retry():
    """timeout = (rto + bytes in flight / link_rate) * 2**retries, from the last send or
    progress; a retransmission is due when that much time has passed, not before."""
    wire_len = len(encode_frame(FrameType.EVENTS, 0, b"abc"))
    w = Wire(rto=1.0, link_rate=wire_len / 1.0)  # the frame in flight adds 1 s
    w.link.send(FrameType.EVENTS, b"abc", deadline=100.0)
    assert w.at(1.99) == []
    assert [f.seq for f in w.at(2.0)] == [0]  # 1 s rto + 1 s of bytes
    assert w.at(5.99) == []
    assert [f.seq for f in w.at(6.0)] == [0]  # doubled: 4 s after the first retransmission
    assert w.link.counters["retransmits"] == 2


def test_progress_restarts_the_timer_at_the_undoubled_timeout():
    w = Wire(rto=1.0)
    w.link.send(FrameType.EVENTS, b"a", deadline=100.0)
    w.link.send(FrameType.EVENTS, b"b", deadline=100.0)
    assert [f.seq for f in w.at(1.01)] == [0, 1]  # both resent, the timeout doubles
    assert w.at(1.5, encode_frame(FrameType.ACK, 0, U16.pack(1))) == []  # frame 0 acknowledged
    assert w.at(2.49) == []
    assert [f.seq for f in w.at(2.51)] == [1]  # 1 rto after the progress, not 2


def test_an_ack_of_the_oldest_frame_in_flight_releases_nothing():
    w = Wire(rto=1.0)
    w.link.send(FrameType.EVENTS, b"a", deadline=100.0)
    assert w.at(0.5, encode_frame(FrameType.ACK, 0, U16.pack(0))) == []  # next expected 0: not received
    assert [f.seq for f in w.at(1.01)] == [0]
    assert w.at(1.2, encode_frame(FrameType.ACK, 0, U16.pack(1))) == []
    assert w.at(100.0) == []  # acknowledged: never resent


def test_a_repeated_frame_is_delivered_once_and_acknowledged_again():
    w = Wire()
    frame = encode_frame(FrameType.EVENTS, 0, b"x")
    replies = w.at(0.1, frame)
    assert [(f.type, f.payload) for f in replies] == [(FrameType.ACK, U16.pack(1))]
    replies = w.at(0.2, frame)  # the peer missed our ACK
    assert [(f.type, f.payload) for f in replies] == [(FrameType.ACK, U16.pack(1))]
    assert [f.payload for f in w.link.inbox] == [b"x"]
    assert w.link.counters["duplicates"] == 1 and w.link.counters["acks_tx"] == 2
    assert w.link.counters["frames_rx"] == 2 and w.link.counters["bytes_rx"] == 2 * len(frame)
    assert w.link.counters["frames_tx"] == 2 and w.link.counters["bytes_tx"] == len(w.out)
    assert w.at(0.3, encode_frame(FrameType.ACK, 0, U16.pack(0))) == []  # an ACK is not acknowledged


def test_a_gap_is_nacked_at_most_once_per_quarter_rto_for_the_same_expected_seq():
    w = Wire(rto=1.0)
    nacks = lambda frames: [U16.unpack(f.payload)[0] for f in frames if f.type == FrameType.NACK]
    assert nacks(w.at(1.0, encode_frame(FrameType.EVENTS, 1, b"1"))) == [0]
    assert nacks(w.at(1.22, encode_frame(FrameType.EVENTS, 2, b"2"))) == []  # within rto / 4
    assert nacks(w.at(1.25, encode_frame(FrameType.EVENTS, 2, b"2"))) == [0]  # a quarter rto later
    # progress: frame 0 arrives; a new gap names the new next expected at once
    assert nacks(w.at(1.3, encode_frame(FrameType.EVENTS, 0, b"0"))) == []
    assert nacks(w.at(1.31, encode_frame(FrameType.EVENTS, 3, b"3"))) == [1]
    assert w.link.counters["nacks_tx"] == 3 and w.link.counters["out_of_order"] == 4
