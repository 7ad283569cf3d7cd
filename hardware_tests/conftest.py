"""Device-level tests against the device named by ``SPIKEFLASH_DEVICE`` (a device URL).

``SPIKEFLASH_DEVICE=emulate:pty`` starts ``spikeflash emulate --pty`` as a subprocess, reads
the pty path it prints and tests that, as a board on a serial port (``make test`` does this).
Any other value is opened as a URL (``emu://``, ``/dev/ttyACM0``, ``socket://host:port``,
``samna://speck2fdevkit:0``). Unset: every test here is skipped.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.device import open_device

HERE = Path(__file__).parent
#: seconds ``spikeflash emulate`` may take to print its address
EMULATOR_START_TIMEOUT = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs the device named by SPIKEFLASH_DEVICE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="set SPIKEFLASH_DEVICE to a device URL (or emulate:pty) to run")
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.hardware)
            if not os.environ.get("SPIKEFLASH_DEVICE"):
                item.add_marker(skip)


def _start_emulator() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "emulate", "--pty"],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline().split()
            if len(line) == 2 and line[0] == "PTY":
                return proc, line[1]
            break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"`spikeflash emulate --pty` did not print 'PTY <path>' within "
                       f"{EMULATOR_START_TIMEOUT} s (exit code {proc.returncode})")


@pytest.fixture(scope="session")
def device_url():
    """The URL under test; for ``emulate:pty`` a freshly started emulator's pty path."""
    url = os.environ["SPIKEFLASH_DEVICE"]
    if url != "emulate:pty":
        yield url
        return
    proc, path = _start_emulator()
    try:
        yield path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def device(device_url):
    """An open device; closed (and stopped) after the test."""
    with open_device(device_url) as dev:
        yield dev
