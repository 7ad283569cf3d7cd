"""The host side of the wire protocol over a pyserial port: handshake, configuration upload
with read-back, state reset / read-out, runs that end on the device's end-of-run marker.

A reader thread only reads the port and queues the bytes (or the exception that stopped it);
the calling thread decodes, acknowledges, retransmits and writes, so nothing blocks forever
and a reader failure is raised in the caller. Every wait has a monotonic deadline.
"""

from __future__ import annotations

import hashlib
import queue
import secrets
import select
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import numpy as np
import serial

from backend.errors import (
    DeviceDisconnected,
    DeviceError,
    DeviceReset,
    FlashError,
    FlashMismatch,
    FlashNotApplied,
    LinkTimeout,
    NoSensor,
    NotFlashed,
    OutputFlood,
    ProtocolError,
    RunTimeout,
    SessionEnded,
    VersionMismatch,
)
from backend.protocol import frames as fr
from backend.protocol.codec import MAX_PAYLOAD, Frame
from backend.protocol.frames import FrameType
from backend.protocol.link import Link
from backend.protocol.timing import (HANDSHAKE_TIMEOUT_S, LINK_RATE, POLL_SLICE_S, REQUEST_FLOOR_S,
                                     RTO_S, RUN_FLOOR_S, RUN_S_PER_EVENT)

#: bytes the reader takes per read
READ_SIZE = 1 << 20
#: reads the reader may queue before it stops reading (then the OS buffer and the link's
#: window hold the device back): the host buffers at most READ_QUEUE * READ_SIZE bytes
READ_QUEUE = 64
#: output events one run may return before the host gives up on a flooding device
MAX_OUTPUT_EVENTS = 1 << 26
#: frames the host lets the device send before acknowledging (announced in HELLO)
HOST_WINDOW = 16
#: device error codes with their own exception class; the others raise ProtocolError
ERROR_CLASSES = {fr.ErrorCode.CONFIG_INVALID: FlashError, fr.ErrorCode.NOT_CONFIGURED: NotFlashed}


class HostSession:
    """Talks to one device on an open pyserial ``port`` (switched to non-blocking reads).

    ``name``: shown in errors (the URL). ``rto`` (s), ``link_rate`` (bytes/s): see
    :mod:`backend.protocol.timing`.
    ``max_payload``: the largest frame payload the host accepts (bytes; smaller frames suit
    noisy links). ``clock``: monotonic seconds, injectable for tests.
    """

    def __init__(self, port: serial.SerialBase, name: str, *, rto: float = RTO_S,
                 link_rate: float = LINK_RATE, max_payload: int = MAX_PAYLOAD, clock: Callable[[], float] = time.monotonic):
        self.port, self.name, self.clock, self.max_payload = port, name, clock, max_payload
        port.timeout = 0  # the reader waits in select (or polls); reads never block
        self.greeting: Optional[fr.Greeting] = None
        self.needs_handshake = True
        self.runs = 0
        self._nonce = 0
        self._out_of_step = False  # a request was cut short: its replies may still come
        self._bytes: queue.Queue = queue.Queue(maxsize=READ_QUEUE)
        self._error: Optional[BaseException] = None
        self._closing = threading.Event()
        self.link = Link(self._write, self._receive, self._on_control, rto=rto, link_rate=link_rate, clock=clock)
        self.link.decoder.max_payload = max_payload  # what it announces, it accepts
        self._reader = threading.Thread(target=self._read_loop, name=f"spikeflash-reader {name}",
                                        daemon=True)
        self._reader.start()

    # -- transport ----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            fd = self.port.fileno() if hasattr(self.port, "fileno") else None
            while not self._closing.is_set():
                if fd is not None and not select.select([fd], [], [], POLL_SLICE_S)[0]:
                    continue
                data = self.port.read(READ_SIZE)  # non-blocking: what has arrived
                if data:
                    self._queue(data)
                elif fd is None:
                    time.sleep(0.001)
        except BaseException as exc:  # handed to the caller by _receive
            if not self._closing.is_set():
                self._queue(exc)

    def _queue(self, item) -> None:
        """Queue ``item`` for the caller, waiting while the queue is full (until closing)."""
        while not self._closing.is_set():
            try:
                return self._bytes.put(item, timeout=0.05)
            except queue.Full:
                continue

    def _receive(self, timeout: float) -> bytes:
        """Bytes the reader queued within ``timeout`` s; raises once the reader has failed
        (after the bytes it read before)."""
        if self._error is not None:
            raise self._disconnected(self._error)
        try:
            item = self._bytes.get(timeout=timeout) if timeout > 0 else self._bytes.get_nowait()
        except queue.Empty:
            return b""
        chunks = []
        while not isinstance(item, BaseException):
            chunks.append(item)
            try:
                item = self._bytes.get_nowait()
            except queue.Empty:
                return b"".join(chunks)
        self._error = item
        if not chunks:
            raise self._disconnected(item)
        return b"".join(chunks)

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except serial.SerialTimeoutException as exc:
            raise LinkTimeout(f"{self.name}: the device accepted no data for {self.port.write_timeout} s "
                              "(stalled: it is not reading)", counters=self.link.stats()) from exc
        except (serial.SerialException, OSError) as exc:
            raise self._disconnected(exc) from exc

    def _disconnected(self, exc: BaseException) -> DeviceDisconnected:
        self.needs_handshake = True
        return DeviceDisconnected(f"{self.name}: port closed or device unplugged ({exc})",
                                  counters=self.link.stats(),
                                  hint="check the cable, then open the device again")

    def _on_control(self, frame: Frame) -> None:
        if frame.type != FrameType.GREETING:
            return  # a host ignores HELLO
        greeting = fr.Greeting.unpack(frame.payload)
        if self.needs_handshake:
            if greeting.nonce == self._nonce:
                self.greeting = greeting
            return
        if greeting.boot_id == self.greeting.boot_id and greeting.nonce != 0:
            return  # same boot: a late answer to a repeated HELLO
        self.needs_handshake = True
        if greeting.boot_id == self.greeting.boot_id:
            raise SessionEnded(f"{self.name}: the device ended the session (it got no acknowledgement "
                               "for its frames); its configuration and states are kept",
                               counters=self.link.stats(), hint="repeat the operation: it greets again")
        raise DeviceReset(f"{self.name}: the device restarted (boot id {greeting.boot_id:#x}, "
                          f"was {self.greeting.boot_id:#x}); its configuration and states are gone",
                          counters=self.link.stats(), hint="greet it again and flash the configuration")

    # -- handshake ----------------------------------------------------------------------------
    def handshake(self, timeout: float = HANDSHAKE_TIMEOUT_S) -> fr.Greeting:
        """Greet the device (HELLO, repeated every ``rto``) and wait up to ``timeout`` s for
        its GREETING; both sequence spaces restart at 0."""
        self.needs_handshake, self.greeting = True, None
        self._nonce = secrets.randbits(32) | 1
        hello = fr.Hello(self._nonce, self.max_payload, HOST_WINDOW).pack()
        deadline = self.clock() + timeout
        while self.greeting is None:
            if self.clock() >= deadline:
                raise LinkTimeout(f"{self.name}: no GREETING within {timeout} s; is a spikeflash device "
                                  "(or `spikeflash emulate`) on this port?", counters=self.link.stats())
            self.link.send_control(FrameType.HELLO, hello)
            resend = min(deadline, self.clock() + self.link.rto)
            while self.greeting is None and self.clock() < resend:
                self.link.pump(min(POLL_SLICE_S, max(0.0, resend - self.clock())))
        greeting = self.greeting
        fr.check_announced(f"{self.name}: the device's GREETING", greeting.max_payload, greeting.window)
        if greeting.version != fr.PROTOCOL_VERSION:
            raise VersionMismatch(f"{self.name}: device speaks protocol version {greeting.version}, "
                                  f"this host {fr.PROTOCOL_VERSION}",
                                  hint="update the firmware or spikeflash")
        self.link.restart(window=greeting.window, max_payload=min(greeting.max_payload, self.max_payload))
        self.needs_handshake, self._out_of_step = False, False
        return greeting

    # -- request plumbing ---------------------------------------------------------------------
    def _deadline(self, n_bytes: int, floor: float = REQUEST_FLOOR_S) -> float:
        return self.clock() + floor + n_bytes / self.link.link_rate

    @contextmanager
    def _request(self) -> Iterator[None]:
        """Frame one request: after one that was cut short (error, Ctrl-C), first STOP the
        device and drain its stale replies, so no reply answers the wrong request."""
        if self.needs_handshake:
            raise DeviceReset(f"{self.name}: the link needs a new handshake", counters=self.link.stats())
        if self._out_of_step:
            self.stop()
            self._out_of_step = False
        try:
            yield
        except BaseException:
            self._out_of_step = True
            raise

    def _send(self, frame_type: FrameType, payload: bytes, deadline: float) -> None:
        self.link.send(frame_type, payload, deadline)

    def _expect(self, expected: FrameType, deadline: float, what: str) -> Frame:
        frame = self.link.recv(deadline)
        if frame is None:
            raise LinkTimeout(f"{self.name}: no {expected.name} for {what} before the deadline",
                              counters=self.link.stats())
        if frame.type == FrameType.ERROR:
            raise self._device_error(frame, what)
        if frame.type != expected:
            raise ProtocolError(f"{self.name}: got frame type 0x{frame.type:02x} while waiting for "
                                f"{expected.name} ({what})", counters=self.link.stats())
        return frame

    def _device_error(self, frame: Frame, what: str) -> DeviceError:
        code, _ = fr.unpack_struct(fr.ERROR, frame.payload, "ERROR")
        message = frame.payload[fr.ERROR.size:].decode("utf-8", "replace")
        name = fr.ErrorCode(code).name if code in set(fr.ErrorCode) else f"code {code}"
        return ERROR_CLASSES.get(code, ProtocolError)(
            f"{self.name}: device error {name} during {what}: {message}", counters=self.link.stats())

    # -- requests -----------------------------------------------------------------------------
    def flash(self, config: bytes) -> str:
        """Upload ``config`` (a configuration image, :mod:`.config_image`) in chunks, let the device apply it, read it
        back; return the sha256 hex digest the device reports for what it applied."""
        with self._request():
            deadline = self._deadline(3 * len(config))
            chunk = self.link.max_payload - fr.CONFIG_OFFSET.size
            sha = hashlib.sha256(config).digest()
            self._send(FrameType.CONFIG_BEGIN, fr.CONFIG_BEGIN.pack(len(config), sha), deadline)
            for offset in range(0, len(config), chunk):
                data = fr.CONFIG_OFFSET.pack(offset) + config[offset:offset + chunk]
                self._send(FrameType.CONFIG_CHUNK, data, deadline)
            self._send(FrameType.CONFIG_END, b"", deadline)
            reply = self._expect(FrameType.CONFIG_APPLIED, deadline, "flash").payload
            status, size, digest = fr.unpack_struct(fr.CONFIG_APPLIED, reply, "CONFIG_APPLIED")
            if status == fr.ConfigStatus.NOTHING_WRITTEN:
                raise FlashNotApplied(f"{self.name}: the device wrote nothing ({len(config)} bytes sent)",
                                      counters=self.link.stats(), hint="flash a non-empty configuration")
            held = hashlib.sha256(self._read_config(size, deadline)).digest()
            if held != digest:
                raise FlashMismatch(f"{self.name}: the device reports digest {digest.hex()[:16]}... but "
                                    f"reads back {held.hex()[:16]}...", counters=self.link.stats())
            return digest.hex()

    def held_image(self) -> bytes:
        """The configuration image the device holds (b"" for none): read with ``CONFIG_READ``
        from offset 0 until a reply is shorter than asked, at most ``MAX_CONFIG_BYTES``."""
        with self._request():
            parts, offset, chunk = [], 0, self.link.max_payload - fr.CONFIG_OFFSET.size
            while offset <= fr.MAX_CONFIG_BYTES:
                data = self._read_chunk(offset, chunk, self._deadline(chunk), exact=False)
                parts.append(data)
                offset += len(data)
                if len(data) < chunk:
                    return b"".join(parts)
            raise ProtocolError(f"{self.name}: the device reads back over {fr.MAX_CONFIG_BYTES} bytes of "
                                "configuration (the most an upload may announce)", counters=self.link.stats())

    def _read_config(self, size: int, deadline: float) -> bytes:
        parts, offset = [], 0
        while offset < size:
            length = min(size - offset, self.link.max_payload - fr.CONFIG_OFFSET.size)
            parts.append(self._read_chunk(offset, length, deadline, exact=True))
            offset += length
        return b"".join(parts)

    def _read_chunk(self, offset: int, length: int, deadline: float, exact: bool) -> bytes:
        """``CONFIG_READ(offset, length)``: the bytes of the reply (``exact``: exactly ``length``)."""
        self._send(FrameType.CONFIG_READ, fr.CONFIG_READ.pack(offset, length), deadline)
        data = self._expect(FrameType.CONFIG_DATA, deadline, "configuration read-back").payload
        (got,) = fr.unpack_struct(fr.CONFIG_OFFSET, data, "CONFIG_DATA")
        n = len(data) - fr.CONFIG_OFFSET.size
        if got != offset or n > length or (exact and n != length):
            raise ProtocolError(f"{self.name}: read-back asked {length} bytes at {offset}, got {n} at {got}",
                                counters=self.link.stats())
        return data[fr.CONFIG_OFFSET.size:]

    def reset_states(self) -> None:
        """Set every neuron state back to its initial value."""
        with self._request():
            deadline = self._deadline(0)
            self._send(FrameType.RESET_STATES, b"", deadline)
            self._expect(FrameType.OK, deadline, "reset")

    def read_states(self, cores: list[int]) -> dict[int, np.ndarray]:
        """Neuron states of ``cores``, int16 ``(f, h, w)`` each, read in chunks."""
        with self._request():
            return {core: self._read_core_states(core) for core in cores}

    def _read_core_states(self, core: int) -> np.ndarray:
        chunks, offset, total, shape = [], 0, None, None
        while total is None or offset < total:
            deadline = self._deadline(self.link.max_payload)
            self._send(FrameType.READ_STATES, fr.READ_STATES.pack(core, offset), deadline)
            payload = self._expect(FrameType.STATE_DATA, deadline, f"read_states(core {core})").payload
            got_core, f, h, w, got_offset, total = fr.unpack_struct(fr.STATE_DATA, payload, "STATE_DATA")
            chunk = np.frombuffer(payload, "<i2", offset=fr.STATE_DATA.size)
            stuck = not len(chunk) and offset < total
            if (got_core, got_offset, total) != (core, offset, f * h * w) or stuck:
                raise ProtocolError(f"{self.name}: STATE_DATA for core {got_core} at {got_offset} of {total} "
                                    f"does not answer core {core} at {offset}", counters=self.link.stats())
            chunks.append(chunk)
            offset += len(chunk)
            shape = (f, h, w)
        return np.concatenate(chunks).astype(np.int16).reshape(shape)

    def status(self) -> dict[str, int]:
        """The device's counters (:data:`frames.STATUS_FIELDS`)."""
        with self._request():
            deadline = self._deadline(0)
            self._send(FrameType.STATUS, b"", deadline)
            return fr.unpack_status(self._expect(FrameType.STATUS_DATA, deadline, "status").payload)

    def run(self, events: np.ndarray, timeout: Optional[float] = None,
            until_us: Optional[int] = None) -> tuple[np.ndarray, fr.EndOfRun]:
        """Send ``events`` (EVENT_DTYPE), stream the output events back until the device's
        end-of-run marker; return them (EVENT_DTYPE, device order) and the marker.
        ``until_us``: the device also applies the leak ticks up to this time (µs).
        ``timeout`` in s; None: ``RUN_FLOOR_S`` + the transfer at ``link_rate`` + ``RUN_S_PER_EVENT``
        per input event (:mod:`backend.protocol.timing`)."""
        fr.check_events_fit(events)
        if len(events) > fr.MAX_RUN_EVENTS:
            from snnlib.events import InvalidEventsError

            raise InvalidEventsError(f"{self.name}: {len(events)} input events; a run on the wire holds at "
                                     f"most {fr.MAX_RUN_EVENTS} (split the input into several runs)")
        if timeout is None:
            timeout = (RUN_FLOOR_S + 2 * 8 * len(events) / self.link.link_rate
                       + RUN_S_PER_EVENT * len(events))
        with self._request():
            deadline = self.clock() + timeout
            self.runs += 1
            run_id = self.runs & 0xFFFFFFFF
            self._send(FrameType.RUN_BEGIN, fr.RUN_BEGIN.pack(run_id, len(events)), deadline)
            for payload in fr.pack_events(events, self.link.max_payload):
                self._send(FrameType.EVENTS, payload, deadline)
            self._send(FrameType.RUN_END, fr.pack_run_end(run_id, until_us), deadline)
            received, end = self._collect_output(run_id, events, deadline, timeout)
            n_out = sum(fr.count_events(p) for p in received)
            if (end.run_id, end.events_in, end.events_out) != (run_id, len(events), n_out):
                raise ProtocolError(
                    f"{self.name}: end-of-run marker says run {end.run_id}, {end.events_in} events in, "
                    f"{end.events_out} out; host sent run {run_id} with {len(events)} events and received "
                    f"{n_out}", counters=self.link.stats())
            return fr.unpack_events(received), end

    def _collect_output(self, run_id: int, events: np.ndarray, deadline: float,
                        timeout: float) -> tuple[list[bytes], fr.EndOfRun]:
        received: list[bytes] = []
        n_received = 0
        while True:
            # the deadline is checked before every frame: a device that floods output still
            # times out (slack: the frames already read, at most READ_QUEUE * READ_SIZE bytes)
            frame = self.link.recv(deadline) if self.clock() < deadline else None
            if frame is None:
                raise RunTimeout(
                    f"{self.name}: run {run_id} got no end-of-run marker within {timeout:.1f} s; read "
                    f"{sum(fr.count_events(p) for p in received)} output events (last timestamp "
                    f"{last_timestamp(received)} µs), sent {len(events)} input events (last timestamp "
                    f"{int(events['t'][-1]) if len(events) else -1} µs)",
                    counters=self.link.stats(), hint="pass a longer timeout= if the network is large")
            if frame.type == FrameType.EVENTS:
                received.append(frame.payload)
                n_received += fr.count_events(frame.payload)
                if n_received > MAX_OUTPUT_EVENTS:
                    raise OutputFlood(f"{self.name}: run {run_id} sent over {MAX_OUTPUT_EVENTS} output events "
                                      f"({n_received} read) for {len(events)} input events",
                                      counters=self.link.stats(),
                                      hint="split the input into shorter runs, or monitor fewer layers")
            elif frame.type == FrameType.END_OF_RUN:
                return received, fr.EndOfRun.unpack(frame.payload)
            elif frame.type == FrameType.ERROR:
                raise self._device_error(frame, f"run {run_id}")
            else:
                raise ProtocolError(f"{self.name}: frame type 0x{frame.type:02x} inside run {run_id}",
                                    counters=self.link.stats())

    def stream(self, stop: threading.Event) -> Iterator[np.ndarray]:
        """The stream mode: ``STREAM``, then yield each output ``EVENTS`` batch (EVENT_DTYPE) as
        it arrives, until the device's ``END_OF_RUN`` (its sensor ended). Once ``stop`` is set
        the host sends ``STOP``; the device ends the stream with ``END_OF_RUN`` and answers
        ``OK``. The generator returns the marker, checked as a run's is. No deadline applies
        to a live sensor's silence; a device that goes away raises ``DeviceDisconnected``."""
        with self._request():
            self.runs += 1
            stream_id = self.runs & 0xFFFFFFFF
            self._send(FrameType.STREAM, fr.STREAM.pack(stream_id), self._deadline(0))
            n_out, stopping, end = 0, None, None
            while True:
                if stop.is_set() and stopping is None:
                    stopping = self._deadline(0)
                    self._send(FrameType.STOP, b"", stopping)
                frame = self.link.recv(min(stopping or float("inf"), self.clock() + POLL_SLICE_S))
                if frame is None:
                    if stopping is not None and self.clock() >= stopping:
                        raise LinkTimeout(f"{self.name}: stream {stream_id} did not end after STOP",
                                          counters=self.link.stats())
                elif frame.type == FrameType.EVENTS and end is None:
                    n_out += fr.count_events(frame.payload)
                    yield fr.unpack_events([frame.payload])
                elif frame.type == FrameType.END_OF_RUN and end is None:
                    end = fr.EndOfRun.unpack(frame.payload)
                    if (end.run_id, end.events_out) != (stream_id, n_out):
                        raise ProtocolError(f"{self.name}: end of stream {end.run_id} says {end.events_out} "
                                            f"events out; host began stream {stream_id} and received {n_out}",
                                            counters=self.link.stats())
                    if stopping is None:
                        return end
                elif frame.type == FrameType.OK and frame.payload == bytes([FrameType.STOP]) and end:
                    return end
                elif frame.type == FrameType.ERROR and end is None:
                    raise self._stream_error(frame, stream_id)
                else:
                    raise ProtocolError(f"{self.name}: frame type 0x{frame.type:02x} inside stream "
                                        f"{stream_id}", counters=self.link.stats())

    def _stream_error(self, frame: Frame, stream_id: int) -> DeviceError:
        """The error a device's ERROR answering ``STREAM`` means; no sensor, or a device
        without the stream mode (UNKNOWN_FRAME), is :class:`NoSensor`."""
        error = self._device_error(frame, f"stream {stream_id}")
        code, request = fr.unpack_struct(fr.ERROR, frame.payload, "ERROR")
        if request == FrameType.STREAM and code in (fr.ErrorCode.NO_SENSOR, fr.ErrorCode.UNKNOWN_FRAME):
            return NoSensor(f"{error.message}; this device has no sensor to stream from",
                            counters=self.link.stats(),
                            hint="start the emulator with --sensor FILE; a board needs firmware with the stream mode")
        return error

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the device to abandon any run or upload in progress; skip every frame still in
        flight up to its OK."""
        deadline = self.clock() + timeout
        self._send(FrameType.STOP, b"", deadline)
        while True:
            frame = self.link.recv(deadline) if self.clock() < deadline else None
            if frame is None:
                raise LinkTimeout(f"{self.name}: no OK for STOP within {timeout} s",
                                  counters=self.link.stats())
            if frame.type == FrameType.OK and frame.payload == bytes([FrameType.STOP]):
                return

    def close(self) -> None:
        """Stop the device (best effort, 1 s) and close the port. Safe to call twice."""
        if self._closing.is_set():
            return
        try:
            if not self.needs_handshake and self._error is None:
                self.stop()
        except DeviceError:
            pass
        finally:
            self._closing.set()
            if hasattr(self.port, "cancel_read"):
                self.port.cancel_read()
            self.port.close()
            self._reader.join(timeout=1.0)


def last_timestamp(payloads: list[bytes]) -> int:
    """Timestamp (µs) of the last event in ``EVENTS`` payloads; -1 if there are none."""
    for payload in reversed(payloads):
        events = fr.unpack_events([payload])
        if len(events):
            return int(events["t"][-1])
    return -1
