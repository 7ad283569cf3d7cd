"""The wire format against its document: the golden frames written in docs/protocol.md are
what the project's codec and payload layouts produce and accept, byte for byte, and what a
stand-alone peer (tests/wire_peer.py, which shares no code with backend/protocol) produces and
accepts; the host session completes a handshake and runs against that peer."""

from __future__ import annotations

import re
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import wire_peer

from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import LinkTimeout, VersionMismatch
from backend.protocol import frames as fr
from backend.protocol.codec import Frame, decode_stream, encode_frame
from backend.devices.serial_port import open_port
from backend.protocol.session import HostSession
from snnlib.events import EVENT_DTYPE

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
GOLDEN_BLOCK = re.compile(r"^```text\ngolden (\S+): [^\n]*\n(.*?)^```", re.S | re.M)
GOLDEN = {name: bytes.fromhex(text) for name, text in GOLDEN_BLOCK.findall(DOC.read_text())}

SPAN = [(0, 0, 0, 0, 1), (2**32, 1, 2, 3, 4)]  # exactly 2**32 µs apart
NONCE = 0x12345679


def _event(dt: int, layer: int, channel: int, y: int, x: int) -> bytes:
    return struct.pack("<II", dt, layer << 28 | channel << 18 | y << 9 | x)


# what each golden frame means, as (type, seq, payload), built from the document's layouts
MEANING = {
    "ack-6": (0x10, 0, struct.pack("<H", 6)),
    "nack-65535": (0x11, 0, struct.pack("<H", 65535)),
    "config-chunk-escapes": (0x03, 219, struct.pack("<I", 192) + b"\xdb\xc0"),
    "hello": (0x01, 0, struct.pack("<4sHIHI", b"SPKF", 2, 65536, 16, NONCE)),
    "greeting": (0x81, 0, struct.pack("<4sHIHII16s", b"SPKF", 2, 1024, 4, NONCE, 0xB007, b"speck2f") + b"emu 1"),
    "events-span-2^32-first": (0x09, 0, struct.pack("<q", 0) + _event(0, 0, 0, 0, 1)),
    "events-span-2^32-second": (0x09, 1, struct.pack("<q", 2**32) + _event(0, 1, 2, 3, 4)),
    "events-span-2^32-minus-1": (0x09, 0, struct.pack("<q", 0) + _event(0, 0, 0, 0, 1)
                                 + _event(2**32 - 1, 1, 2, 3, 4)),
    "end-of-run": (0x8A, 3, struct.pack("<IQQqQQB", 7, 2, 2, 2**32, 0, 0, 1) + struct.pack("<BQQ", 0, 2, 2)),
}


def test_every_golden_frame_of_the_document_has_a_meaning_here():
    assert sorted(GOLDEN) == sorted(MEANING)


@pytest.mark.parametrize("name", sorted(MEANING))
def test_the_codec_encodes_and_decodes_the_golden_bytes(name):
    frame_type, seq, payload = MEANING[name]
    assert encode_frame(frame_type, seq, payload).hex(" ") == GOLDEN[name].hex(" ")
    frames, counters = decode_stream(GOLDEN[name])
    assert frames == [Frame(frame_type, seq, payload)] and counters.rejected == 0


@pytest.mark.parametrize("name", sorted(MEANING))
def test_the_stand_alone_peer_encodes_and_decodes_the_golden_bytes(name):
    frame_type, seq, payload = MEANING[name]
    assert wire_peer.encode(frame_type, seq, payload).hex(" ") == GOLDEN[name].hex(" ")
    assert wire_peer.decode(GOLDEN[name]) == [(frame_type, seq, payload)]


def test_the_peer_crc_is_the_catalogue_crc32():
    assert wire_peer.crc32(b"123456789") == 0xCBF43926


def test_handshake_payloads_pack_and_unpack_as_documented():
    hello = fr.Hello(NONCE, 65536, 16)
    assert hello.pack() == MEANING["hello"][2] and fr.Hello.unpack(MEANING["hello"][2]) == hello
    greeting = fr.Greeting(NONCE, 0xB007, 1024, 4, "speck2f", "emu 1")
    assert greeting.pack() == MEANING["greeting"][2] and fr.Greeting.unpack(MEANING["greeting"][2]) == greeting


def test_end_of_run_packs_and_unpacks_as_documented():
    end = fr.EndOfRun(7, 2, 2, 2**32, 0, 0, {0: 2}, {0: 2})
    assert end.pack() == MEANING["end-of-run"][2] and fr.EndOfRun.unpack(MEANING["end-of-run"][2]) == end


def test_a_batch_spanning_exactly_2_to_the_32_us_travels_in_two_frames():
    events = np.array(SPAN, EVENT_DTYPE)
    payloads = fr.pack_events(events, max_payload=65536)
    assert payloads == [MEANING["events-span-2^32-first"][2], MEANING["events-span-2^32-second"][2]]
    assert fr.unpack_events(payloads).tolist() == SPAN
    one_less = np.array([SPAN[0], (2**32 - 1, *SPAN[1][1:])], EVENT_DTYPE)
    assert fr.pack_events(one_less, max_payload=65536) == [MEANING["events-span-2^32-minus-1"][2]]
    assert fr.unpack_events([MEANING["events-span-2^32-minus-1"][2]]).tolist() == one_less.tolist()


def _session(peer: wire_peer.PeerDevice) -> HostSession:
    return HostSession(open_port(peer.url), peer.url, rto=0.2)


def test_the_host_greets_asks_and_runs_against_the_stand_alone_peer():
    peer = wire_peer.PeerDevice()
    session = _session(peer)
    try:
        greeting = session.handshake()
        assert (greeting.boot_id, greeting.window, greeting.chip, greeting.firmware) == (0xB007, 4, "peer", "wire peer 1")
        assert session.link.window == 4 and session.link.max_payload == 1024
        assert session.status() == dict(zip(fr.STATUS_FIELDS, [0xB007, *range(1, 10)]))
        events = np.array(SPAN + [(2**32 + 5, 15, 1023, 511, 511)], EVENT_DTYPE)
        out, end = session.run(events)
        assert out.tolist() == events.tolist()
        assert (end.events_in, end.events_out, end.last_t) == (3, 3, 2**32 + 5)
        sent = [wire_peer.events_of(p) for t, _, p in peer.received if t == wire_peer.EVENTS]
        assert sent == [[SPAN[0]], [SPAN[1], (2**32 + 5, 15, 1023, 511, 511)]]  # split at the 2**32 span
        seqs = [seq for t, seq, _ in peer.received if t not in wire_peer.CONTROL]
        assert seqs == list(range(len(seqs)))  # the host numbered its frames 0, 1, 2, ... from the greeting
        assert [seq for t, seq, _ in peer.received if t == wire_peer.HELLO] == [0]  # a control frame: seq 0
    finally:
        session.close()


def test_close_sends_stop_and_waits_for_its_ok_before_closing_the_port():
    """docs/protocol.md, "Stop": ``close()`` sends STOP (best effort, 1 s) before closing the
    port, so a device left mid-run or mid-upload is idle for the next host; the peer logs it."""
    peer = wire_peer.PeerDevice()
    session = _session(peer)
    try:
        session.handshake()
        session.status()
    finally:
        session.close()
    assert [t for t, _, _ in peer.received] == [wire_peer.HELLO, wire_peer.STATUS, wire_peer.STOP]
    session.close()  # a second close sends nothing
    assert len(peer.received) == 3


def test_a_greeting_with_another_nonce_does_not_complete_the_handshake():
    # the peer answers the first HELLO with a stale greeting (another nonce, another window),
    # the second one correctly: the host must wait for the second
    peer = wire_peer.PeerDevice(nonces=lambda nonce, i: nonce if i else (nonce + 2) & 0xFFFFFFFF)
    session = _session(peer)
    try:
        greeting = session.handshake(timeout=2.0)
        assert peer.hellos == 2 and greeting.nonce == session._nonce
    finally:
        session.close()
    stale = wire_peer.PeerDevice(nonces=lambda nonce, i: 0)  # only boot greetings, never an answer
    session = _session(stale)
    try:
        with pytest.raises(LinkTimeout, match="no GREETING within 0.5 s"):
            session.handshake(timeout=0.5)
        assert stale.hellos >= 2
    finally:
        session.close()


def test_a_host_refuses_a_version_1_device_with_version_mismatch():
    peer = wire_peer.PeerDevice(version=1)
    session = _session(peer)
    try:
        with pytest.raises(VersionMismatch, match="device speaks protocol version 1, this host 2"):
            session.handshake()
    finally:
        session.close()


def test_the_emulator_answers_a_version_1_hello_with_its_version_and_stays_out_of_session():
    """A v1 host learns the device's version from the GREETING (and raises its own
    VersionMismatch); its requests get the unasked greeting, never a reply."""
    with ServedEmulator(EmulatorServer(), "tcp") as served, socket.create_connection(
            served.url.removeprefix("socket://").split(":")) as conn:
        conn.settimeout(2.0)
        hello_v1 = wire_peer.encode(wire_peer.HELLO, 0, struct.pack("<4sHIHI", b"SPKF", 1, 65536, 16, NONCE))
        answer = _read_frames(conn, hello_v1, lambda f: f[0] == wire_peer.GREETING and f[2][12:16] != bytes(4))
        greeting = fr.Greeting.unpack(answer[-1][2])
        assert (greeting.nonce, greeting.version) == (NONCE, 2)
        time.sleep(0.3)  # the emulator repeats its unasked greeting at most every 0.2 s
        frames = _read_frames(conn, wire_peer.encode(wire_peer.STATUS, 0, b""), lambda f: f[0] == wire_peer.GREETING)
        assert fr.Greeting.unpack(frames[-1][2]).nonce == 0
        assert wire_peer.STATUS_DATA not in [f[0] for f in frames]


def _read_frames(conn, request: bytes, until) -> list:
    conn.sendall(request)
    frames, data = [], b""
    while not frames or not until(frames[-1]):
        data += conn.recv(65536)
        frames = wire_peer.decode(data)
    return frames


def test_a_fresh_tcp_connection_gets_the_unasked_nonce_0_greeting_first():
    with ServedEmulator(EmulatorServer(), "tcp") as served, socket.create_connection(
            served.url.removeprefix("socket://").split(":")) as conn:
        conn.settimeout(2.0)
        frames = _read_frames(conn, b"", lambda f: f[0] == wire_peer.GREETING)
        greeting = fr.Greeting.unpack(frames[0][2])
        assert (greeting.nonce, greeting.boot_id) == (0, served.server.boot_id)
        assert frames[0][1] == 0  # a control frame: seq 0


def test_a_fresh_device_on_a_pty_answers_a_request_before_any_hello_with_its_greeting_only():
    with ServedEmulator(EmulatorServer(), "pty") as served:
        port = open_port(served.url)
        try:
            time.sleep(0.3)  # the emulator repeats its unasked greeting at most every 0.2 s
            port.write(wire_peer.encode(wire_peer.STATUS, 0, b""))
            data, deadline = b"", time.monotonic() + 5.0
            while time.monotonic() < deadline and not re.search(  # the ACK, then a greeting
                    rb"\x10.*\x81", bytes(f[0] for f in wire_peer.decode(data)), re.S):
                data += port.read(65536)
                time.sleep(0.01)
            frames = wire_peer.decode(data)
            types = [f[0] for f in frames]
            assert wire_peer.GREETING in types and wire_peer.STATUS_DATA not in types  # no session yet
            assert all(fr.Greeting.unpack(f[2]).nonce == 0 for f in frames if f[0] == wire_peer.GREETING)
        finally:
            port.close()


def test_an_emulator_is_served_on_a_pty_or_tcp_only():
    with pytest.raises(ValueError, match="kind='udp'.*expected 'pty' or 'tcp'"):
        ServedEmulator(EmulatorServer(), "udp")


def test_the_error_codes_are_the_documents_table():
    table = dict(re.findall(r"^\| (\d+) \| ([A-Z_]+) \|", DOC.read_text(), re.MULTILINE))
    assert {int(code): name for code, name in table.items()} == {int(c): c.name for c in fr.ErrorCode}
