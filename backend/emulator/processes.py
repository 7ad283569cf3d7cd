"""Emulators as separate processes: start one on a pty (as a board is a separate device), and
let running ``spikeflash emulate`` servers announce themselves so ``list_devices`` finds them."""

from __future__ import annotations

import os
import re
import select
import stat
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
def emulator_on_pty(timeout_s: float = EMULATOR_START_TIMEOUT_S, options: tuple[str, ...] = ()) -> Iterator[str]:
    """Start the emulator on a fresh pseudo-terminal; yield its path (open it like
    ``/dev/ttyACM0``); stop the process on exit, also on errors and Ctrl-C. ``options``: more
    ``spikeflash emulate`` arguments, e.g. ``("--sensor", "rec.npz", "--fast")``."""
    with _emulator_processes(1, "pty", timeout_s, options) as paths:
        yield paths[0]


@contextmanager
def device_under_test(url: str) -> Iterator[str]:
    """``url`` as it is, or for ``emulate:pty`` (the test suites' default device) the path of
    an emulator started on a fresh pseudo-terminal for the duration of the block."""
    if url != "emulate:pty":
        yield url
        return
    with emulator_on_pty() as path:
        yield path


@contextmanager
def emulator_on_tcp(timeout_s: float = EMULATOR_START_TIMEOUT_S) -> Iterator[str]:
    """Start the emulator process on a free loopback TCP port; yield its
    ``socket://127.0.0.1:PORT`` URL; stop the process on exit."""
    with _emulator_processes(1, "tcp", timeout_s) as urls:
        yield urls[0]


@contextmanager
def emulators_on_ptys(n: int, timeout_s: float = EMULATOR_START_TIMEOUT_S) -> Iterator[list[str]]:
    """A farm: ``n`` emulator processes, started together, each on its own pseudo-terminal;
    yield their paths; stop every process on exit."""
    with _emulator_processes(n, "pty", timeout_s) as paths:
        yield paths


@contextmanager
def _emulator_processes(n: int, kind: str, timeout_s: float,
                        options: tuple[str, ...] = ()) -> Iterator[list[str]]:
    """``n`` ``spikeflash emulate`` processes on ``kind`` ("pty" or "tcp"), started together
    (``options``: more arguments); yield the URL each printed; stop every process on exit."""
    where = ["--pty"] if kind == "pty" else ["--tcp", "0"]
    processes = [subprocess.Popen([sys.executable, "-m", "backend.app.cli", "emulate", *where, *options],
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
    try:
        lines = [_first_line(process, timeout_s) for process in processes]
        label = kind.upper()
        for line in lines:
            if not line.startswith(f"{label} "):
                raise RuntimeError(f"the emulator printed {line!r} instead of '{label} <address>' "
                                   f"(try `spikeflash emulate {' '.join(where)}` by hand)")
        addresses = [line.split(" ", 1)[1].strip() for line in lines]
        yield addresses if kind == "pty" else [f"socket://{address}" for address in addresses]
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
    raise RuntimeError(f"the emulator did not print its address within {timeout_s:.0f} s")


def _registry() -> Path:
    """Folder of announcements, one file per running emulator named by its pid and holding its
    URL: ``$XDG_RUNTIME_DIR/spikeflash-emulators``, else ``<tmp>/spikeflash-emulators-<uid>``;
    created owner-only (0700)."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "spikeflash-emulators"
    return Path(tempfile.gettempdir()) / f"spikeflash-emulators-{os.getuid()}"


def _owned_folder(folder: Path) -> bool:
    """Whether ``folder`` is a real directory (not a symlink) owned by this user, no one
    else may write or read in (mode 0700)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


@contextmanager
def announced(url: str) -> Iterator[None]:
    """Announce this process's emulator at ``url`` while the block runs. The folder is made
    owner-only; a folder someone else owns or opened up is left alone (nothing is announced),
    and the entry is created without following symlinks."""
    folder = _registry()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        pass
    entry = folder / str(os.getpid())
    written = False
    if _owned_folder(folder):
        entry.unlink(missing_ok=True)  # a planted entry (even a symlink) is removed, not followed
        fd = os.open(entry, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(url)
        written = True
    try:
        yield
    finally:
        if written:
            entry.unlink(missing_ok=True)


def running_emulators() -> list[tuple[int, str]]:
    """``(pid, url)`` of every announced emulator whose process is still alive; entries that
    are not plain files of this user holding a pty path or a socket:// URL are ignored."""
    folder = _registry()
    if not _owned_folder(folder):
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        info = os.lstat(entry)
        if not entry.name.isdigit() or not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            continue
        try:
            os.kill(int(entry.name), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)  # left behind by a killed emulator
            continue
        except PermissionError:
            continue  # another user's process: not an emulator this user started
        url = entry.read_text(errors="replace").strip()
        if re.fullmatch(r"/dev/pts/\d+|socket://127\.0\.0\.1:\d{1,5}", url):
            found.append((int(entry.name), url))
    return found
