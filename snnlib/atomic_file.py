"""Writing a file so that it is either complete or untouched: the data goes to a temporary
file in the same directory, which replaces the target only once it is fully written (an
interrupted or failed write leaves the old content and no partial file)."""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that add one keep
    it); on a clean exit it is flushed to disk and renamed onto ``path``, on an exception
    (Ctrl-C included) it is removed and ``path`` is left as it was."""
    target = Path(path)
    temporary = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.tmp{target.suffix}")
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()
