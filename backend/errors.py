"""The backend's exception tree: everything a device can do wrong is a :class:`DeviceError`.

Timeouts also subclass the builtin :class:`TimeoutError`, so ``except TimeoutError`` works.
Each error may carry the link/device ``counters`` at the moment it was raised and a ``hint``
that says what to do.
"""

from __future__ import annotations

from typing import Any, Optional


class DeviceError(Exception):
    """Base class: talking to a device failed."""

    def __init__(self, message: str, *, counters: Optional[Any] = None, hint: Optional[str] = None):
        self.counters = counters
        self.hint = hint
        text = message if hint is None else f"{message} (hint: {hint})"
        super().__init__(text)


class UnsupportedURL(DeviceError, ValueError):
    """The device URL has a form no driver understands."""


class DeviceNotFound(DeviceError):
    """No device answers at that URL (missing port, no devkit plugged in)."""


class DeviceOpenError(DeviceError):
    """The device exists but cannot be opened (busy, permission denied)."""


class SamnaUnavailable(DeviceError):
    """A ``samna://`` device was asked for but the real samna library is not installed."""


class ProtocolError(DeviceError):
    """The device sent something that breaks the wire protocol (bad frame, unexpected reply)."""


class PartialFrame(ProtocolError):
    """The byte stream ended in the middle of a frame; ``received`` bytes of it had arrived."""

    def __init__(self, received: int, **kw):
        self.received = received
        super().__init__(f"stream ended mid-frame after {received} bytes", **kw)


class VersionMismatch(ProtocolError):
    """The device speaks another protocol version or reports another chip than expected."""


class LinkTimeout(DeviceError, TimeoutError):
    """The device did not answer within the deadline."""


class RunTimeout(LinkTimeout):
    """A run did not end with the device's end-of-run marker before the deadline."""


class DeviceReset(DeviceError):
    """The device restarted (greeting or sequence restart seen); its configuration is gone."""


class DeviceDisconnected(DeviceError):
    """The port closed or the device vanished (unplugged)."""


class FlashError(DeviceError):
    """Writing a configuration to the device failed verification."""


class FlashNotApplied(FlashError):
    """The device reports that nothing was written (empty or unchanged configuration)."""


class FlashMismatch(FlashError):
    """The device applied a configuration whose digest differs from the one sent."""


class NotFlashed(DeviceError):
    """An operation needs a configuration, but none has been flashed to this device."""
