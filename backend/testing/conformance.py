"""A frame-level client for checking a device against docs/protocol.md, rule by rule
(``hardware_tests/test_protocol_conformance.py``, what a board vendor runs on its firmware).

Unlike :class:`backend.protocol.session.HostSession` it sends any frame, well-formed or not,
stray or out of order, and hands back the device's replies one at a time; the go-back-N link
underneath (:class:`backend.protocol.link.Link`) acknowledges and retransmits as the protocol
says. :meth:`WireClient.raw_frames` reads without acknowledging, to watch a device give up.
"""

from __future__ import annotations

import secrets
import time
from typing import Callable, Optional

from backend.devices.serial_port import open_port
from backend.errors import ProtocolError
from backend.protocol import frames as fr
from backend.protocol.codec import MAX_PAYLOAD, Frame, FrameDecoder
from backend.protocol.frames import FrameType
from backend.protocol.link import Link
from backend.protocol.timing import RTO_S


class ConformanceError(ProtocolError, AssertionError):
    """The device under test broke a rule of docs/protocol.md.

    Example scenarios:
      - no reply to a request within its deadline, or a reply of another type
      - a greeting whose nonce or version does not answer the HELLO
    """


class WireClient:
    """One connection to the device at ``url``. ``max_payload`` / ``window``: what this client
    announces it receives (small by default, so replies page); ``rto``: retransmission timeout, s."""

    def __init__(self, url: str, *, max_payload: int = 256, window: int = 4, rto: float = RTO_S):
        self.url, self.max_payload, self.window = url, max_payload, window
        self.port = open_port(url)
        if hasattr(self.port, "reset_input_buffer"):
            self.port.reset_input_buffer()
        self.port.timeout = 0
        self.greetings: list[fr.Greeting] = []
        self.link = Link(self.port.write, self._receive, self._on_control, rto=rto)

    def _receive(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            data = self.port.read(1 << 16)
            if data or time.monotonic() >= deadline:
                return data
            time.sleep(0.001)

    def _on_control(self, frame: Frame) -> None:
        if frame.type == FrameType.GREETING:
            self.greetings.append(fr.Greeting.unpack(frame.payload))

    # -- session ----------------------------------------------------------------------------
    def hello(self, version: int = fr.PROTOCOL_VERSION, timeout: float = 3.0) -> fr.Greeting:
        """Send HELLO (``version``) until the GREETING with its nonce comes; on a matching
        version start the session (both sequence spaces at 0)."""
        nonce = secrets.randbits(32) | 1
        hello = fr.Hello(nonce, self.max_payload, self.window, version).pack()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.link.send_control(FrameType.HELLO, hello)
            until = min(deadline, time.monotonic() + self.link.rto)
            while time.monotonic() < until:
                self.link.pump(0.02)
                answer = [g for g in self.greetings if g.nonce == nonce]
                if answer:
                    if answer[0].version == version:
                        self.link.restart(window=answer[0].window,
                                          max_payload=min(answer[0].max_payload, MAX_PAYLOAD))
                    self.greetings.clear()
                    return answer[0]
        raise ConformanceError(f"{self.url}: no GREETING with nonce {nonce:#x} within {timeout} s")

    # -- frames -----------------------------------------------------------------------------
    def send(self, frame_type: int, payload: bytes = b"", timeout: float = 5.0) -> None:
        """Send one sequenced frame of any type and payload."""
        self.link.send(frame_type, payload, time.monotonic() + timeout)

    def reply(self, timeout: float = 5.0) -> Frame:
        """The device's next sequenced frame; ConformanceError if none comes in ``timeout`` s."""
        frame = self.link.recv(time.monotonic() + timeout)
        if frame is None:
            raise ConformanceError(f"{self.url}: no reply within {timeout} s")
        if len(frame.payload) > self.max_payload:
            raise ConformanceError(f"{self.url}: a {len(frame.payload)}-byte payload (type {frame.type:#04x}); "
                                   f"this client announced max_payload {self.max_payload}")
        return frame

    def request(self, frame_type: int, payload: bytes = b"", timeout: float = 5.0) -> Frame:
        """Send one frame and return the next frame the device sends."""
        self.send(frame_type, payload, timeout)
        return self.reply(timeout)

    def nothing_within(self, seconds: float) -> list[Frame]:
        """Pump the link for ``seconds``; the sequenced frames that came (normally none)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.link.pump(0.02)
        frames = list(self.link.inbox)
        self.link.inbox.clear()
        return frames

    def raw_frames(self, seconds: float, until: Optional[Callable[[Frame], bool]] = None) -> list[Frame]:
        """Frames (control ones too) read for ``seconds`` without acknowledging any, or until
        ``until(frame)`` holds for one."""
        decoder, frames = FrameDecoder(), []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            frames += decoder.feed(self._receive(0.02))
            if until is not None and frames and until(frames[-1]):
                break
        return frames

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_then_stop(client: WireClient, stream_id: int, seconds: float) -> list[Frame]:
    """Send ``STREAM(stream_id)``, read for ``seconds``, send ``STOP``; return every sequenced
    frame the device sent, up to and including the ``OK`` that answers the ``STOP``."""
    client.send(FrameType.STREAM, fr.STREAM.pack(stream_id))
    frames = client.nothing_within(seconds)
    client.send(FrameType.STOP)
    while not frames or (frames[-1].type, frames[-1].payload) != (FrameType.OK, bytes([FrameType.STOP])):
        frames.append(client.reply())
    return frames


def error_of(frame: Frame) -> tuple[int, int, str]:
    """``(code, request type, message)`` of an ERROR frame; ConformanceError for another frame."""
    if frame.type != FrameType.ERROR:
        raise ConformanceError(f"expected an ERROR frame, got type {frame.type:#04x} ({frame.payload[:32]!r})")
    code, request = fr.unpack_struct(fr.ERROR, frame.payload, "ERROR")
    return code, request, frame.payload[fr.ERROR.size:].decode("utf-8", "replace")
