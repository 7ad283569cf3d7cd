"""Run ``spikeflash emulate --pty`` as a separate process, as a board would be a separate device."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

#: seconds the emulator process may take to print its address (imports, numba cache load)
EMULATOR_START_TIMEOUT_S = 60.0


@contextmanager
def emulator_on_pty(timeout_s: float = EMULATOR_START_TIMEOUT_S) -> Iterator[str]:
    """Start the emulator on a fresh pseudo-terminal; yield its path (open it like
    ``/dev/ttyACM0``); stop the process on exit, also on errors and Ctrl-C."""
    process = subprocess.Popen([sys.executable, "-m", "backend.cli", "emulate", "--pty"],
                               stdout=subprocess.PIPE, text=True)
    try:
        line = _first_line(process, timeout_s)
        if not line.startswith("PTY "):
            raise RuntimeError(f"the emulator printed {line!r} instead of 'PTY <path>' "
                               "(try `spikeflash emulate --pty` by hand)")
        yield line.split(" ", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _first_line(process: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.2)[0]:
            return process.stdout.readline()
        if process.poll() is not None:
            raise RuntimeError(
                f"the emulator process exited with status {process.returncode} before it was ready"
            )
    raise RuntimeError(f"the emulator did not print its pty path within {timeout_s:.0f} s")
