"""Framing: SLIP-delimited frames with a header and a CRC-32 (see docs/protocol.md).

On the wire a frame is ``END, escape(body), END`` with ``END = 0xC0``; inside, ``0xC0`` is sent
as ``0xDB 0xDC`` and ``0xDB`` as ``0xDB 0xDD``. The body is::

    type u8 | flags u8 | seq u16 | length u32 | payload (length bytes) | crc32 u32

little-endian, the CRC-32 (zlib / IEEE 802.3) taken over everything before it. Escaping and
unescaping use ``bytes.replace`` / ``split`` (C speed); nothing here loops per byte.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

from backend.errors import PartialFrame

END, ESC, ESC_END, ESC_ESC = b"\xc0", b"\xdb", b"\xdb\xdc", b"\xdb\xdd"
HEADER = struct.Struct("<BBHI")
CRC = struct.Struct("<I")
#: largest payload any frame may carry (bytes); a device may announce a smaller one
MAX_PAYLOAD = 65536


class Frame(NamedTuple):
    """One decoded frame. ``payload`` is ``bytes``."""

    type: int
    seq: int
    payload: bytes
    flags: int = 0


def encode_frame(frame_type: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """The wire bytes of one frame (``END ... END``). ``payload``: bytes-like, at most
    :data:`MAX_PAYLOAD` bytes; ``seq`` in 0..65535."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"encode_frame(payload): {len(payload)} bytes; at most {MAX_PAYLOAD} fit one frame")
    if not 0 <= frame_type < 256 or not 0 <= flags < 256 or not 0 <= seq < 65536:
        raise ValueError(
            f"encode_frame(frame_type={frame_type}, seq={seq}, flags={flags}): "
            "expected type and flags in 0..255 and seq in 0..65535"
        )
    body = HEADER.pack(frame_type, flags, seq, len(payload)) + bytes(payload)
    body += CRC.pack(zlib.crc32(body))
    return END + body.replace(ESC, ESC_ESC).replace(END, ESC_END) + END


@dataclass
class DecoderCounters:
    """What the decoder threw away. ``dropped_bytes`` counts every byte of every rejected
    piece; the other fields count rejected pieces by reason."""

    frames: int = 0
    dropped_bytes: int = 0
    crc_errors: int = 0
    length_errors: int = 0
    escape_errors: int = 0
    short_frames: int = 0
    oversize: int = 0

    @property
    def rejected(self) -> int:
        return self.crc_errors + self.length_errors + self.escape_errors + self.short_frames + self.oversize


@dataclass
class FrameDecoder:
    """Incremental decoder: :meth:`feed` any split of the byte stream and get the same frames.

    Garbage, corrupt, truncated or over-long pieces are skipped up to the next ``END`` and
    counted in :attr:`counters`; only frames whose length field and CRC check are returned.
    ``max_payload``: the largest payload accepted (bytes; what its owner announced); a piece
    longer than ``2 * (max_payload + 12)`` bytes is dropped as it arrives.
    """

    counters: DecoderCounters = field(default_factory=DecoderCounters)
    max_payload: int = MAX_PAYLOAD
    _pending: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, data: bytes) -> list[Frame]:
        """Decode the frames completed by ``data`` (bytes-like)."""
        pieces = data.split(END) if isinstance(data, bytes) else bytes(data).split(END)
        frames: list[Frame] = []
        if len(pieces) == 1:  # no delimiter: the current piece continues
            self._extend(pieces[0])
            return frames
        self._extend(pieces[0])
        if not self._skipping:
            self._finish_piece(bytes(self._pending), frames)
        self._pending = bytearray()
        self._skipping = False
        for piece in pieces[1:-1]:
            self._finish_piece(piece, frames)
        self._extend(pieces[-1])
        return frames

    def finish(self) -> None:
        """Declare the end of the stream: raise :class:`PartialFrame` if a frame was cut."""
        received = len(self._pending)
        self._pending = bytearray()
        self._skipping = False
        if received:
            self.counters.dropped_bytes += received
            raise PartialFrame(received, counters=self.counters)

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame held so far."""
        return len(self._pending)

    def _extend(self, piece: bytes) -> None:
        if self._skipping:
            self.counters.dropped_bytes += len(piece)
            return
        self._pending += piece
        if len(self._pending) > 2 * (self.max_payload + HEADER.size + CRC.size):  # never buffer junk
            self.counters.oversize += 1
            self.counters.dropped_bytes += len(self._pending)
            self._pending = bytearray()
            self._skipping = True

    def _finish_piece(self, piece: bytes, frames: list[Frame]) -> None:
        if not piece:
            return
        frame = self._decode_body(piece)
        if frame is None:
            self.counters.dropped_bytes += len(piece)
        else:
            self.counters.frames += 1
            frames.append(frame)

    def _decode_body(self, piece: bytes) -> Frame | None:
        c = self.counters
        if ESC in piece:
            escapes = piece.count(ESC)
            decoded = piece.replace(ESC_END, END).replace(ESC_ESC, ESC)
            if len(piece) - len(decoded) != escapes:  # a DB not followed by DC or DD
                c.escape_errors += 1
                return None
            piece = decoded
        if len(piece) < HEADER.size + CRC.size:
            c.short_frames += 1
            return None
        frame_type, flags, seq, length = HEADER.unpack_from(piece)
        if length > self.max_payload or length != len(piece) - HEADER.size - CRC.size:
            c.length_errors += 1
            return None
        if zlib.crc32(memoryview(piece)[:-CRC.size]) != CRC.unpack_from(piece, len(piece) - CRC.size)[0]:
            c.crc_errors += 1
            return None
        return Frame(frame_type, seq, piece[HEADER.size:-CRC.size], flags)


def decode_stream(data: bytes) -> tuple[list[Frame], DecoderCounters]:
    """Decode a complete byte stream; raise :class:`PartialFrame` if it ends mid-frame."""
    decoder = FrameDecoder()
    frames = decoder.feed(data)
    decoder.finish()
    return frames, decoder.counters
