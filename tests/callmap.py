"""A pytest plugin for tests/mutate.py: which functions of snnlib, mapper and backend each test
file calls, recorded in the test process (and its threads) with a trace of calls only, no
lines (~2x a plain run; line coverage was ~5x slower on 2 cores).

    python -m pytest -p callmap ... # with tests/ on sys.path and SPIKEFLASH_CALLMAP=FILE

writes FILE: a JSON object ``{"PATH:QUALNAME": [TEST FILE, ...]}``, PATH relative to the
repository root and QUALNAME without ``<locals>`` (``Session.stream.worker``). Code run in
processes the tests start (an emulator on a pty) and numba-compiled code are not seen.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest
from mutate import PACKAGES, ROOT

_PREFIXES = tuple(f"{ROOT / package}{os.sep}" for package in PACKAGES)

_test_file: list[str] = [""]  # the test file running now ("" while collecting)
_calls: dict[tuple[str, str], set[str]] = {}


def _trace(frame, event, arg):
    code = frame.f_code
    if event == "call" and code.co_filename.startswith(_PREFIXES):
        _calls.setdefault((code.co_filename, code.co_qualname), set()).add(_test_file[0])
    return None  # no line events


def pytest_configure(config):
    sys.settrace(_trace)
    threading.settrace(_trace)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _test_file[0] = item.nodeid.split("::")[0]


def pytest_unconfigure(config):
    sys.settrace(None)
    threading.settrace(None)
    calls: dict[str, set[str]] = {}
    for (filename, qualname), files in _calls.items():
        key = f"{Path(filename).relative_to(ROOT)}:{qualname.replace('<locals>.', '')}"
        calls.setdefault(key, set()).update(files - {""})
    Path(os.environ["SPIKEFLASH_CALLMAP"]).write_text(
        json.dumps({key: sorted(files) for key, files in sorted(calls.items()) if files}))
