"""A stand-alone device side of the wire protocol, written from docs/protocol.md alone.

It shares no code with ``backend/protocol`` (its own SLIP, its own bitwise CRC-32, its own
payload layouts with ``struct``), so a deviation from the document that the project's encoder
and decoder share symmetrically (say, the two SLIP escape codes swapped) still fails against it.
It is what a microcontroller would implement, minus retransmission (it runs over a clean TCP
link): it delivers in-order frames, answers them and repeats with ``ACK(next expected)`` and a
gap with ``NACK(next expected)``.
"""

from __future__ import annotations

import socket
import struct
import threading

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
HELLO, ACK, NACK, STATUS, STOP, RUN_BEGIN, EVENTS, RUN_END = 0x01, 0x10, 0x11, 0x0B, 0x0C, 0x08, 0x09, 0x0A
OK, GREETING, STATUS_DATA, END_OF_RUN = 0x80, 0x81, 0x8B, 0x8A
CONTROL = {HELLO, ACK, NACK, GREETING}


def crc32(data: bytes) -> int:
    """IEEE 802.3 CRC-32, bit by bit: reflected polynomial 0xEDB88320, init and final XOR
    0xFFFFFFFF (docs/protocol.md, Framing)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def encode(frame_type: int, seq: int, payload: bytes) -> bytes:
    """``C0 | escape(type u8 | flags u8 | seq u16 | length u32 | payload | crc32 u32) | C0``."""
    body = struct.pack("<BBHI", frame_type, 0, seq, len(payload)) + payload
    body += struct.pack("<I", crc32(body))
    out = bytearray([END])
    for byte in body:
        out += bytes([ESC, ESC_END]) if byte == END else bytes([ESC, ESC_ESC]) if byte == ESC else bytes([byte])
    return bytes(out + bytes([END]))


def decode(wire: bytes) -> list[tuple[int, int, bytes]]:
    """Every valid frame of ``wire`` as ``(type, seq, payload)``; invalid pieces are skipped."""
    frames = []
    for piece in wire.split(bytes([END])):
        body, escaped, valid = bytearray(), False, True
        for byte in piece:
            if escaped:
                valid &= byte in (ESC_END, ESC_ESC)
                body.append(END if byte == ESC_END else ESC)
                escaped = False
            elif byte == ESC:
                escaped = True
            else:
                body.append(byte)
        if not valid or escaped or len(body) < 12:
            continue
        frame_type, _, seq, length = struct.unpack_from("<BBHI", body)
        if length != len(body) - 12 or crc32(bytes(body[:-4])) != struct.unpack_from("<I", body, len(body) - 4)[0]:
            continue
        frames.append((frame_type, seq, bytes(body[8:-4])))
    return frames


def greeting(nonce: int, boot_id: int, max_payload: int, window: int, chip: str, firmware: str,
             version: int = 2) -> bytes:
    """A GREETING payload: magic, version, max_payload, window, nonce, boot_id, chip, firmware."""
    return struct.pack("<4sHIHII16s", b"SPKF", version, max_payload, window, nonce, boot_id, chip.encode()) + firmware.encode()


def events_of(payload: bytes) -> list[tuple[int, int, int, int, int]]:
    """An EVENTS payload as ``(t, layer, channel, y, x)`` rows."""
    (base,) = struct.unpack_from("<q", payload)
    rows = []
    for dt, word in struct.iter_unpack("<II", payload[8:]):
        rows.append((base + dt, word >> 28, (word >> 18) & 0x3FF, (word >> 9) & 0x1FF, word & 0x1FF))
    return rows


class PeerDevice:
    """A device on a TCP port: greets (``nonces(hello_nonce, i)`` picks the nonce of the answer
    to the i-th HELLO, so a test can send stale greetings), ACKs, answers STATUS and STOP, and
    echoes each run's input events back as output. ``received`` logs every HELLO and every
frame delivered in order as ``(type, seq, payload)``."""

    def __init__(self, nonces=lambda nonce, i: nonce, boot_id: int = 0xB007, window: int = 4,
                 version: int = 2):
        self.nonces, self.boot_id, self.window, self.version = nonces, boot_id, window, version
        self.received: list[tuple[int, int, bytes]] = []
        self.hellos = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "socket://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        self._listener.close()
        self._tx = self._expected = 0
        self._run: list[bytes] = []
        pending = b""
        with conn:
            while data := conn.recv(65536):
                *pieces, pending = (pending + data).split(bytes([END]))
                for frame in decode(bytes([END]).join(pieces) + bytes([END])):
                    conn.sendall(self._answer(*frame))

    def _answer(self, frame_type: int, seq: int, payload: bytes) -> bytes:
        if frame_type in CONTROL and frame_type != HELLO:
            return b""
        if frame_type != HELLO and seq != self._expected:  # a repeat (our ACK was late) or a gap
            ahead = (seq - self._expected) & 0xFFFF
            return encode(ACK if ahead >= 0x8000 else NACK, 0, struct.pack("<H", self._expected))
        self.received.append((frame_type, seq, payload))
        if frame_type == HELLO:
            nonce = self.nonces(struct.unpack_from("<4sHIHI", payload)[4], self.hellos)
            self.hellos += 1
            self._tx = self._expected = 0
            return encode(GREETING, 0, greeting(nonce, self.boot_id, 1024, self.window, "peer", "wire peer 1",
                                                  self.version))
        self._expected = (self._expected + 1) & 0xFFFF
        out = encode(ACK, 0, struct.pack("<H", self._expected))
        if frame_type == STATUS:
            out += self._send(STATUS_DATA, struct.pack("<10Q", self.boot_id, *range(1, 10)))
        elif frame_type == STOP:
            out += self._send(OK, bytes([STOP]))
        elif frame_type == RUN_BEGIN:
            self._run = []
        elif frame_type == EVENTS:
            self._run.append(payload)
            out += self._send(EVENTS, payload)
        elif frame_type == RUN_END:
            (run_id,) = struct.unpack("<I", payload)
            n = sum(len(events_of(p)) for p in self._run)
            last = max((row[0] for p in self._run for row in events_of(p)), default=-1)
            out += self._send(END_OF_RUN, struct.pack("<IQQqQQB", run_id, n, n, last, 0, 0, 0))
        return out

    def _send(self, frame_type: int, payload: bytes) -> bytes:
        wire = encode(frame_type, self._tx, payload)
        self._tx = (self._tx + 1) & 0xFFFF
        return wire
