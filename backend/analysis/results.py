"""The results file of a dataset evaluation: JSON lines, crash-safe, resumable.

Line 1 is a header naming what the results are of (dataset fingerprint, config digest, output
layer, simulation and/or device); every further line is one sample's record, written to the
file as it arrives, so a driver killed at any moment loses only the samples in flight (a
half-written last line is dropped on resume). fsync runs with the first record after
:data:`FSYNC_INTERVAL_S` since the last one, and on close (one fsync costs milliseconds, more
than a small sample's simulation), so a power loss costs only the records since the last fsync. :meth:`ResultsFile.finish` rewrites the file
atomically with the records sorted by sample index, so two runs over the same data give the
same bytes whatever the scheduling and however often they were interrupted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

from backend.errors import DatasetError, EvaluationError

FORMAT = "spikeflash-evaluate/1"
#: least seconds between two fsyncs of the results file (a process kill loses nothing written)
FSYNC_INTERVAL_S = 0.5


def _line(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


class ResultsFile:
    """``path`` for the results described by ``header``. ``resume``: keep the records of an
    earlier run with the same header (in :attr:`done`, by sample index); without it an
    existing file is an error, never overwritten."""

    def __init__(self, path: str | os.PathLike, header: dict, resume: bool = False):
        self.path = Path(path)
        self.header = {"format": FORMAT, **header}
        self.done: dict[int, dict] = {}
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and not resume:
            raise EvaluationError(f"results={str(self.path)!r}: exists already",
                                  hint="pass resume=True (--resume) to continue it, or another path")
        if exists:
            exists = self._read()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a", encoding="utf-8")
        except OSError as exc:
            raise EvaluationError(f"results={str(self.path)!r}: cannot write ({exc})") from exc
        self._synced = float("-inf")
        if not exists:
            self._write(_line(self.header))

    def _read(self) -> bool:
        """Load the header and records; truncate a half-written last line. False when not even
        the header was written."""
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        if lines[-1]:  # no newline at the end: the driver died while writing it
            with open(self.path, "r+b") as f:
                f.truncate(len(raw) - len(lines[-1]))
        rows = []
        for number, line in enumerate(lines[:-1], 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DatasetError(f"results={str(self.path)!r}, line {number}: not JSON ({exc})",
                                   hint="the file is damaged; move it away and start over") from exc
        if not rows:
            return False
        for key, value in self.header.items():
            if rows[0].get(key) != value:
                raise DatasetError(
                    f"results={str(self.path)!r}: written for {key} = {rows[0].get(key)!r}, this "
                    f"run has {value!r}", hint="resume with the same config, data and options, or "
                    "write to another results path")
        self.done = {row["index"]: row for row in rows[1:]}
        return True

    def _write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()  # in the operating system's hands: survives this process
        if time.monotonic() - self._synced >= FSYNC_INTERVAL_S:
            os.fsync(self.file.fileno())
            self._synced = time.monotonic()

    def append(self, record: dict) -> None:
        """Add one sample's record: in the file (the operating system's cache) before this
        returns, on disk at the next fsync."""
        self._write(_line(record))

    def finish(self, records: list[dict]) -> None:
        """Rewrite the file as the header and ``records`` sorted by index, atomically."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines([_line(self.header), *(_line(r) for r in sorted(records, key=lambda r: r["index"]))])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def close(self) -> None:
        """fsync what was appended and close the file (it stays as written: resumable)."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()


def check_resumed(done: dict[int, dict], index: int, digest: str, path: Optional[Path]) -> Optional[dict]:
    """The earlier record of sample ``index`` (None when it has none); raises DatasetError when
    the sample changed since (its digest differs)."""
    record = done.get(index)
    if record is not None and record["sample"] != digest:
        raise DatasetError(f"results={str(path)!r}: sample {index} ({record['name']}) differs from "
                           "the one this file holds results for",
                           hint="the dataset changed; write to another results path")
    return record
