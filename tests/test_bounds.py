"""Sizes and rates a peer controls are bounded: values announced in the handshake, sizes
announced at the start of an upload or a run (checked before anything is kept, enforced while
data arrives), a device that floods output (the host's timeout holds and its buffering is
capped), and command-line numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from backend.app.cli import main
from backend.devices import open_device
from backend.emulator.chip import EmulatedChip, RunStats
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import FlashError, OutputFlood, ProtocolError, RunTimeout
from backend.protocol import frames as fr
from backend.protocol import session as session_module
from backend.protocol.frames import FrameType
from backend.testing.qualification import qualification_config, random_input
from snnlib import simulate

CONFIG = qualification_config("single_core")


class LyingServer(EmulatorServer):
    """Greets announcing ``announced`` as its max_payload (it accepts full frames)."""

    announced = 0

    def _greet(self, nonce: int) -> None:
        real, self.max_payload = self.max_payload, self.announced
        try:
            super()._greet(nonce)
        finally:
            self.max_payload = real


@pytest.mark.parametrize("max_payload", [4, 15, 63])
def test_a_greeting_with_a_tiny_max_payload_is_a_typed_error(max_payload, monkeypatch):
    monkeypatch.setattr(LyingServer, "announced", max_payload)
    with ServedEmulator(LyingServer(), "pty") as served:
        with pytest.raises(ProtocolError, match=rf"GREETING announces max_payload = {max_payload} bytes; "
                                                r"a peer must accept 64..65536"):
            open_device(served.url)


def request_run(device, n_announced: int, events: np.ndarray) -> None:
    """A run whose RUN_BEGIN announces ``n_announced`` events and whose EVENTS carry ``events``."""
    session = device.session
    with session._request():
        deadline = session.clock() + 5
        session._send(FrameType.RUN_BEGIN, fr.RUN_BEGIN.pack(1, n_announced), deadline)
        for payload in fr.pack_events(events, session.link.max_payload):
            session._send(FrameType.EVENTS, payload, deadline)
        session._send(FrameType.RUN_END, fr.pack_run_end(1), deadline)
        session._expect(FrameType.END_OF_RUN, deadline, "run")


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_announced_sizes_are_checked_first_and_enforced_while_data_arrives(kind):
    events = random_input(CONFIG.to_network(), 50, seed=1)
    with ServedEmulator(EmulatorServer(), kind) as served, open_device(served.url) as device:
        device.flash(CONFIG)
        with pytest.raises(ProtocolError, match=rf"RUN_BEGIN announces {fr.MAX_RUN_EVENTS + 1} events; "
                                                rf"a run holds at most {fr.MAX_RUN_EVENTS}"):
            request_run(device, fr.MAX_RUN_EVENTS + 1, events[:0])
        with pytest.raises(ProtocolError, match=r"EVENTS bring 50 events; RUN_BEGIN announced 3"):
            request_run(device, 3, events)
        session = device.session
        with session._request():
            deadline = session.clock() + 5
            session._send(FrameType.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(fr.MAX_CONFIG_BYTES + 1, bytes(32)), deadline)
            session._send(FrameType.CONFIG_END, b"", deadline)
            with pytest.raises(FlashError, match=rf"CONFIG_BEGIN announces {fr.MAX_CONFIG_BYTES + 1} bytes"):
                session._expect(FrameType.CONFIG_APPLIED, deadline, "flash")
        device.reset()
        assert (device.run(events).events == simulate(CONFIG.to_network(), events).events).all()


class FloodingChip(EmulatedChip):
    """A chip that answers every run with output events without end."""

    def steps(self, events, until_us=None):
        burst = np.zeros(4000, fr.EVENT_DTYPE)
        while True:
            yield burst, RunStats({0: 0}, {0: len(burst)})


def test_a_flooding_device_cannot_stretch_the_timeout_or_fill_the_host(monkeypatch):
    with ServedEmulator(EmulatorServer(FloodingChip), "tcp") as served, open_device(served.url) as device:
        device.flash(CONFIG)
        events = random_input(CONFIG.to_network(), 10, seed=2)
        with pytest.raises(RunTimeout, match=r"got no end-of-run marker within 1.0 s; read \d+ output events") as info:
            device.run(events, timeout=1.0, rasters=False)
        read = int(re.search(r"read (\d+) output events", str(info.value)).group(1))
        assert 0 < read < session_module.MAX_OUTPUT_EVENTS  # the deadline ended the flood, not the output limit
        monkeypatch.setattr(session_module, "MAX_OUTPUT_EVENTS", 20_000)
        with pytest.raises(OutputFlood, match=r"sent over 20000 output events \(2\d{4} read\) for 10 input"):
            device.run(events, timeout=60, rasters=False)
        assert device.status()["runs"] == 0  # STOP ended the flood; the device still answers


def test_cli_numbers_are_checked_with_one_line_errors(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["emulate", "--tcp", "70000"])
    assert exit_.value.code == 2
    assert "'70000': expected a TCP port number in 0..65535" in capsys.readouterr().err
