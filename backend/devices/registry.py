"""Opening devices by URL, and listing the devices this machine can open.

Device kinds are found lazily by URL scheme (as python-can's ``BACKENDS`` table does): a
driver module is imported only when a device of its kind is opened, so samna is never imported
unless a ``samna://`` device is asked for, and no driver imports this module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Optional

from backend.devices.base import Device
from backend.errors import UnsupportedURL


#: URL scheme -> (module, class), imported only when a device of that kind is opened.
DRIVERS = {
    "emu": ("backend.devices.in_process", "EmulatorDevice"),
    "samna": ("backend.devices.samna_devkit", "SamnaDevice"),
    "serial": ("backend.devices.serial_port", "SerialDevice"),
}


def open_device(url: str = "emu://", **options) -> Device:
    """Open a device by URL.

    ``emu://`` — the in-process emulator (default). ``samna://speck2fdevkit:0`` — a SynSense
    devkit through samna. A port path (``/dev/ttyACM0``, a pty) or a URL with one of pyserial's
    schemes (``socket://host:port``, ``rfc2217://host:port``, ...) is a board speaking the
    spikeflash wire protocol. Any other scheme raises :class:`UnsupportedURL` listing the known
    ones.
    """
    example = "such as 'emu://', '/dev/ttyACM0', 'socket://localhost:5000' or 'samna://speck2fdevkit:0'"
    if not isinstance(url, str) or not url:
        raise UnsupportedURL(f"open_device(url={url!r}): expected a URL {example}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else None  # None: a port path
    if scheme in ("emu", "samna"):
        kind = scheme
    elif scheme is None or scheme in pyserial_schemes():
        kind = "serial"
    else:
        known = ", ".join(f"{s}://" for s in sorted({"emu", "samna"} | pyserial_schemes()))
        raise UnsupportedURL(f"open_device(url={url!r}): unknown scheme {scheme!r}; known schemes: "
                             f"{known}, or a port path", hint=f"pass a URL {example}")
    module_name, class_name = DRIVERS[kind]
    driver = getattr(importlib.import_module(module_name), class_name)
    return driver(url, **options)


def pyserial_schemes() -> set[str]:
    """The URL schemes pyserial opens: one per ``protocol_<scheme>`` module in its handler
    packages (``serial.protocol_handler_packages``, which other packages may extend)."""
    import pkgutil

    import serial

    schemes = set()
    for package in serial.protocol_handler_packages:
        try:
            path = importlib.import_module(package).__path__
        except ImportError:  # a package listed there but not installed offers no schemes
            continue
        schemes |= {m.name.removeprefix("protocol_") for m in pkgutil.iter_modules(path)
                    if m.name.startswith("protocol_")}
    return schemes


@dataclass
class FoundDevice:
    """One entry of :func:`list_devices`. ``url``: what to pass to :func:`open_device`;
    ``kind``: "emulator", "serial" or "samna"; ``vid_pid``: USB ``"VVVV:PPPP"`` (hex) for
    USB serial ports; ``usable``: False for an entry that only says why a kind is missing."""

    url: str
    kind: str
    description: str
    vid_pid: Optional[str] = None
    usable: bool = True


def list_devices() -> list[FoundDevice]:
    """Devices this machine can open: the in-process emulator, emulators running as
    ``spikeflash emulate`` processes, every serial port (pyserial's
    listing, with VID:PID), and samna devkits when the real samna is installed. samna is only
    imported when it is the real library; otherwise one unusable entry says how to install it."""
    from serial.tools import list_ports

    from backend.emulator.processes import running_emulators
    from backend.devices.samna_support import import_samna, samna_status

    found = [FoundDevice("emu://", "emulator", "spikeflash emulator, in-process")]
    for pid, url in running_emulators():
        found.append(FoundDevice(url, "emulator", f"spikeflash emulate (pid {pid})"))
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        vid_pid = f"{port.vid:04X}:{port.pid:04X}" if port.vid is not None else None
        found.append(FoundDevice(port.device, "serial", port.description or port.device, vid_pid))
    status = samna_status()
    if not status.usable:
        found.append(FoundDevice("samna://", "samna", f"samna {status.state}: {status.hint}",
                                 usable=False))
        return found
    from backend.devices.samna_devkit import BOARDS, find_samna_devices

    for url in find_samna_devices(import_samna()):
        board = BOARDS[url.removeprefix("samna://").partition(":")[0]]
        found.append(FoundDevice(url, "samna", f"{board.type_name} ({board.chip})"))
    return found

