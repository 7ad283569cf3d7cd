"""Devices: the one :class:`Device` interface (``base``), opening devices by URL
(``registry``), and the device kinds: ``in_process`` (``emu://``), ``serial_port`` (boards
speaking the wire protocol over any pyserial URL) and ``samna_devkit`` (``samna://``)."""

from backend.devices.base import Counters, Device, DeviceInfo, RunResult
from backend.devices.registry import FoundDevice, list_devices, open_device

__all__ = ["Counters", "Device", "DeviceInfo", "FoundDevice", "RunResult", "list_devices", "open_device"]
