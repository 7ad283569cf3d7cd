"""A board (or ``spikeflash emulate``) speaking the spikeflash wire protocol over any pyserial
URL: a port path (``/dev/ttyACM0``, a pty), ``socket://host:port``, ``rfc2217://host:port``."""

from __future__ import annotations

import errno
import socket
import threading
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import serial

from backend.devices.base import Device, DeviceInfo
from backend.errors import DeviceNotFound, DeviceOpenError, FlashMismatch
from backend.protocol.codec import MAX_PAYLOAD
from backend.protocol.config_image import encode_image, image_digest
from backend.protocol.session import HostSession
from backend.protocol.timing import BAUDRATE, HANDSHAKE_TIMEOUT_S, LINK_RATE, RTO_S, WRITE_TIMEOUT_S

if TYPE_CHECKING:
    from backend.devices.stream import DVSFilter
    from mapper import ChipConfig


def open_port(url: str, baudrate: int = BAUDRATE) -> serial.SerialBase:
    """Open ``url`` with pyserial; raise :class:`DeviceNotFound` / :class:`DeviceOpenError`
    with a fix hint instead of pyserial's generic error."""
    try:
        port = serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=WRITE_TIMEOUT_S,
                                     **({} if "://" in url else {"exclusive": True}))
        sock = getattr(port, "_socket", None)  # socket:// : send each frame at once (no Nagle)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return port
    except (serial.SerialException, OSError, ValueError) as exc:
        code, text = getattr(exc, "errno", None), str(exc)
        if code == errno.ENOENT:
            raise DeviceNotFound(f"{url}: no such port ({text})",
                                 hint="list ports with `spikeflash devices`; start an emulator with "
                                      "`spikeflash emulate --pty`") from exc
        if "Connection refused" in text:
            raise DeviceNotFound(f"{url}: nothing listens there ({text})",
                                 hint="start `spikeflash emulate --tcp PORT` or check host and port") from exc
        if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
            raise DeviceOpenError(f"{url}: permission denied ({text})",
                                  hint="add your user to the 'dialout' group (Linux), then log in again"
                                  ) from exc
        raise DeviceOpenError(f"{url}: cannot open ({text})",
                              hint="is another program (or another spikeflash) using the port?") from exc


class SerialDevice(Device):
    """A device on the wire protocol. Opening greets it (handshake); a device that restarted
    raises :class:`DeviceReset` once, and the next operation greets it again and re-flashes
    the last configuration. ``max_payload``: the largest frame payload the host accepts (bytes;
    smaller frames suit noisy links). ``baudrate``, ``rto`` (s), ``link_rate`` (bytes/s; pass
    ``baudrate // 10`` for a real UART) and ``handshake_timeout`` (s) default to
    :mod:`backend.protocol.timing`."""

    def __init__(self, url: str, *, baudrate: int = BAUDRATE, rto: float = RTO_S,
                 link_rate: float = LINK_RATE, max_payload: int = MAX_PAYLOAD,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S):
        super().__init__(url)
        port = open_port(url, baudrate)
        if hasattr(port, "reset_input_buffer"):
            port.reset_input_buffer()  # whatever an earlier session left behind
        self.session = HostSession(port, url, rto=rto, link_rate=link_rate, max_payload=max_payload)
        try:
            self.greeting = self.session.handshake(handshake_timeout)
        except BaseException:
            self.session.close()
            raise

    def info(self) -> DeviceInfo:
        g = self.greeting
        return DeviceInfo(self.url, "serial", g.chip, g.firmware, g.version,
                          ("flash-verify", "read-states", "reset-states", "config-readback", "status"))

    def status(self) -> dict[str, int]:
        """The device's own counters (runs, events in/out, dropped, frames, retransmits...)."""
        self._resync()
        return self.session.status()

    def _resync(self) -> None:
        """After a device restart: greet again and re-apply the configuration."""
        if not self.session.needs_handshake:
            return
        self.greeting = self.session.handshake()
        if self.config is not None:
            applied = self.session.flash(encode_image(self.config))
            if applied != self._digest(self.config):
                raise FlashMismatch(f"{self.url}: re-flashing after a restart applied {applied[:16]}...",
                                    counters=self.counters)

    def _flash(self, config: "ChipConfig") -> str:
        self._resync()
        return self.session.flash(encode_image(config))

    def _digest(self, config: ChipConfig) -> str:
        return image_digest(encode_image(config))

    def _held_digest(self) -> Optional[str]:
        self._resync()
        image = self.session.held_image()
        return image_digest(image) if image else None

    def _reset(self) -> None:
        self._resync()
        self.session.reset_states()

    def _read_states(self) -> dict[int, np.ndarray]:
        self._resync()
        return self.session.read_states(sorted(self.config.to_network().layers))

    def _run_events(self, events: np.ndarray, timeout: Optional[float],
                    until_us: Optional[int] = None) -> np.ndarray:
        self._resync()
        try:
            out, end = self.session.run(events, timeout, until_us)
        finally:
            self.counters.link = self.session.link.stats()
        self.counters.add_run(len(events), len(out), end.dropped + end.overflow, end.core_in, end.core_out)
        return out

    def _stream(self, stop: threading.Event, dvs_filter: Optional[DVSFilter]) -> Iterator[np.ndarray]:
        if dvs_filter is not None:
            raise ValueError("stream(dvs_filter=...): the wire protocol carries no sensor settings; only a "
                             "samna devkit's sensor has a DVS filter")
        self._resync()
        try:
            end = yield from self.session.stream(stop)
        finally:
            self.counters.link = self.session.link.stats()
        self.counters.add_run(end.events_in, 0, end.dropped + end.overflow, end.core_in, end.core_out)

    def _close(self) -> None:
        self.session.close()

