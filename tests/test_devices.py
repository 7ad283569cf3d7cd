"""Device discovery and samna detection: list_devices(), samna_status() without importing samna."""

from __future__ import annotations

import importlib
import sys

import pytest
from samna_standin import make_samna

from backend.devices import list_devices, open_device
from backend.devices.in_process import EmulatorDevice
from backend.errors import SamnaUnavailable, UnsupportedURL
from backend.devices.samna_support import import_samna, samna_status

STUB = '''PYPI_SAMNA = True
__gitlab_packages_index_url__ = "https://example.invalid/api/packages/pypi/simple"
raise RuntimeError("the stub was imported")
'''


def _install_package(monkeypatch, tmp_path, source: str, version: str) -> None:
    """A samna package on sys.path (and its dist-info), as pip would leave it."""
    (tmp_path / "samna").mkdir()
    (tmp_path / "samna" / "__init__.py").write_text(source)
    info = tmp_path / f"samna-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: samna\nVersion: {version}\n")
    monkeypatch.setitem(sys.modules, "samna", None)  # so that undo removes what a test imports
    monkeypatch.delitem(sys.modules, "samna")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def test_stub_detected_by_reading_not_importing(monkeypatch, tmp_path):
    _install_package(monkeypatch, tmp_path, STUB, "9.8.7")
    status = samna_status()
    assert status.state == "pypi-stub" and not status.usable
    assert status.version == "9.8.7"
    assert "pip install --force-reinstall samna==9.8.7 --index-url https://example.invalid/api/packages/pypi/simple" in status.hint
    with pytest.raises(SamnaUnavailable, match="stub"):
        import_samna()
    entries = [d for d in list_devices() if d.kind == "samna"]
    assert len(entries) == 1 and not entries[0].usable and "--index-url" in entries[0].description
    assert "samna" not in sys.modules


def test_real_samna_is_recognised_and_imported(monkeypatch, tmp_path):
    _install_package(monkeypatch, tmp_path, "__version__ = '0.50.0'\nREAL = True\n", "0.50.0")
    assert samna_status().state == "real"
    assert import_samna().REAL is True


def test_missing_samna_says_how_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "samna", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "site-packages" not in p])
    importlib.invalidate_caches()
    status = samna_status()
    assert status.state == "missing"
    assert "spikeflash[samna]" in status.hint


def test_list_devices_has_emulator_serial_ports_and_samna_devkits(monkeypatch):
    from serial.tools import list_ports
    from serial.tools.list_ports_common import ListPortInfo

    port = ListPortInfo("/dev/ttyACM7")
    port.vid, port.pid, port.description = 0x1234, 0xABCD, "Speck board"
    monkeypatch.setattr(list_ports, "comports", lambda: [port])
    monkeypatch.setitem(sys.modules, "samna", make_samna([("Speck2fDevKit", 2), ("Speck2eTestBoard", 4)]))
    found = {d.url: d for d in list_devices()}
    assert found["emu://"].kind == "emulator"
    assert all(d.usable for d in found.values())  # only an entry saying why samna is missing is not
    assert found["/dev/ttyACM7"].vid_pid == "1234:ABCD"
    assert found["/dev/ttyACM7"].description == "Speck board"
    assert found["samna://speck2fdevkit:0"].description == "Speck2fDevKit (speck2f)"
    assert found["samna://speck2e:0"].kind == "samna"


@pytest.mark.parametrize("url", ["", None, 42])
def test_open_device_rejects_non_urls(url):
    with pytest.raises(UnsupportedURL, match="expected a URL"):
        open_device(url)


def test_open_device_routes_emu():
    with open_device("emu://") as dev:
        assert isinstance(dev, EmulatorDevice)
        assert dev.info().kind == "emulator"


def test_emulator_url_must_be_bare():
    with pytest.raises(UnsupportedURL, match="emu://"):
        EmulatorDevice("emu://speck2e")


def test_list_devices_finds_emulator_processes_while_they_run(monkeypatch, tmp_path):
    from backend.emulator.processes import emulator_on_pty

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # inherited by the emulator process
    with emulator_on_pty() as path:
        listed = {d.url: d for d in list_devices()}
        assert path in listed and listed[path].kind == "emulator"
        assert "spikeflash emulate (pid" in listed[path].description
    assert path not in {d.url for d in list_devices()}
