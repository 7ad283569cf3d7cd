"""The host session against the emulator server through a real, fault-injecting TCP link
(reliability bar B.6 items 7-15, 17): recover with nothing lost, or raise a typed error."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import types

import numpy as np
import pytest

from backend.devices import open_device
from backend.emulator.chip import STEP_EVENTS, RunStats
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import (
    DeviceDisconnected,
    DeviceReset,
    FlashError,
    FlashMismatch,
    FlashNotApplied,
    LinkTimeout,
    NotFlashed,
    ProtocolError,
    RunTimeout,
    SessionEnded,
    VersionMismatch,
)
from backend.testing.faulty_link import Faults, FaultyLink
from backend.protocol import frames as fr
from backend.protocol.codec import FrameDecoder, encode_frame
from backend.protocol.frames import FrameType
from backend.protocol.link import Link
from backend.protocol.session import HostSession
from backend.testing.qualification import qualification_config, random_input
from backend.devices.serial_port import open_port
from snnlib.events import EVENT_DTYPE, check_events

import wire_peer


class CountingChip:
    """Stand-in for the device core: output = input moved to layer+1; state counts inputs."""

    info = types.SimpleNamespace(chip="counting", firmware="test 1")
    on_run = staticmethod(lambda: None)  # what a run does first; tests set it with the on_run fixture

    def __init__(self):
        self.config = None
        self.state = np.zeros((2, 4, 4), np.int16)

    def apply_image(self, image: bytes) -> str:
        self.config = json.loads(image)  # any JSON stands in for an image; anything else is invalid
        return hashlib.sha256(image).hexdigest()

    def check_input(self, events):
        check_events(events)  # time must not go back; any layer and coordinate will do

    def reset(self):
        self.state[:] = 0

    def read_states(self):
        return {0: self.state.copy()}

    def steps(self, events, until_us=None):
        """As EmulatedChip.steps: bounded steps of output and counters."""
        for start in range(0, len(events), STEP_EVENTS):
            self.on_run()
            part = events[start:start + STEP_EVENTS]
            np.add.at(self.state, (part["channel"] % 2, part["y"] % 4, part["x"] % 4), 1)
            yield relabel(part), RunStats({0: len(part)}, {1: len(part)}, 0, int(part["t"].max()))


def relabel(events):
    out = events.copy()
    out["layer"] += 1
    return out


CONFIG = json.dumps({"layers": list(range(3000))}).encode()  # spans several frames


def make_events(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    events = np.zeros(n, EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, 10 * n + 1, n))
    events["channel"] = rng.integers(0, 1024, n)
    events["y"] = rng.integers(0, 512, n)
    events["x"] = rng.integers(0, 512, n)
    return events


@pytest.fixture
def served():
    with ServedEmulator(EmulatorServer(CountingChip), "tcp") as emulator:
        yield emulator


def connect(url: str, **kw) -> HostSession:
    session = HostSession(open_port(url), url, rto=kw.pop("rto", 0.05), **kw)
    session.handshake()
    return session


def device_address(served: ServedEmulator) -> tuple[str, int]:
    host, port = served.url.removeprefix("socket://").split(":")
    return host, int(port)


def test_clean_link_flash_run_states_reset(served):
    # a retransmission timeout far above any scheduling stall of a loaded CI machine (with the
    # 50 ms of the other tests a 2-core runner retransmitted once now and then), so that zero
    # retransmits below is a property of the link; tests/test_link.py pins it on its own clock
    session = connect(served.url, rto=2.0)
    try:
        assert session.greeting.chip == "counting" and session.greeting.version == fr.PROTOCOL_VERSION
        digest = session.flash(CONFIG)
        assert digest == hashlib.sha256(CONFIG).hexdigest()
        events = make_events(20_000)
        out, end = session.run(events)
        np.testing.assert_array_equal(out, relabel(events))
        assert (end.events_in, end.events_out, end.last_t) == (20_000, 20_000, int(events["t"][-1]))
        assert end.core_in == {0: 20_000, 1: 0} and end.dropped == 0
        assert session.read_states([0])[0].sum() == 20_000
        session.reset_states()
        assert not session.read_states([0])[0].any()
        status = session.status()
        assert status["runs"] == 1 and status["events_in"] == 20_000 and status["events_out"] == 20_000
        assert session.link.stats()["retransmits"] == 0
    finally:
        session.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_recovers_from_drops_duplicates_reordering_corruption_and_delay(seed):
    noisy = Faults(drop=0.005, duplicate=0.005, reorder=0.005, corrupt=0.005, delay=0.002, piece=700)
    with ServedEmulator(EmulatorServer(CountingChip, max_payload=4096, rto=0.05), "tcp") as served, \
            FaultyLink(device_address(served), noisy, noisy, seed=seed) as link:
        session = connect(link.url, max_payload=4096)  # small frames: most survive this noise
        try:
            session.flash(CONFIG)
            for run in range(3):
                events = make_events(20_000, seed * 10 + run)
                out, end = session.run(events, timeout=30)
                np.testing.assert_array_equal(out, relabel(events))  # nothing lost, nothing doubled
                assert end.events_in == end.events_out == len(events)
        finally:
            session.close()
        faults = {k: link.counters["to_device"][k] + link.counters["to_host"][k]
                  for k in ("dropped", "duplicated", "reordered", "corrupted")}
        assert min(faults.values()) > 0, faults
        stats = session.link.stats()
        assert stats["retransmits"] > 0 and stats["dropped_bytes"] > 0


def test_emulated_chip_through_a_noisy_link_is_bit_exact_with_emu():
    config = qualification_config("pooled_chain", 1)
    events = random_input(config.to_network(), 10000, seed=6)
    noisy = Faults(drop=0.01, duplicate=0.003, reorder=0.003, corrupt=0.01, piece=700)
    with ServedEmulator(EmulatorServer(max_payload=4096, rto=0.05), "tcp") as served, \
            FaultyLink(device_address(served), noisy, noisy, seed=4) as link, \
            open_device(link.url, rto=0.05, max_payload=4096) as board, open_device("emu://") as emu:
        board.flash(config)
        emu.flash(config)
        got, want = board.run(events), emu.run(events)
        np.testing.assert_array_equal(got.events, want.events)
        assert len(want.events) > 1000 and board.counters.core_out == emu.counters.core_out
        assert board.counters.link["retransmits"] > 0 and board.counters.link["dropped_bytes"] > 0


def test_stalled_device_output_raises_link_timeout_not_a_hang(served):
    with FaultyLink(device_address(served)) as link:
        session = connect(link.url)
        session.flash(CONFIG)
        link.stall("to_host")
        with pytest.raises(LinkTimeout, match=r"no acknowledgement for frame seq \d+ .* after 3 retransmissions") as info:
            session.run(make_events(1000), timeout=1.0)
        # the link's retry budget (0.05 + 0.1 + 0.2 + 0.4 s at rto=0.05) ended the run, not its deadline
        assert isinstance(info.value, TimeoutError) and info.value.counters["retransmits"] >= 3
        session.close()


def test_device_that_stops_reading_raises_link_timeout():
    with ServedEmulator(EmulatorServer(CountingChip, max_payload=4096), "tcp") as served, \
            FaultyLink(device_address(served)) as link:
        session = connect(link.url)
        session.port.write_timeout = 0.3
        session.flash(CONFIG)
        link.stall("to_device")
        events = make_events(300_000)
        # ended by the retries or the port's write timeout, never by waiting for window space
        # until the run's deadline (60 s)
        with pytest.raises(LinkTimeout, match="no acknowledgement .* after 3 retransmissions|accepted no data for 0.3 s"):
            session.run(events, timeout=60)
        session.close()


def test_device_reset_mid_run_is_detected_and_the_next_run_resyncs(served, on_run):
    session = connect(served.url)
    try:
        session.flash(CONFIG)
        on_run(served.server.reboot)
        with pytest.raises(DeviceReset, match="restarted"):
            session.run(make_events(5000))
        on_run(lambda: None)
        assert session.needs_handshake
        with pytest.raises(DeviceReset):
            session.run(make_events(10))  # no silent use of a link that lost its device
        session.handshake()
        with pytest.raises(NotFlashed):  # the restarted device lost its configuration
            session.run(make_events(10))
        session.flash(CONFIG)
        events = make_events(5000, 7)
        out, _ = session.run(events)
        np.testing.assert_array_equal(out, relabel(events))
    finally:
        session.close()


def test_a_device_that_restarts_mid_run_sends_nothing_more_of_the_run_before_its_greeting(served, on_run):
    # the reboot comes as the run's first step starts, before its output is written: the
    # restarted device must not send that output (of a session it no longer has), only greet
    session = connect(served.url)
    try:
        session.flash(CONFIG)
        on_run(served.server.reboot)
        link, events = session.link, make_events(50)
        deadline = time.monotonic() + 5.0
        link.send(FrameType.RUN_BEGIN, fr.RUN_BEGIN.pack(1, len(events)), deadline)
        for batch in fr.pack_events(events, link.max_payload):
            link.send(FrameType.EVENTS, batch, deadline)
        link.send(FrameType.RUN_END, fr.RUN_END.pack(1), deadline)
        with pytest.raises(DeviceReset, match="restarted"):
            while time.monotonic() < deadline:
                link.pump(0.05)  # frames before the new boot's greeting stay in the inbox
        assert [FrameType(f.type).name for f in link.inbox] == []
    finally:
        session.close()


def test_unplug_mid_run_raises_device_disconnected(served, on_run):
    with FaultyLink(device_address(served)) as link:
        session = connect(link.url)
        session.flash(CONFIG)
        on_run(link.unplug)
        try:
            with pytest.raises(DeviceDisconnected, match="unplugged") as info:  # not a RunTimeout
                session.run(make_events(5000), timeout=5)
            assert info.value.counters is not None
        finally:
            session.close()
        assert not session._reader.is_alive()


def test_missing_end_of_run_marker_is_a_run_timeout_naming_progress(served, on_run):
    session = connect(served.url)
    try:
        session.flash(CONFIG)
        on_run(lambda: time.sleep(0.6))
        events = make_events(100)
        with pytest.raises(RunTimeout, match=rf"read 0 output events .*last timestamp {events['t'][-1]} µs"):
            session.run(events, timeout=0.3)
    finally:
        session.close()


class LyingChip(CountingChip):
    def apply_image(self, image):
        super().apply_image(image)
        return hashlib.sha256(b"something else").hexdigest()


def test_flash_nothing_written_mismatch_and_invalid_are_different_errors(served):
    session = connect(served.url)
    try:
        with pytest.raises(FlashNotApplied, match="wrote nothing"):
            session.flash(b"")
        with pytest.raises(FlashError, match="CONFIG_INVALID") as info:
            session.flash(b"{not json")
        assert not isinstance(info.value, (FlashNotApplied, FlashMismatch))
        with pytest.raises(NotFlashed, match="NOT_CONFIGURED"):
            session.run(make_events(3))
    finally:
        session.close()
    with ServedEmulator(EmulatorServer(LyingChip), "tcp") as lying:
        session = connect(lying.url)
        with pytest.raises(FlashMismatch, match="reads back"):
            session.flash(CONFIG)
        session.close()


class FailingChip(CountingChip):
    """A chip whose flash write fails (a firmware fault, not a bad image)."""

    def apply_image(self, image):
        super().apply_image(image)
        raise RuntimeError("flash write failed at page 3")


def test_a_device_fault_while_applying_is_internal_not_an_invalid_configuration():
    # docs/protocol.md, Errors: CONFIG_INVALID is for images (a ValueError applying one);
    # the device failing otherwise is INTERNAL, answering the request
    with ServedEmulator(EmulatorServer(FailingChip), "tcp") as failing:
        session = connect(failing.url)
        try:
            with pytest.raises(FlashError, match="CONFIG_INVALID.*JSONDecodeError"):
                session.flash(b"{not json")
            with pytest.raises(ProtocolError, match="device error INTERNAL during flash: RuntimeError: "
                                                    "flash write failed at page 3") as info:
                session.flash(CONFIG)
            assert not isinstance(info.value, FlashError)
        finally:
            session.close()


def test_boot_noise_before_the_greeting_is_skipped_and_counted(served):
    address = device_address(served)
    with FaultyLink(address, to_host=Faults(corrupt=0.3, piece=16), seed=5) as link:
        session = connect(link.url)
        session.close()
    assert session.link.stats()["dropped_bytes"] > 0


def _fake_device(listener: socket.socket, version: int) -> None:
    conn, _ = listener.accept()
    decoder = FrameDecoder()
    with conn:
        while True:
            data = conn.recv(4096)
            if not data:
                return
            for frame in decoder.feed(data):
                if frame.type == FrameType.HELLO:
                    hello = fr.Hello.unpack(frame.payload)
                    greeting = fr.Greeting(hello.nonce, 1, 1024, 4, "future", "fw 9", version=version)
                    conn.sendall(b"booting...\r\n" + encode_frame(FrameType.GREETING, 0, greeting.pack()))


def test_version_mismatch_is_typed():
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_fake_device, args=(listener, 3), daemon=True).start()
    url = "socket://127.0.0.1:%d" % listener.getsockname()[1]
    session = HostSession(open_port(url), url)
    with pytest.raises(VersionMismatch, match="version 3"):
        session.handshake()
    session.close()
    listener.close()


def test_silent_port_handshake_times_out():
    listener = socket.create_server(("127.0.0.1", 0))
    url = "socket://127.0.0.1:%d" % listener.getsockname()[1]
    session = HostSession(open_port(url), url)
    with pytest.raises(LinkTimeout, match="no GREETING within 0.3 s"):
        session.handshake(timeout=0.3)
    session.close()
    listener.close()


def test_retransmission_timer_uses_the_injected_clock():
    now = [0.0]
    sent: list[bytes] = []
    link = Link(sent.append, lambda timeout: b"", lambda frame: None, rto=1.0, max_retries=2,
                clock=lambda: now[0])
    link.restart(window=4, max_payload=1024)
    link.send(FrameType.STATUS, b"", deadline=10.0)
    link.pump(0)
    assert len(sent) == 1  # no time has passed
    now[0] = 1.01
    link.pump(0)
    assert len(sent) == 2 and link.counters["retransmits"] == 1
    now[0] = 3.1  # doubled timeout
    link.pump(0)
    assert len(sent) == 3
    now[0] = 100.0
    with pytest.raises(LinkTimeout, match="no acknowledgement for frame seq 0 .* after 2 retransmissions"):
        link.pump(0)


def test_a_peer_that_only_nacks_still_ends_in_link_timeout():
    now = [0.0]
    sent: list[bytes] = []
    nack = encode_frame(FrameType.NACK, 0, fr.U16.pack(0))
    link = Link(sent.append, lambda timeout: nack, lambda frame: None, rto=1.0, max_retries=3,
                clock=lambda: now[0])
    link.restart(window=4, max_payload=1024)
    link.send(FrameType.STATUS, b"", deadline=100.0)
    with pytest.raises(LinkTimeout, match="after 3 retransmissions"):
        for _ in range(1000):
            now[0] += 0.1
            link.pump(0)
    assert now[0] < 16.0 and link.counters["nacks_rx"] > 3  # 1 + 2 + 4 + 8 s of no progress


def test_window_limits_frames_in_flight_and_ack_releases_them():
    now = [0.0]
    sent: list[bytes] = []
    incoming: list[bytes] = []
    link = Link(sent.append, lambda timeout: incoming.pop() if incoming else b"", lambda frame: None,
                clock=lambda: now[0])
    link.restart(window=2, max_payload=1024)
    link.send(FrameType.EVENTS, b"a", deadline=1.0)
    link.send(FrameType.EVENTS, b"b", deadline=1.0)
    with pytest.raises(LinkTimeout, match="window space"):
        link.send(FrameType.EVENTS, b"c", deadline=0.0)
    incoming.append(encode_frame(FrameType.ACK, 0, fr.U16.pack(2)))
    link.send(FrameType.EVENTS, b"c", deadline=1.0)
    assert len(sent) == 3


def test_a_device_that_gives_up_ends_the_session_and_the_host_greets_again(served):
    session = connect(served.url)
    try:
        session.flash(CONFIG)
        session.link.send(FrameType.STATUS, b"", time.monotonic() + 1)  # the host never reads the reply
        deadline = time.monotonic() + 10
        while served.server.in_session and time.monotonic() < deadline:
            time.sleep(0.05)  # the device retransmits at 0.2, 0.6, 1.4 s and gives up at 3 s
        assert not served.server.in_session
        # the reply the host never read is still on its way in, with the device's announcement
        # behind it; a request may take that stale reply first, the next one gets SessionEnded
        with pytest.raises(SessionEnded, match="ended the session"):
            for _ in range(2):
                session.status()
        boot_id = session.greeting.boot_id
        assert session.handshake().boot_id == boot_id
        assert session.status()["boot_id"] == boot_id and served.server.applied == CONFIG  # kept
    finally:
        session.close()


def test_a_failed_port_is_raised_at_the_first_read_after_it_and_at_every_later_one():
    """A port the device closed is DeviceDisconnected when the host next reads, also with
    nothing read before it, and on every read after: never taken for a silent line."""
    listener = socket.create_server(("127.0.0.1", 0))
    url = "socket://127.0.0.1:%d" % listener.getsockname()[1]
    session = HostSession(open_port(url), url)
    conn, _ = listener.accept()
    conn.close()
    listener.close()
    session._reader.join(timeout=5)  # the reader saw the end of the connection
    try:
        with pytest.raises(DeviceDisconnected, match="unplugged"):
            session.link.pump(0)
        with pytest.raises(DeviceDisconnected, match="unplugged"):
            session.link.recv(time.monotonic() + 2)
        assert session.needs_handshake
    finally:
        session.close()


def test_bytes_read_before_a_port_failed_are_delivered_before_the_failure():
    listener = socket.create_server(("127.0.0.1", 0))
    url = "socket://127.0.0.1:%d" % listener.getsockname()[1]
    session = HostSession(open_port(url), url)
    conn, _ = listener.accept()
    conn.sendall(encode_frame(FrameType.OK, 0, b"last words"))
    conn.close()
    listener.close()
    session._reader.join(timeout=5)
    try:
        assert session.link.recv(time.monotonic() + 2).payload == b"last words"
        with pytest.raises(DeviceDisconnected):
            session.link.recv(time.monotonic() + 2)
    finally:
        session.close()


class ReadBackPeer(wire_peer.PeerDevice):
    """The stand-alone peer, also answering ``CONFIG_READ`` from ``image`` and ``READ_STATES``
    from ``states`` (core -> int16 ``(f, h, w)``), ``per_reply`` elements a reply, and
    ``CONFIG_END`` with ``CONFIG_APPLIED`` for ``image``;
    ``lie(frame_type, payload)`` may rewrite any payload it sends."""

    def __init__(self, image=b"", states=None, per_reply=5, lie=lambda frame_type, payload: payload):
        self.image, self.states, self.per_reply, self.lie = image, states or {}, per_reply, lie
        super().__init__()

    def _answer(self, frame_type, seq, payload):
        delivered = len(self.received)
        out = super()._answer(frame_type, seq, payload)
        if len(self.received) == delivered:  # a repeat or a gap: the peer only (N)ACKed it
            return out
        if frame_type == FrameType.CONFIG_END:  # holds ``image`` whatever was sent
            out += self._send(FrameType.CONFIG_APPLIED, fr.CONFIG_APPLIED.pack(
                fr.ConfigStatus.APPLIED, len(self.image), hashlib.sha256(self.image).digest()))
        elif frame_type == FrameType.CONFIG_READ:
            offset, length = fr.CONFIG_READ.unpack(payload)
            out += self._send(FrameType.CONFIG_DATA,
                              fr.CONFIG_OFFSET.pack(offset) + self.image[offset:offset + length])
        elif frame_type == FrameType.READ_STATES:
            core, offset = fr.READ_STATES.unpack(payload)
            flat = self.states[core].ravel()
            part = flat[offset:offset + self.per_reply].astype("<i2").tobytes()
            out += self._send(FrameType.STATE_DATA,
                              fr.STATE_DATA.pack(core, *self.states[core].shape, offset, flat.size) + part)
        return out

    def _send(self, frame_type, payload):
        return super()._send(frame_type, self.lie(frame_type, payload))


def greeted(peer: wire_peer.PeerDevice) -> HostSession:
    session = HostSession(open_port(peer.url), peer.url)
    session.handshake()
    return session


def requests(peer: wire_peer.PeerDevice, frame_type: FrameType) -> list[bytes]:
    return [payload for t, _, payload in peer.received if t == frame_type]


def test_states_are_read_in_chunks_from_offset_0_to_the_total():
    states = {0: np.arange(2 * 3 * 2, dtype=np.int16).reshape(2, 3, 2) - 6,
              3: np.full((1, 1, 5), 7, np.int16)}
    peer = ReadBackPeer(states=states, per_reply=5)
    session = greeted(peer)
    try:
        got = session.read_states([0, 3])
        assert set(got) == {0, 3}
        for core, state in states.items():
            np.testing.assert_array_equal(got[core], state)
            assert got[core].dtype == np.int16
        offsets = [fr.READ_STATES.unpack(p) for p in requests(peer, FrameType.READ_STATES)]
        assert offsets == [(0, 0), (0, 5), (0, 10), (3, 0)]
    finally:
        session.close()


def _state_lie(field: int, change):
    """Rewrite one header field of every STATE_DATA (0 core, 4 offset, 5 total; 6: drop the data)."""
    def lie(frame_type, payload):
        if frame_type != FrameType.STATE_DATA:
            return payload
        head = list(fr.STATE_DATA.unpack_from(payload))
        if field == 6:
            return fr.STATE_DATA.pack(*head)
        head[field] = change(head[field])
        return fr.STATE_DATA.pack(*head) + payload[fr.STATE_DATA.size:]
    return lie


@pytest.mark.parametrize("field, change", [(0, lambda core: core + 1), (4, lambda offset: offset + 1),
                                           (5, lambda total: total + 1), (5, lambda total: total - 1),
                                           (6, None)], ids=["core", "offset", "total+1", "total-1", "no data"])
def test_state_data_that_does_not_answer_the_request_is_a_protocol_error(field, change):
    peer = ReadBackPeer(states={0: np.ones((2, 2, 2), np.int16)}, lie=_state_lie(field, change))
    session = greeted(peer)
    try:
        with pytest.raises(ProtocolError, match="does not answer core 0 at 0"):
            session.read_states([0])
    finally:
        session.close()


@pytest.mark.parametrize("size", [0, 1, 1019, 1020, 1021, 2 * 1020, 2500])
def test_the_held_image_is_read_from_offset_0_until_a_reply_is_shorter_than_asked(size):
    """The peer announces 1,024-byte payloads: 1,020 image bytes a CONFIG_DATA."""
    image = bytes(np.random.default_rng(size).integers(0, 256, size, np.uint8))
    peer = ReadBackPeer(image=image)
    session = greeted(peer)
    try:
        assert session.held_image() == image
        asked = [fr.CONFIG_READ.unpack(p) for p in requests(peer, FrameType.CONFIG_READ)]
        assert asked == [(offset, 1020) for offset in range(0, size + 1, 1020)]
    finally:
        session.close()


@pytest.mark.parametrize("lie", [
    lambda payload: fr.CONFIG_OFFSET.pack(fr.CONFIG_OFFSET.unpack_from(payload)[0] + 1) + payload[4:],
    lambda payload: payload + b"\x00"], ids=["another offset", "more than asked"])
def test_config_data_that_does_not_answer_the_read_is_a_protocol_error(lie):
    peer = ReadBackPeer(image=bytes(2500), lie=lambda t, p: lie(p) if t == FrameType.CONFIG_DATA else p)
    session = greeted(peer)
    try:
        with pytest.raises(ProtocolError, match="read-back asked 1020 bytes at 0"):
            session.held_image()
    finally:
        session.close()


@pytest.mark.parametrize("field", [0, 1, 2], ids=["run id", "events in", "events out"])
def test_an_end_of_run_marker_that_does_not_match_the_run_is_a_protocol_error(field):
    def lie(frame_type, payload):
        if frame_type != FrameType.END_OF_RUN:
            return payload
        head = list(fr.EndOfRun.HEAD.unpack_from(payload))
        head[field] += 1
        return fr.EndOfRun.HEAD.pack(*head) + payload[fr.EndOfRun.HEAD.size:]
    peer = ReadBackPeer(lie=lie)
    session = greeted(peer)
    try:
        with pytest.raises(ProtocolError, match="end-of-run marker says"):
            session.run(make_events(10))
    finally:
        session.close()


def test_each_run_of_a_session_carries_its_own_run_id_at_begin_and_end():
    peer = ReadBackPeer()
    session = greeted(peer)
    try:
        ends = [session.run(make_events(5, seed))[1].run_id for seed in range(3)]
        begins = [fr.RUN_BEGIN.unpack(p)[0] for p in requests(peer, FrameType.RUN_BEGIN)]
        assert begins == ends and len(set(ends)) == 3
        assert [fr.RUN_END.unpack_from(p)[0] for p in requests(peer, FrameType.RUN_END)] == ends
    finally:
        session.close()


def test_a_request_before_the_handshake_is_refused():
    peer = ReadBackPeer()
    session = HostSession(open_port(peer.url), peer.url)
    try:
        with pytest.raises(DeviceReset, match="needs a new handshake"):
            session.status()
        assert requests(peer, FrameType.STATUS) == []
    finally:
        session.close()


def test_a_flash_read_back_shorter_than_asked_is_a_protocol_error():
    """The read-back after a flash asks for exactly the applied size: a short CONFIG_DATA is
    refused as such (not taken for the end of the image)."""
    image = bytes(range(256)) * 10
    assert greeted_flash(ReadBackPeer(image=image), image) == hashlib.sha256(image).hexdigest()
    short = ReadBackPeer(image=image, lie=lambda t, p: p[:-1] if t == FrameType.CONFIG_DATA else p)
    with pytest.raises(ProtocolError, match="read-back asked 1020 bytes at 0, got 1019 at 0"):
        greeted_flash(short, image)


def greeted_flash(peer: ReadBackPeer, image: bytes) -> str:
    session = greeted(peer)
    try:
        return session.flash(image)
    finally:
        session.close()
