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
