"""Device-level tests against the device named by ``SPIKEFLASH_DEVICE`` (a device URL).

``SPIKEFLASH_DEVICE=emulate:pty`` starts ``spikeflash emulate --pty`` as a subprocess, reads
the pty path it prints and tests that, as a board on a serial port (``make test`` does this).
Any other value is opened as a URL (``emu://``, ``/dev/ttyACM0``, ``socket://host:port``,
``samna://speck2fdevkit:0``). Unset: every test here is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backend.devices import open_device
from backend.emulator.processes import device_under_test

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs the device named by SPIKEFLASH_DEVICE")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="set SPIKEFLASH_DEVICE to a device URL (or emulate:pty) to run")
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.hardware)
            if not os.environ.get("SPIKEFLASH_DEVICE"):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def device_url():
    """The URL under test; for ``emulate:pty`` a freshly started emulator's pty path."""
    with device_under_test(os.environ["SPIKEFLASH_DEVICE"]) as url:
        yield url


@pytest.fixture
def device(device_url):
    """An open device; closed (and stopped) after the test."""
    with open_device(device_url) as dev:
        yield dev
