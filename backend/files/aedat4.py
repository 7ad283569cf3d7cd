"""AEDAT4 event recordings (what iniVation's DV and SynSense's tools record): read and write.

Reading uses the maintained ``aedat`` decoder from PyPI (``pip install spikeflash[aedat]``),
which handles every compression DV writes (none, LZ4, Zstd). Writing produces an uncompressed
file to the AEDAT4 layout, which DV and ``aedat`` read:

- the magic ``#!AER-DAT4.0\\r\\n``;
- ``u32 length`` and an ``IOHE`` flatbuffer whose ``description`` is the DV XML naming one
  event stream (id 0, ``typeIdentifier`` ``EVTS``, ``sizeX`` / ``sizeY``);
- packets: ``i32 stream id``, ``i32 length``, then a size-prefixed ``EVTS`` flatbuffer holding
  a vector of 16-byte ``Event`` structs ``(t i64 µs, x i16, y i16, on bool, 3 pad bytes)``.

Events here are :data:`snnlib.EVENT_DTYPE` arrays entering the DVS stage (layer
:data:`snnlib.DVS_LAYER_ID`): ``channel`` is the polarity (1 = ON, 0 = OFF) and ``t`` the
recording's absolute timestamp in µs, kept as it is.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from backend.files.events import EventFileError
from snnlib.errors import MissingDependency
from snnlib.events import EVENT_DTYPE
from snnlib.network import DVS_LAYER_ID

MAGIC = b"#!AER-DAT4.0\r\n"
#: events per packet written (DV writes packets of a few thousand events)
PACKET_EVENTS = 8192
_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])


class AedatError(EventFileError):
    """An AEDAT4 file cannot be read or events cannot be written as AEDAT4.

    Example scenarios:
      - a file the decoder rejects (truncated, not AEDAT4) or one with no event stream
      - writing events that are not EVENT_DTYPE, or coordinates the sensor size cannot hold
    """


def read_aedat4(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
    """The polarity events of the first event stream in ``path`` and its sensor size.

    Returns ``(events, (height, width))``: EVENT_DTYPE events on layer ``DVS_LAYER_ID`` in
    file order, ``t`` in µs as recorded. Frames, IMU and trigger streams are skipped.
    Raises :class:`AedatError` for a file the decoder rejects or that holds no event stream,
    and :class:`~snnlib.errors.MissingDependency` (an ImportError) naming the extra when
    ``aedat`` is not installed.
    """
    try:
        import aedat
    except ImportError as exc:
        raise MissingDependency("reading AEDAT4 needs the 'aedat' decoder: pip install 'spikeflash[aedat]'") from exc
    try:
        decoder = aedat.Decoder(str(path))
        streams = {sid: s for sid, s in decoder.id_to_stream().items() if s["type"] == "events"}
        if not streams:
            raise AedatError(f"path={str(path)!r}: holds no event stream (streams: "
                             f"{sorted(s['type'] for s in decoder.id_to_stream().values())}); "
                             "record the DVS output ('events') of the camera")
        sid = min(streams)
        chunks = [packet["events"] for packet in decoder if packet["stream_id"] == sid and "events" in packet]
    except RuntimeError as exc:  # the decoder reports every problem (I/O, format) this way
        raise AedatError(f"path={str(path)!r}: not a readable AEDAT4 file ({exc}); check the file is a "
                         "complete DV recording (.aedat4)") from exc
    size = (int(streams[sid]["height"]), int(streams[sid]["width"]))
    events = np.empty(sum(len(c) for c in chunks), dtype=EVENT_DTYPE)
    events["layer"] = DVS_LAYER_ID
    if chunks:
        raw = np.concatenate(chunks)
        events["t"], events["channel"], events["y"], events["x"] = raw["t"], raw["on"], raw["y"], raw["x"]
    return events, size


def write_aedat4(path: str | Path, events: np.ndarray, sensor_size: tuple[int, int] = (128, 128)) -> Path:
    """Write DVS ``events`` (EVENT_DTYPE, all on layer ``DVS_LAYER_ID``, channel 0 = OFF /
    1 = ON) to ``path`` as an uncompressed AEDAT4 file with one event stream of
    ``sensor_size`` = ``(height, width)`` pixels; returns the path."""
    height, width = _check_writable(events, sensor_size)
    description = _description(width, height)
    with open(path, "wb") as f:
        header = _ioheader(description)
        f.write(MAGIC + struct.pack("<I", len(header)) + header)
        for start in range(0, len(events), PACKET_EVENTS):
            packet = _event_packet(events[start:start + PACKET_EVENTS])
            f.write(struct.pack("<iI", 0, len(packet)) + packet)
    return Path(path)


def _check_writable(events: np.ndarray, sensor_size) -> tuple[int, int]:
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise AedatError(f"events: got {getattr(events, 'dtype', type(events).__name__)}; expected an "
                         "snnlib.EVENT_DTYPE array of DVS events")
    if (len(sensor_size) != 2 or not all(isinstance(n, (int, np.integer)) and 0 < n < 32768 for n in sensor_size)):
        raise AedatError(f"sensor_size={sensor_size!r}: expected (height, width), positive ints below 32768")
    height, width = (int(n) for n in sensor_size)
    checks = [("layer", events["layer"] != DVS_LAYER_ID, f"== {DVS_LAYER_ID} (DVS input)"),
              ("channel", events["channel"] > 1, "0 (OFF) or 1 (ON)"),
              ("y", events["y"] >= height, f"< sensor height {height}"),
              ("x", events["x"] >= width, f"< sensor width {width}")]
    for name, bad, expected in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise AedatError(f"events[{i}].{name} = {int(events[name][i])}; AEDAT4 polarity events need "
                             f"{name} {expected}", name, int(events[name][i]), i)
    return height, width


def _description(width: int, height: int) -> bytes:
    out = "/mainloop/spikeflash/outInfo/"
    return (f'<dv version="2.0"><node name="outInfo" path="{out}"><node name="0" path="{out}0/">'
            '<attr key="compression" type="string">NONE</attr>'
            '<attr key="originalModuleName" type="string">spikeflash</attr>'
            '<attr key="originalOutputName" type="string">events</attr>'
            '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
            '<attr key="typeIdentifier" type="string">EVTS</attr>'
            f'<node name="info" path="{out}0/info/"><attr key="sizeX" type="int">{width}</attr>'
            f'<attr key="sizeY" type="int">{height}</attr>'
            '<attr key="source" type="string">spikeflash</attr></node></node></node></dv>').encode()


def _ioheader(description: bytes) -> bytes:
    """The ``IOHE`` flatbuffer: compression None and no data table (the defaults, omitted),
    and ``description``. Laid out front to back: root offset, identifier, vtable, table,
    string."""
    vtable = struct.pack("<5H", 10, 8, 0, 0, 4) + b"\0\0"  # 3 fields; only field 2 present
    table_at = 8 + len(vtable)
    string_at = table_at + 8
    table = struct.pack("<iI", table_at - 8, string_at - (table_at + 4))
    text = struct.pack("<I", len(description)) + description + b"\0"
    body = struct.pack("<I", table_at) + b"IOHE" + vtable + table + text
    return body + b"\0" * (-len(body) % 8)


def _event_packet(events: np.ndarray) -> bytes:
    """A size-prefixed ``EVTS`` flatbuffer holding ``events`` (offsets counted from the byte
    after the size prefix; the structs start 8-byte aligned in the whole packet)."""
    raw = np.zeros(len(events), dtype=_EVENT)
    raw["t"], raw["x"], raw["y"], raw["on"] = events["t"], events["x"], events["y"], events["channel"]
    # after the prefix: root u32 @0, "EVTS" @4, vtable @8 (6 bytes + 2 pad), table @16 (soffset,
    # vector offset), vector length @24, structs @28 (32 in the packet, 8-byte aligned there)
    head = struct.pack("<I", 16) + b"EVTS" + struct.pack("<3H", 6, 8, 4) + b"\0\0"
    head += struct.pack("<iI", 16 - 8, 24 - 20) + struct.pack("<I", len(events))
    body = head + raw.tobytes()
    return struct.pack("<I", len(body)) + body
