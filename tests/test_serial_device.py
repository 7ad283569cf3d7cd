"""SerialDevice through a real pseudo-terminal, opened with pyserial exactly as a board."""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_session import CONFIG, CountingChip, make_events, relabel

from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import (
    DeviceDisconnected,
    DeviceNotFound,
    DeviceOpenError,
    DeviceReset,
    LinkTimeout,
    VersionMismatch,
)
from backend.testing.qualification import qualification_config, random_input
from backend.protocol.frames import PROTOCOL_VERSION
from backend.protocol.session import HostSession
from backend.devices.serial_port import SerialDevice, open_port


@pytest.fixture
def pty_emulator():
    with ServedEmulator(EmulatorServer(CountingChip, rto=0.05), "pty") as served:
        yield served


def test_open_by_pty_path_greets_and_closes(pty_emulator):
    with open_device(pty_emulator.url) as device:
        assert isinstance(device, SerialDevice)
        info = device.info()
        assert (info.kind, info.chip, info.protocol_version) == ("serial", "counting", PROTOCOL_VERSION)
        reader = device.session._reader
    assert not device.session.port.is_open and not reader.is_alive()
    device.close()  # twice is fine


def test_a_busy_port_is_a_typed_open_error(pty_emulator):
    with open_device(pty_emulator.url):
        with pytest.raises(DeviceOpenError, match="cannot open") as info:
            open_device(pty_emulator.url)
        assert "another program" in str(info.value)


def test_missing_port_and_refused_socket_are_device_not_found():
    with pytest.raises(DeviceNotFound, match="no such port.*hint"):
        open_device("/dev/ttyNOSUCHPORT9")
    with pytest.raises(DeviceNotFound, match="nothing listens"):
        open_device("socket://127.0.0.1:1")


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_a_closed_emulator_serves_no_more_and_closes_twice_quietly(kind):
    served = ServedEmulator(EmulatorServer(), kind)
    with open_device(served.url):
        pass
    served.close()
    served.close()
    with pytest.raises(DeviceNotFound):  # the pty is gone / nothing listens on the port
        open_device(served.url)


def test_a_silent_port_fails_the_handshake_and_is_released():
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        with pytest.raises(LinkTimeout, match="no GREETING"):
            SerialDevice(path, handshake_timeout=0.3)
        open_port(path).close()  # not left locked
    finally:
        os.close(master)
        os.close(slave)


def test_runs_through_the_pty_and_survives_garbage_on_the_line(pty_emulator):
    session = HostSession(open_port(pty_emulator.url), pty_emulator.url, rto=0.05)
    try:
        session.handshake()
        session.flash(CONFIG)
        os.write(pty_emulator._master, b"\xc0 boot noise \xdb\xc0")  # device-side noise
        events = make_events(50_000, 3)
        out, end = session.run(events)
        np.testing.assert_array_equal(out, relabel(events))
        assert end.events_out == 50_000 and session.link.stats()["dropped_bytes"] > 0
    finally:
        session.close()


def test_emulator_going_away_mid_run_raises_device_disconnected(on_run):
    served = ServedEmulator(EmulatorServer(CountingChip), "pty")
    session = HostSession(open_port(served.url), served.url)
    session.handshake()
    session.flash(CONFIG)
    on_run(served.unplug)
    try:
        with pytest.raises(DeviceDisconnected):
            session.run(make_events(100_000), timeout=10)
    finally:
        session.close()
        served.close()


def test_ctrl_c_mid_run_leaves_the_device_stopped_and_usable(pty_emulator, on_run):
    session = HostSession(open_port(pty_emulator.url), pty_emulator.url, rto=0.05)
    session.handshake()
    session.flash(CONFIG)
    interrupted = threading.Event()

    def ctrl_c_once():
        if not interrupted.is_set():
            interrupted.set()
            _thread.interrupt_main()

    on_run(ctrl_c_once)
    try:
        with pytest.raises(KeyboardInterrupt):
            session.run(make_events(200_000))
    finally:
        on_run(lambda: None)
        session.close()  # sends STOP, waits for OK, closes the port
    assert not session.port.is_open
    again = HostSession(open_port(pty_emulator.url), pty_emulator.url)
    again.handshake()
    again.flash(CONFIG)
    events = make_events(1000, 9)
    np.testing.assert_array_equal(again.run(events)[0], relabel(events))
    again.close()


@pytest.mark.parametrize("option", [["--pty"], ["--tcp", "0"]])
def test_spikeflash_emulate_prints_its_address_and_serves(option):
    proc = subprocess.Popen([sys.executable, "-m", "backend.app.cli", "emulate", *option],
                            stdout=subprocess.PIPE, text=True)
    try:
        kind, where = proc.stdout.readline().split()
        assert kind == option[0].removeprefix("--").upper()
        url = where if kind == "PTY" else f"socket://{where}"
        for _ in range(2):  # a second host after the first closed
            with open_device(url) as device:
                assert device.info().firmware.startswith("spikeflash-emulator")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_serial_device_flashes_runs_and_resets_like_emu():
    config = qualification_config("fanout_leak", 1)
    network = config.to_network()
    events = random_input(network, 2000, seed=4)
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as board, \
            open_device("emu://") as emu:
        for device in (board, emu):
            device.flash(config)
        got, want = board.run(events), emu.run(events)
        np.testing.assert_array_equal(got.events, want.events)
        assert got.rasters.keys() == want.rasters.keys()
        for name in got.rasters:
            assert got.rasters[name].equal(want.rasters[name])
        assert (board.counters.sent, board.counters.received) == (len(events), len(want.events))
        assert board.counters.core_in == emu.counters.core_in
        assert board.counters.core_out == emu.counters.core_out
        states = board.read_states()
        assert states.keys() == emu.read_states().keys()
        for core, state in emu.read_states().items():
            np.testing.assert_array_equal(states[core], state)
        board.reset()
        for core, state in board.read_states().items():
            initial = network.layers[core].initial_state
            np.testing.assert_array_equal(state, 0 if initial is None else initial)


def test_after_a_device_restart_the_next_run_greets_and_reflashes():
    config = qualification_config("pooled_chain", 2)
    events = random_input(config.to_network(), 1500, seed=5)
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as board, \
            open_device("emu://") as emu:
        board.flash(config)
        emu.flash(config)
        board.run(events[:700])
        emu.run(events[:700])
        served.server.reboot()
        with pytest.raises(DeviceReset, match="restarted"):
            board.status()
        emu.reset()  # the restarted board starts from initial states
        np.testing.assert_array_equal(board.run(events).events, emu.run(events).events)
        assert board.status()["runs"] == 1  # the run after the restart, on the re-flashed config


def test_a_configuration_for_another_chip_is_refused():
    config = qualification_config("single_core", 0, chip="speck2e")
    with ServedEmulator(EmulatorServer(), "pty") as served, open_device(served.url) as board:
        with pytest.raises(VersionMismatch, match="device is a speck2f.*for speck2e"):
            board.flash(config)


def test_a_slow_uart_link_rate_stretches_the_deadlines(pty_emulator):
    from backend.protocol.timing import LINK_RATE, REQUEST_FLOOR_S

    with open_device(pty_emulator.url, baudrate=115200, link_rate=115200 // 10) as device:
        link = device.session.link
        assert (link.link_rate, LINK_RATE) == (11_520, 1_000_000)
        now = device.session.clock()
        # 115,200 bytes take 10 s at 11.5 kB/s, not the 0.12 s the 1 MB/s default allows
        assert device.session._deadline(115_200) - now >= REQUEST_FLOOR_S + 10.0
