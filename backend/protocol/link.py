"""Reliable, ordered delivery of frames over an unreliable byte stream (both ends use it).

Go-back-N with cumulative acknowledgements: every sequenced frame carries a u16 ``seq``; the
receiver delivers only the next expected one, answers ``ACK(next expected)`` for in-order and
duplicate frames and ``NACK(next expected)`` for a gap or a rejected (corrupt) frame. The
sender keeps at most ``window`` unacknowledged frames (the flow control) and retransmits
all of them on a NACK or when the oldest has waited its retransmission timeout, which grows
with the bytes in flight and doubles per retry; after ``max_retries`` it raises
:class:`LinkTimeout`. No thread here: the owner supplies ``write`` and ``receive`` and calls
:meth:`send` / :meth:`recv`, which pump incoming bytes while they wait.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Callable, Optional

from backend.errors import LinkRestarted, LinkTimeout
from backend.protocol.codec import Frame, FrameDecoder, encode_frame
from backend.protocol.frames import CONTROL_TYPES, U16, FrameType
from backend.protocol.timing import LINK_RATE, MAX_RETRIES, POLL_SLICE_S, RTO_S


def _ahead(a: int, b: int) -> int:
    """How far seq ``a`` is after ``b`` (mod 2**16), in -32768..32767."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


class Link:
    """One end of the reliable link.

    ``write(data)`` sends raw bytes; ``receive(timeout_s)`` returns the bytes that arrived
    within ``timeout_s`` (``b""`` if none) or raises when the transport is gone.
    ``on_control(frame)`` gets every HELLO / GREETING. ``clock``: monotonic seconds.
    ``rto``, ``max_retries``, ``link_rate``: see :mod:`backend.protocol.timing`.
    """

    def __init__(
        self,
        write: Callable[[bytes], None],
        receive: Callable[[float], bytes],
        on_control: Callable[[Frame], None],
        *,
        rto: float = RTO_S,
        max_retries: int = MAX_RETRIES,
        link_rate: float = LINK_RATE,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._write, self._receive, self._on_control = write, receive, on_control
        self.rto, self.max_retries, self.link_rate, self.clock = rto, max_retries, link_rate, clock
        self.decoder = FrameDecoder()
        self.counters = dict.fromkeys(
            ("frames_tx", "frames_rx", "bytes_tx", "bytes_rx", "retransmits", "duplicates",
             "out_of_order", "acks_tx", "nacks_tx", "nacks_rx"), 0)
        self.generation = -1  # counts restarts, so a sender can tell its session ended
        self.restart(window=1, max_payload=0)

    def restart(self, window: int, max_payload: int) -> None:
        """Start both sequence spaces at 0 (after a handshake); drop anything in flight.
        ``window`` and ``max_payload``: what the peer announced it can receive."""
        self.generation += 1
        self.window, self.max_payload = max(1, window), max_payload
        self._tx_seq = 0
        self._rx_expected = 0
        self._ack_pending = False
        self._unacked: OrderedDict[int, bytes] = OrderedDict()
        self._sent_at = 0.0
        self._retries = 0
        self._last_nack = (-1, -1e9)
        self._rejected_seen = self.decoder.counters.rejected
        self.inbox: deque[Frame] = deque()

    # -- sending ----------------------------------------------------------------------------
    def send(self, frame_type: int, payload: bytes, deadline: float) -> None:
        """Send one sequenced frame, first waiting (until ``deadline``) for window space.
        Raises :class:`LinkRestarted` (sending nothing) if a handshake restarted the link
        meanwhile."""
        generation = self.generation
        while len(self._unacked) >= self.window:
            self._pump_until(deadline, f"window space to send {FrameType(frame_type).name}")
            if self.generation != generation:
                raise LinkRestarted(f"a new session began while {FrameType(frame_type).name} waited")
        wire = encode_frame(frame_type, self._tx_seq, payload)
        if not self._unacked:
            self._sent_at, self._retries = self.clock(), 0
        self._unacked[self._tx_seq] = wire
        self._tx_seq = (self._tx_seq + 1) & 0xFFFF
        self._put(wire)

    def send_control(self, frame_type: int, payload: bytes = b"") -> None:
        """Send an unsequenced control frame (HELLO, GREETING; ACK/NACK are internal)."""
        self._put(encode_frame(frame_type, 0, payload))

    def _put(self, wire: bytes) -> None:
        self.counters["frames_tx"] += 1
        self.counters["bytes_tx"] += len(wire)
        self._write(wire)

    # -- receiving --------------------------------------------------------------------------
    def recv(self, deadline: float) -> Optional[Frame]:
        """The next in-order sequenced frame, or None when ``deadline`` passes first."""
        while not self.inbox:
            if self.clock() >= deadline:
                return None
            self.pump(min(POLL_SLICE_S, max(0.0, deadline - self.clock())))
        return self.inbox.popleft()

    def pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` s, handle it (one ACK for all the frames it
        delivers, sent before the owner acts on them), retransmit if a timer expired."""
        data = self._receive(timeout)
        if data:
            self.counters["bytes_rx"] += len(data)
            self._handle(self.decoder.feed(data))
        self._check_timer()

    def _pump_until(self, deadline: float, waiting_for: str) -> None:
        if self.clock() >= deadline:
            raise LinkTimeout(f"timed out waiting for {waiting_for}", counters=self.stats())
        self.pump(min(POLL_SLICE_S, max(0.0, deadline - self.clock())))

    def _handle(self, frames: list[Frame]) -> None:
        for frame in frames:
            self.counters["frames_rx"] += 1
            if frame.type == FrameType.ACK or frame.type == FrameType.NACK:
                self._on_ack(frame)
            elif frame.type in CONTROL_TYPES:
                self._on_control(frame)
            else:
                self._on_data(frame)
        if self.decoder.counters.rejected != self._rejected_seen:
            self._rejected_seen = self.decoder.counters.rejected
            self._nack()
        if self._ack_pending:
            self._ack_pending = False
            self.counters["acks_tx"] += 1
            self._put(encode_frame(FrameType.ACK, 0, U16.pack(self._rx_expected)))

    def _on_data(self, frame: Frame) -> None:
        ahead = _ahead(frame.seq, self._rx_expected)
        if ahead == 0:
            self._rx_expected = (self._rx_expected + 1) & 0xFFFF
            self.inbox.append(frame)
            self._ack_pending = True
        elif ahead < 0:  # the peer missed our ACK: repeat it
            self.counters["duplicates"] += 1
            self._ack_pending = True
        else:
            self.counters["out_of_order"] += 1
            self._nack()

    def _nack(self) -> None:
        expected, at = self._last_nack
        now = self.clock()
        if expected == self._rx_expected and now - at < self.rto / 4:
            return
        self._last_nack = (self._rx_expected, now)
        self.counters["nacks_tx"] += 1
        self._put(encode_frame(FrameType.NACK, 0, U16.pack(self._rx_expected)))

    def _on_ack(self, frame: Frame) -> None:
        if len(frame.payload) != U16.size:
            return
        (next_expected,) = U16.unpack(frame.payload)
        progressed = False
        while self._unacked and _ahead(next_expected, next(iter(self._unacked))) > 0:
            self._unacked.popitem(last=False)
            progressed = True
        if progressed:
            self._sent_at, self._retries = self.clock(), 0
        if frame.type == FrameType.NACK:
            self.counters["nacks_rx"] += 1
            # the peer rate-limits its NACKs, so answer each at once; the timer keeps running
            # from the last progress, so a link that never delivers still ends in LinkTimeout
            self._retransmit()

    def _check_timer(self) -> None:
        if not self._unacked:
            return
        in_flight = sum(len(w) for w in self._unacked.values())
        timeout = (self.rto + in_flight / self.link_rate) * 2 ** self._retries
        if self.clock() - self._sent_at < timeout:
            return
        if self._retries >= self.max_retries:
            seq, wire = next(iter(self._unacked.items()))
            raise LinkTimeout(
                f"no acknowledgement for frame seq {seq} (type 0x{wire[1]:02x}) after "
                f"{self._retries} retransmissions", counters=self.stats())
        self._retries += 1
        self._sent_at = self.clock()
        self._retransmit()

    def _retransmit(self) -> None:
        for wire in self._unacked.values():
            self.counters["retransmits"] += 1
            self._put(wire)

    def stats(self) -> dict[str, int]:
        """Link and decoder counters."""
        d = self.decoder.counters
        return {**self.counters, "crc_errors": d.crc_errors, "length_errors": d.length_errors,
                "escape_errors": d.escape_errors, "short_frames": d.short_frames,
                "oversize": d.oversize, "dropped_bytes": d.dropped_bytes}
