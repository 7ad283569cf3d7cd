"""Emulators as separate processes: start one on a pty (as a board is a separate device), and
let running ``spikeflash emulate`` servers announce themselves so ``list_devices`` finds them."""

from __future__ import annotations

import os
import select
import tempfile
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

#: seconds the emulator process may take to print its address (imports, numba cache load)
EMULATOR_START_TIMEOUT_S = 60.0


@contextmanager
def emulator_on_pty(timeout_s: float = EMULATOR_START_TIMEOUT_S) -> Iterator[str]:
    """Start the emulator on a fresh pseudo-terminal; yield its path (open it like
    ``/dev/ttyACM0``); stop the process on exit, also on errors and Ctrl-C."""
    with emulators_on_ptys(1, timeout_s) as paths:
        yield paths[0]


@contextmanager
def emulators_on_ptys(n: int, timeout_s: float = EMULATOR_START_TIMEOUT_S) -> Iterator[list[str]]:
    """A farm: ``n`` emulator processes, started together, each on its own pseudo-terminal;
    yield their paths; stop every process on exit."""
    processes = [subprocess.Popen([sys.executable, "-m", "backend.app.cli", "emulate", "--pty"],
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        lines = [_first_line(process, timeout_s) for process in processes]
        for line in lines:
            if not line.startswith("PTY "):
                raise RuntimeError(f"the emulator printed {line!r} instead of 'PTY <path>' "
                                   "(try `spikeflash emulate --pty` by hand)")
        yield [line.split(" ", 1)[1].strip() for line in lines]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
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


def _registry() -> Path:
    """Folder of announcements: one file per running emulator, named by pid, holding its URL."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / "spikeflash-emulators"


@contextmanager
def announced(url: str) -> Iterator[None]:
    """Announce this process's emulator at ``url`` while the block runs."""
    entry = _registry() / str(os.getpid())
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(url)
    try:
        yield
    finally:
        entry.unlink(missing_ok=True)


def running_emulators() -> list[tuple[int, str]]:
    """``(pid, url)`` of every announced emulator whose process is still alive."""
    found = []
    for entry in sorted(_registry().glob("*")) if _registry().is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            os.kill(int(entry.name), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)  # left behind by a killed emulator
            continue
        except PermissionError:
            pass  # alive, run by another user
        found.append((int(entry.name), entry.read_text().strip()))
    return found
