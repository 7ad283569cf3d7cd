"""Frame types and payload layouts of the spikeflash wire protocol (docs/protocol.md).

Events travel as packed numpy buffers: an ``EVENTS`` payload is ``base_t i64`` followed by
``n`` records of 8 bytes, ``dt u32`` (µs after ``base_t``) and ``word u32`` with
``layer`` in bits 28-31, ``channel`` in bits 18-27, ``y`` in bits 9-17 and ``x`` in bits 0-8.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from backend.errors import ProtocolError
from snnlib.events import EVENT_DTYPE

MAGIC = b"SPKF"
#: the smallest max_payload a peer may announce: a CONFIG_CHUNK, a STATE_DATA and an EVENTS
#: batch must each carry at least a few entries (bytes)
MIN_PAYLOAD = 64
#: the most frames a peer may announce as its window
MAX_WINDOW = 256
#: the largest configuration image a device accepts (CONFIG_BEGIN size, bytes)
MAX_CONFIG_BYTES = 16 << 20
#: the most input events one run may announce (RUN_BEGIN n); longer inputs go in several runs
MAX_RUN_EVENTS = 1 << 25
#: version 2: the configuration travels as the binary image of :mod:`.config_image`
PROTOCOL_VERSION = 2


class FrameType(IntEnum):
    """Frame types. Host requests are below 0x80, device replies from 0x80; ``EVENTS`` goes
    both ways. ``ACK``, ``NACK``, ``HELLO`` and ``GREETING`` are link control frames without a
    sequence number; all others are sequenced, acknowledged and retransmitted."""

    HELLO = 0x01
    CONFIG_BEGIN = 0x02
    CONFIG_CHUNK = 0x03
    CONFIG_END = 0x04
    CONFIG_READ = 0x05
    RESET_STATES = 0x06
    READ_STATES = 0x07
    RUN_BEGIN = 0x08
    EVENTS = 0x09
    RUN_END = 0x0A
    STATUS = 0x0B
    STOP = 0x0C
    STREAM = 0x0E
    ACK = 0x10
    NACK = 0x11
    OK = 0x80
    GREETING = 0x81
    CONFIG_APPLIED = 0x84
    CONFIG_DATA = 0x85
    STATE_DATA = 0x87
    END_OF_RUN = 0x8A
    STATUS_DATA = 0x8B
    ERROR = 0xFF


CONTROL_TYPES = frozenset({FrameType.ACK, FrameType.NACK, FrameType.HELLO, FrameType.GREETING})


class ErrorCode(IntEnum):
    """Codes carried by an ``ERROR`` frame."""

    UNKNOWN_FRAME = 1
    BAD_PAYLOAD = 2
    NOT_CONFIGURED = 3
    CONFIG_INVALID = 4
    BAD_STATE = 5
    UNKNOWN_CORE = 6
    BAD_EVENTS = 7
    INTERNAL = 8
    NO_SENSOR = 9


def unpack_struct(layout: struct.Struct, payload: bytes, what: str) -> tuple:
    """``layout`` unpacked from the start of ``payload``; a short payload of frame ``what``
    raises :class:`ProtocolError` (never ``struct.error``)."""
    if len(payload) < layout.size:
        raise ProtocolError(f"{what} payload of {len(payload)} bytes; expected at least {layout.size}")
    return layout.unpack_from(payload)


# -- events -------------------------------------------------------------------------------
EVENT_BATCH_HEADER = struct.Struct("<q")
WIRE_EVENT = np.dtype([("dt", "<u4"), ("word", "<u4")])
EVENT_FIELD_BITS = {"layer": (28, 4), "channel": (18, 10), "y": (9, 9), "x": (0, 9)}


def events_per_frame(max_payload: int) -> int:
    """How many events fit one ``EVENTS`` payload of at most ``max_payload`` bytes."""
    return (max_payload - EVENT_BATCH_HEADER.size) // WIRE_EVENT.itemsize


def count_events(payload: bytes) -> int:
    """How many events an ``EVENTS`` payload holds."""
    return (len(payload) - EVENT_BATCH_HEADER.size) // WIRE_EVENT.itemsize


def check_events_fit(events: np.ndarray) -> None:
    """Raise ValueError naming the first event whose field the wire format cannot carry."""
    for name, (_, bits) in EVENT_FIELD_BITS.items():
        bad = np.flatnonzero((events[name] < 0) | (events[name] >= 1 << bits))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"events[{i}].{name} = {int(events[name][i])}: the wire format carries "
                f"{name} in 0..{(1 << bits) - 1}"
            )
    if len(events) and int(events["t"].min()) < 0:
        i = int(np.argmin(events["t"]))
        raise ValueError(f"events[{i}].t = {int(events['t'][i])} µs: timestamps must be >= 0")


def pack_events(events: np.ndarray, max_payload: int) -> list[bytes]:
    """Split an EVENT_DTYPE array into ``EVENTS`` payloads of at most ``max_payload`` bytes.
    A batch whose time span exceeds 2**32 µs is split further. Check fields with
    :func:`check_events_fit` first."""
    per = events_per_frame(max_payload)
    payloads: list[bytes] = []
    for start in range(0, len(events), per):
        _pack_batch(events[start:start + per], payloads)
    return payloads


def _pack_batch(batch: np.ndarray, out: list[bytes]) -> None:
    base = int(batch["t"].min())
    if int(batch["t"].max()) - base >= 1 << 32:
        half = len(batch) // 2
        _pack_batch(batch[:half], out)
        _pack_batch(batch[half:], out)
        return
    wire = np.empty(len(batch), WIRE_EVENT)
    wire["dt"] = batch["t"] - base
    word = np.zeros(len(batch), np.uint32)
    for name, (shift, _) in EVENT_FIELD_BITS.items():
        word |= batch[name].astype(np.uint32) << np.uint32(shift)
    wire["word"] = word
    out.append(EVENT_BATCH_HEADER.pack(base) + wire.tobytes())


def unpack_events(payloads: list[bytes]) -> np.ndarray:
    """The EVENT_DTYPE array carried by ``EVENTS`` payloads, in order."""
    parts = []
    for payload in payloads:
        (base,) = unpack_struct(EVENT_BATCH_HEADER, payload, "EVENTS")
        body = memoryview(payload)[EVENT_BATCH_HEADER.size:]
        if len(body) % WIRE_EVENT.itemsize:
            raise ProtocolError(
                f"EVENTS payload holds {len(body)} event bytes, not a multiple of {WIRE_EVENT.itemsize}"
            )
        wire = np.frombuffer(body, WIRE_EVENT)
        events = np.empty(len(wire), EVENT_DTYPE)
        events["t"] = wire["dt"].astype(np.int64) + base
        for name, (shift, bits) in EVENT_FIELD_BITS.items():
            events[name] = (wire["word"] >> np.uint32(shift)) & np.uint32((1 << bits) - 1)
        parts.append(events)
    return np.concatenate(parts) if parts else np.empty(0, EVENT_DTYPE)


# -- handshake ----------------------------------------------------------------------------
HELLO = struct.Struct("<4sHIHI")
GREETING = struct.Struct("<4sHIHII16s")


@dataclass(frozen=True)
class Hello:
    """Host -> device: who the host is and what it can receive. ``nonce`` is echoed in the
    reply ``GREETING`` so the host can tell it from a stale or spontaneous one."""

    nonce: int
    max_payload: int
    window: int
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        return HELLO.pack(MAGIC, self.version, self.max_payload, self.window, self.nonce)

    @classmethod
    def unpack(cls, payload: bytes) -> "Hello":
        magic, version, max_payload, window, nonce = unpack_struct(HELLO, payload, "HELLO")
        _check_magic(magic, "HELLO")
        return cls(nonce, max_payload, window, version)


@dataclass(frozen=True)
class Greeting:
    """Device -> host, after boot / reset (``nonce`` 0) or in answer to ``HELLO``.
    ``boot_id`` changes on every device restart."""

    nonce: int
    boot_id: int
    max_payload: int
    window: int
    chip: str
    firmware: str
    version: int = PROTOCOL_VERSION

    def pack(self) -> bytes:
        head = GREETING.pack(MAGIC, self.version, self.max_payload, self.window, self.nonce,
                             self.boot_id, self.chip.encode()[:16])
        return head + self.firmware.encode()[:64]

    @classmethod
    def unpack(cls, payload: bytes) -> "Greeting":
        fields = unpack_struct(GREETING, payload, "GREETING")
        magic, version, max_payload, window, nonce, boot_id, chip = fields
        _check_magic(magic, "GREETING")
        firmware = payload[GREETING.size:].decode("utf-8", "replace")
        return cls(nonce, boot_id, max_payload, window, chip.rstrip(b"\0").decode("ascii", "replace"),
                   firmware, version)


def check_announced(what: str, max_payload: int, window: int) -> None:
    """Raise :class:`ProtocolError` naming a ``max_payload`` or ``window`` announced in a HELLO
    or GREETING that is outside ``MIN_PAYLOAD..65536`` / ``1..MAX_WINDOW``."""
    from backend.protocol.codec import MAX_PAYLOAD

    if not MIN_PAYLOAD <= max_payload <= MAX_PAYLOAD:
        raise ProtocolError(f"{what} announces max_payload = {max_payload} bytes; a peer must accept "
                            f"{MIN_PAYLOAD}..{MAX_PAYLOAD}")
    if not 1 <= window <= MAX_WINDOW:
        raise ProtocolError(f"{what} announces window = {window} frames; expected 1..{MAX_WINDOW}")


def _check_magic(magic: bytes, what: str) -> None:
    if magic != MAGIC:
        raise ProtocolError(f"{what} starts with {magic!r}; a spikeflash device sends {MAGIC!r}")


# -- small fixed payloads -----------------------------------------------------------------
U16 = struct.Struct("<H")
CONFIG_BEGIN = struct.Struct("<I32s")  # total size, sha256 of the bytes
CONFIG_OFFSET = struct.Struct("<I")  # CONFIG_CHUNK / CONFIG_DATA prefix
CONFIG_READ = struct.Struct("<II")  # offset, length
CONFIG_APPLIED = struct.Struct("<BI32s")  # status, applied size, sha256 of the applied config
READ_STATES = struct.Struct("<BI")  # core, element offset
STATE_DATA = struct.Struct("<BHHHII")  # core, f, h, w, element offset, total elements
RUN_BEGIN = struct.Struct("<IQ")  # run id, input event count
RUN_END = struct.Struct("<I")  # run id; optionally followed by RUN_UNTIL
STREAM = struct.Struct("<I")  # stream id (answered like a run: output EVENTS, then END_OF_RUN)
RUN_UNTIL = struct.Struct("<q")  # apply the leak ticks up to this time (µs) after the last event
ERROR = struct.Struct("<HB")  # code, frame type it answers; then a utf-8 message


def pack_run_end(run_id: int, until_us: int | None = None) -> bytes:
    """``RUN_END``: the run id, and ``until_us`` when the run should end later than its last event."""
    return RUN_END.pack(run_id) + (b"" if until_us is None else RUN_UNTIL.pack(until_us))


def run_until(payload: bytes) -> int | None:
    """The ``until_us`` of a ``RUN_END`` payload (None when absent); negative raises."""
    if len(payload) < RUN_END.size + RUN_UNTIL.size:
        return None
    (until_us,) = RUN_UNTIL.unpack_from(payload, RUN_END.size)
    if until_us < 0:
        raise ProtocolError(f"RUN_END until_us = {until_us}: times are µs in 0..2**63-1")
    return until_us


class ConfigStatus(IntEnum):
    """``CONFIG_APPLIED`` status."""

    APPLIED = 0
    NOTHING_WRITTEN = 1


@dataclass(frozen=True)
class EndOfRun:
    """The device's end-of-run marker: the run's accounting. ``last_t``: timestamp (µs) of the
    last event processed (-1 if none); ``dropped``: events the chip dropped (e.g. pooled out of
    range); ``overflow``: events lost to a full device queue; ``core_in``/``core_out``: per core."""

    run_id: int
    events_in: int
    events_out: int
    last_t: int
    dropped: int
    overflow: int
    core_in: dict[int, int]
    core_out: dict[int, int]

    HEAD = struct.Struct("<IQQqQQB")
    CORE = np.dtype([("core", "u1"), ("events_in", "<u8"), ("events_out", "<u8")])

    def pack(self) -> bytes:
        cores = sorted(set(self.core_in) | set(self.core_out))
        table = np.array([(c, self.core_in.get(c, 0), self.core_out.get(c, 0)) for c in cores], self.CORE)
        return self.HEAD.pack(self.run_id, self.events_in, self.events_out, self.last_t, self.dropped,
                              self.overflow, len(cores)) + table.tobytes()

    @classmethod
    def unpack(cls, payload: bytes) -> "EndOfRun":
        fields = unpack_struct(cls.HEAD, payload, "END_OF_RUN")
        run_id, n_in, n_out, last_t, dropped, overflow, n_cores = fields
        if len(payload) != cls.HEAD.size + n_cores * cls.CORE.itemsize:
            raise ProtocolError(f"END_OF_RUN of {len(payload)} bytes does not hold {n_cores} core records")
        table = np.frombuffer(payload, cls.CORE, offset=cls.HEAD.size)
        core_in = {int(r["core"]): int(r["events_in"]) for r in table}
        core_out = {int(r["core"]): int(r["events_out"]) for r in table}
        return cls(run_id, n_in, n_out, last_t, dropped, overflow, core_in, core_out)


STATUS_FIELDS = ("boot_id", "runs", "events_in", "events_out", "dropped", "overflow",
                 "frames_rx", "frames_tx", "retransmits", "rejected_frames")


def pack_status(values: dict[str, int]) -> bytes:
    """``STATUS_DATA``: the :data:`STATUS_FIELDS` counters as u64, in that order."""
    return np.array([values.get(name, 0) for name in STATUS_FIELDS], "<u8").tobytes()


def unpack_status(payload: bytes) -> dict[str, int]:
    """Inverse of :func:`pack_status`; fields a newer device appends are ignored."""
    if len(payload) < 8 * len(STATUS_FIELDS):
        raise ProtocolError(f"STATUS_DATA of {len(payload)} bytes; expected {8 * len(STATUS_FIELDS)}")
    values = np.frombuffer(payload, "<u8", count=len(STATUS_FIELDS))
    return {name: int(v) for name, v in zip(STATUS_FIELDS, values)}
