"""Runs cut short on an emulator served on a pty and on TCP: a host-side timeout (the session
STOPs the device, which abandons the run between bounded steps), Ctrl-C (a real SIGINT) to
`spikeflash run` in a subprocess, and that process killed (SIGKILL: the next host's HELLO
abandons the run and discards its output). After each, the same device runs bit-exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.errors import RunTimeout
from backend.files.events import load_events, save_events
from backend.testing.qualification import qualification_config, random_input
from snnlib import simulate

ROOT = Path(__file__).resolve().parents[1]
LEAKY = qualification_config("fanout_leak")  # core 5 leaks on a 400 µs clock


def endless_input() -> np.ndarray:
    """Two events 10**12 µs apart: 2.5e9 leak ticks, hours of work for any device."""
    events = random_input(LEAKY.to_network(), 2, seed=7)
    events["t"] = [0, 10**12]
    return events


def assert_bit_exact(device) -> None:
    events = random_input(LEAKY.to_network(), 300, seed=8)
    device.reset()
    got = device.run(events, until_us=8000).events
    assert (got == simulate(LEAKY.to_network(), events, until_us=8000).events).all() and len(got)


@pytest.fixture(params=["pty", "tcp"])
def served(request):
    with ServedEmulator(EmulatorServer(), request.param) as served:
        yield served


def test_a_run_cut_by_timeout_is_stopped_and_the_next_run_is_bit_exact(served):
    with open_device(served.url) as device:
        device.flash(LEAKY)
        device.reset()
        with pytest.raises(RunTimeout, match="got no end-of-run marker within 0.5 s"):
            device.run(endless_input(), timeout=0.5, rasters=False)
        assert_bit_exact(device)  # STOP first: the device abandoned the run between steps
        assert device.status()["runs"] == 1


def running_ticks(served: ServedEmulator) -> bool:
    """Whether the served chip is stepping the leak ticks of the endless run."""
    engine = getattr(served.server.chip, "_engine", None)
    return engine is not None and engine.leak_ticks[0] > 10**6


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "backend.app.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def start_endless_cli_run(served: ServedEmulator, tmp_path: Path) -> subprocess.Popen:
    """`spikeflash run` of the endless input in a subprocess, returned once the run is going."""
    config, endless = tmp_path / "c.json", tmp_path / "endless.npz"
    LEAKY.save(config)
    save_events(endless, endless_input())
    cli = _cli("run", str(config), "--events", str(endless), "--device", served.url,
               "-o", str(tmp_path / "never.npz"))
    deadline = time.monotonic() + 60
    while not running_ticks(served):  # wait for the run to begin (imports take seconds)
        assert time.monotonic() < deadline and cli.poll() is None, cli.stderr.read()
        time.sleep(0.05)
    return cli


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_ctrl_c_in_spikeflash_run_leaves_the_device_ready(kind, tmp_path):
    events = random_input(LEAKY.to_network(), 300, seed=9)
    save_events(tmp_path / "short.npz", events)
    with ServedEmulator(EmulatorServer(), kind) as served:
        cli = start_endless_cli_run(served, tmp_path)
        cli.send_signal(signal.SIGINT)
        _, err = cli.communicate(timeout=30)
        assert cli.returncode == 130 and "interrupted" in err
        again = _cli("run", str(tmp_path / "c.json"), "--events", str(tmp_path / "short.npz"),
                     "--device", served.url, "-o", str(tmp_path / "out.npz"))
        out, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
    got = load_events(tmp_path / "out.npz")
    assert (got == simulate(LEAKY.to_network(), events).events).all() and len(got)
    assert not (tmp_path / "never.npz").exists()


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_a_killed_host_leaves_nothing_for_the_next_session(kind, tmp_path):
    with ServedEmulator(EmulatorServer(), kind) as served:
        cli = start_endless_cli_run(served, tmp_path)
        cli.kill()  # SIGKILL: no STOP, no close; the next host's HELLO abandons the run
        cli.communicate(timeout=30)
        with open_device(served.url) as device:
            device.flash(LEAKY)
            assert_bit_exact(device)  # flash and run answered: no stale frame was taken as a reply
