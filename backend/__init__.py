"""backend: devices by URL (emulator, serial wire protocol, samna), event streaming, and
hardware-versus-simulation comparison. samna is imported only when a ``samna://`` device
is opened."""

from backend.analysis.compare import Comparison, compare
from backend.devices import Counters, Device, DeviceInfo, RunResult, list_devices, open_device
from backend.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceReset,
    LinkTimeout,
    ProtocolError,
    RunTimeout,
)
from snnlib.events import EVENT_DTYPE, events_to_raster, raster_to_events

__all__ = [
    "EVENT_DTYPE", "Comparison", "Counters", "Device", "DeviceDisconnected", "DeviceError",
    "DeviceInfo", "DeviceReset", "LinkTimeout", "ProtocolError", "RunResult", "RunTimeout",
    "compare", "events_to_raster", "list_devices", "open_device", "raster_to_events",
]
