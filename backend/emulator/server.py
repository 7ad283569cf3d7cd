"""The emulator as a device in software: an :class:`EmulatedChip` served over the wire
protocol on a pseudo-terminal or a loopback TCP port (``spikeflash emulate --pty | --tcp PORT``).

One thread, one loop: read what arrives, answer each in-order frame, write the replies.
Writes have a deadline, so a host that vanishes never blocks the emulator. A run goes in
bounded steps (``EmulatedChip.steps``); between steps the emulator reads the link, so a
``STOP`` abandons the run and a new ``HELLO`` starts a new session that receives nothing of
the old one (a run in progress is abandoned and its output discarded).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import select
import signal
import socket
import threading
import time
import tty
from typing import Callable, Optional

import numpy as np

from backend.emulator.chip import RunStats
from backend.errors import LinkRestarted, LinkTimeout, ProtocolError
from backend.protocol import frames as fr
from backend.protocol.codec import MAX_PAYLOAD, Frame
from backend.protocol.frames import ErrorCode, FrameType
from backend.protocol.link import Link
from backend.protocol.timing import POLL_SLICE_S, RTO_S
from snnlib.engine import compile_ahead
from snnlib.errors import SpikeflashError

#: frames inside an open multi-frame transaction, whose errors are answered at its end
UPLOAD_BODY = frozenset({FrameType.CONFIG_BEGIN, FrameType.CONFIG_CHUNK})
RUN_BODY = frozenset({FrameType.RUN_BEGIN, FrameType.EVENTS})
#: seconds a write may wait for the host to read before the session is dropped
WRITE_DEADLINE = 5.0


class Rebooted(SpikeflashError):
    """Raised inside the serving loop when :meth:`EmulatorServer.reboot` was requested; the
    loop catches it and boots again (it never reaches a caller)."""


class PeerClosed(SpikeflashError):
    """The host closed the connection (TCP) or the stream failed; the loop catches it and
    waits for the next host (it never reaches a caller)."""


class EmulatorServer:
    """Serves the chip made by ``make_chip()`` (an ``EmulatedChip``) over one byte stream at a
    time. ``window``/``max_payload``: what it announces it can receive; ``rto``: base
    retransmission timeout in s."""

    def __init__(self, make_chip: Optional[Callable[[], object]] = None, *, window: int = 16,
                 max_payload: int = MAX_PAYLOAD, rto: float = RTO_S):
        if make_chip is None:
            from backend.emulator.chip import EmulatedChip as make_chip
        self.make_chip, self.window, self.max_payload, self.rto = make_chip, window, max_payload, rto
        self.counters = dict.fromkeys(fr.STATUS_FIELDS, 0)
        self._reboot = threading.Event()
        self._boot()

    def _boot(self) -> None:
        self.chip = self.make_chip()
        self.boot_id = secrets.randbits(32)
        self.counters.update(boot_id=self.boot_id, runs=0, events_in=0, events_out=0, dropped=0)
        self.in_session = False
        self.applied = b""
        self._upload: Optional[bytearray] = None
        self._announced: tuple[int, bytes] = (0, b"")  # CONFIG_BEGIN's size and sha256
        self._run: Optional[tuple[int, int, list[bytes]]] = None
        self._deferred: Optional[tuple[int, str]] = None  # first error inside a transaction
        self._greeted_at = -1e9

    def reboot(self) -> None:
        """Power-cycle the emulated device (thread-safe): configuration and states are lost,
        it greets unasked, sequence numbers restart."""
        self._reboot.set()

    # -- serving ------------------------------------------------------------------------------
    def serve_fd(self, fd: int, stop: threading.Event) -> None:
        """Serve the byte stream on ``fd`` until ``stop`` is set (which cuts even a request
        short, as pulling the plug would) or the peer closes it."""
        def receive(timeout: float) -> bytes:
            if stop.is_set():
                raise PeerClosed
            if self._reboot.is_set():
                raise Rebooted
            readable, _, _ = select.select([fd], [], [], timeout)
            if not readable:
                return b""
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                return b""
            except OSError as exc:
                raise PeerClosed from exc
            if not data:
                raise PeerClosed
            return data

        def write(data: bytes) -> None:
            if stop.is_set():
                raise PeerClosed
            if self._reboot.is_set():
                raise Rebooted
            view, deadline = memoryview(data), time.monotonic() + WRITE_DEADLINE
            while view:
                _, writable, _ = select.select([], [fd], [], max(0.0, deadline - time.monotonic()))
                if not writable:
                    raise LinkTimeout(f"host read nothing for {WRITE_DEADLINE} s")
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise PeerClosed from exc

        os.set_blocking(fd, False)  # a write never blocks past WRITE_DEADLINE
        self.link = Link(write, receive, self._on_control, rto=self.rto)
        self.link.decoder.max_payload = self.max_payload  # what it announces, it accepts
        announce = True  # a device greets unasked when it starts
        while not stop.is_set():
            try:
                if announce:
                    announce = False
                    self._greet(0)
                received = self.link.counters["frames_rx"]
                self.link.pump(POLL_SLICE_S)
                if not self.in_session and self.link.counters["frames_rx"] != received:
                    self._greet_unasked()  # any frame out of session, in order or not
                while self.link.inbox:
                    self._answer(self.link.inbox.popleft())
            except Rebooted:
                self._reboot.clear()
                self._boot()
                self.link.restart(window=1, max_payload=0)
                announce = True
            except PeerClosed:
                return
            except LinkTimeout:  # retransmissions ran out: end the session and say so
                self.in_session = False
                self.link.restart(window=1, max_payload=0)
                self._greet(0)
            finally:
                self.counters.update(frames_rx=self.link.counters["frames_rx"],
                                     frames_tx=self.link.counters["frames_tx"],
                                     retransmits=self.link.counters["retransmits"],
                                     rejected_frames=self.link.decoder.counters.rejected)

    def _greet_unasked(self) -> None:
        """The nonce-0 greeting that answers frames outside a session (at most every 0.2 s)."""
        if time.monotonic() - self._greeted_at > 0.2:
            self._greet(0)

    def _greet(self, nonce: int) -> None:
        self._greeted_at = time.monotonic()
        info = self.chip.info
        self.link.send_control(FrameType.GREETING, fr.Greeting(
            nonce, self.boot_id, self.max_payload, self.window, info.chip, info.firmware).pack())

    def _on_control(self, frame: Frame) -> None:
        if frame.type != FrameType.HELLO:
            return
        try:
            hello = fr.Hello.unpack(frame.payload)
            fr.check_announced("HELLO", hello.max_payload, hello.window)
        except ProtocolError:  # not a host this device can serve: no session
            return
        self._greet(hello.nonce)
        self.link.restart(window=hello.window, max_payload=min(hello.max_payload, MAX_PAYLOAD))
        self.in_session = hello.version == fr.PROTOCOL_VERSION  # else the host learns our version
        self._upload, self._run, self._deferred = None, None, None

    # -- requests -----------------------------------------------------------------------------
    def _reply(self, frame_type: FrameType, payload: bytes = b"") -> None:
        self.link.send(frame_type, payload, time.monotonic() + WRITE_DEADLINE)

    def _answer(self, frame: Frame) -> None:
        if not self.in_session:  # e.g. after a reboot: make the host notice
            self._greet_unasked()
            return
        handler = self._HANDLERS.get(frame.type)
        try:
            if handler is None:
                raise _Refused(ErrorCode.UNKNOWN_FRAME, f"frame type 0x{frame.type:02x} is not a request")
            handler(self, frame.payload)
        except (Rebooted, PeerClosed, LinkTimeout):
            raise
        except LinkRestarted:  # a new session began: nothing more of this request is sent
            return
        except Exception as exc:  # a bad request must never stop the device
            code, message = self._error_of(frame.type, exc)
            inside = ((frame.type in UPLOAD_BODY and self._upload is not None)
                      or (frame.type in RUN_BODY and self._run is not None))
            if inside:  # answered once, at the transaction's end
                self._deferred = self._deferred or (code, f"{FrameType(frame.type).name}: {message}")
            else:
                self._send_error(frame.type, code, message)

    @staticmethod
    def _error_of(frame_type: int, exc: Exception) -> tuple[int, str]:
        if isinstance(exc, _Refused):
            return exc.code, str(exc)
        if frame_type == FrameType.CONFIG_END and isinstance(exc, ValueError):
            code = ErrorCode.CONFIG_INVALID
        elif isinstance(exc, (ProtocolError, ValueError)):
            code = ErrorCode.BAD_PAYLOAD
        else:
            code = ErrorCode.INTERNAL
        return code, f"{type(exc).__name__}: {exc}"

    def _send_error(self, request: int, code: int, message: str) -> None:
        """ERROR answering the frame of type ``request``."""
        limit = self.link.max_payload - fr.ERROR.size
        self._reply(FrameType.ERROR, fr.ERROR.pack(code, request) + message.encode()[:limit])

    def _end_transaction(self, request: FrameType) -> bool:
        """Answer a deferred error at a transaction's last frame; True if there was one."""
        error, self._deferred = self._deferred, None
        if error is not None:
            self._send_error(request, *error)
        return error is not None

    def _refuse_open_transaction(self, request: FrameType) -> None:
        """A BEGIN while a transaction is open: abandon it and refuse the BEGIN."""
        if self._upload is not None or self._run is not None:
            what = "an upload" if self._upload is not None else "a run"
            self._upload, self._run, self._deferred = None, None, None
            raise _Refused(ErrorCode.BAD_STATE, f"{request.name} while {what} is open; both are "
                                                "abandoned (send STOP, then start again)")

    def _config_begin(self, payload: bytes) -> None:
        self._refuse_open_transaction(FrameType.CONFIG_BEGIN)
        self._upload, self._deferred = bytearray(), None  # open, even if the payload is bad
        self._announced = fr.unpack_struct(fr.CONFIG_BEGIN, payload, "CONFIG_BEGIN")
        if self._announced[0] > fr.MAX_CONFIG_BYTES:  # chunks past the announced size are refused
            raise _Refused(ErrorCode.CONFIG_INVALID, f"CONFIG_BEGIN announces {self._announced[0]} bytes; "
                           f"the device accepts at most {fr.MAX_CONFIG_BYTES}")

    def _config_chunk(self, payload: bytes) -> None:
        if self._upload is None:
            raise _Refused(ErrorCode.BAD_STATE, "CONFIG_CHUNK outside an upload (send CONFIG_BEGIN first)")
        (offset,) = fr.unpack_struct(fr.CONFIG_OFFSET, payload, "CONFIG_CHUNK")
        data = payload[fr.CONFIG_OFFSET.size:]
        if offset != len(self._upload) or offset + len(data) > self._announced[0]:
            raise _Refused(ErrorCode.CONFIG_INVALID,
                           f"CONFIG_CHUNK of {len(data)} bytes at offset {offset}: chunks must follow each "
                           f"other ({len(self._upload)} bytes so far) within the {self._announced[0]} "
                           "bytes CONFIG_BEGIN announced")
        self._upload += data

    def _config_end(self, payload: bytes) -> None:
        if self._upload is None:
            raise _Refused(ErrorCode.BAD_STATE, "CONFIG_END outside an upload (send CONFIG_BEGIN first)")
        upload, self._upload = self._upload, None
        if self._end_transaction(FrameType.CONFIG_END):
            return
        size, sha = self._announced
        if len(upload) != size or hashlib.sha256(upload).digest() != sha:
            raise _Refused(ErrorCode.CONFIG_INVALID,
                           f"received {len(upload)} bytes with sha256 {hashlib.sha256(upload).hexdigest()[:16]}"
                           f"...; CONFIG_BEGIN announced {size} bytes with sha256 {sha.hex()[:16]}...")
        if not upload:
            nothing = fr.CONFIG_APPLIED.pack(fr.ConfigStatus.NOTHING_WRITTEN, 0, bytes(32))
            self._reply(FrameType.CONFIG_APPLIED, nothing)
            return
        digest = self.chip.apply_image(bytes(upload))
        self.applied = bytes(upload)  # the image, verbatim, for read-back
        self._reply(FrameType.CONFIG_APPLIED,
                    fr.CONFIG_APPLIED.pack(fr.ConfigStatus.APPLIED, len(self.applied), bytes.fromhex(digest)))

    def _config_read(self, payload: bytes) -> None:
        offset, length = fr.unpack_struct(fr.CONFIG_READ, payload, "CONFIG_READ")
        length = min(length, self.link.max_payload - fr.CONFIG_OFFSET.size)
        data = self.applied[offset:offset + length]
        self._reply(FrameType.CONFIG_DATA, fr.CONFIG_OFFSET.pack(offset) + data)

    def _reset_states(self, payload: bytes) -> None:
        self._require_config()
        self.chip.reset()
        self._reply(FrameType.OK, bytes([FrameType.RESET_STATES]))

    def _read_states(self, payload: bytes) -> None:
        self._require_config()
        core, offset = fr.unpack_struct(fr.READ_STATES, payload, "READ_STATES")
        states = self.chip.read_states()
        if core not in states:
            raise _Refused(ErrorCode.UNKNOWN_CORE, f"core {core} is not configured (cores: {sorted(states)})")
        f, h, w = states[core].shape
        flat = np.ascontiguousarray(states[core], "<i2").reshape(-1)
        n = (self.link.max_payload - fr.STATE_DATA.size) // 2
        self._reply(FrameType.STATE_DATA,
                    fr.STATE_DATA.pack(core, f, h, w, offset, flat.size) + flat[offset:offset + n].tobytes())

    def _run_begin(self, payload: bytes) -> None:
        self._refuse_open_transaction(FrameType.RUN_BEGIN)
        self._run, self._deferred, self._run_received = (-1, 0, []), None, 0  # open, even if refused below
        self._require_config()
        run_id, n_events = fr.unpack_struct(fr.RUN_BEGIN, payload, "RUN_BEGIN")
        if n_events > fr.MAX_RUN_EVENTS:
            raise _Refused(ErrorCode.BAD_EVENTS, f"RUN_BEGIN announces {n_events} events; a run holds "
                           f"at most {fr.MAX_RUN_EVENTS}")
        self._run = (run_id, n_events, [])
        self._run_received = 0

    def _events(self, payload: bytes) -> None:
        if self._run is None:
            raise _Refused(ErrorCode.BAD_STATE, "EVENTS outside a run (send RUN_BEGIN first)")
        body = len(payload) - fr.EVENT_BATCH_HEADER.size
        if body < 0 or body % fr.WIRE_EVENT.itemsize:
            raise ProtocolError(f"EVENTS payload of {len(payload)} bytes; expected 8 + 8 n")
        self._run_received += body // fr.WIRE_EVENT.itemsize
        if self._run_received > self._run[1]:  # nothing beyond what RUN_BEGIN announced is kept
            raise _Refused(ErrorCode.BAD_EVENTS, f"EVENTS bring {self._run_received} events; RUN_BEGIN "
                           f"announced {self._run[1]}")
        self._run[2].append(payload)

    def _run_end(self, payload: bytes) -> None:
        if self._run is None:
            raise _Refused(ErrorCode.BAD_STATE, "RUN_END outside a run (send RUN_BEGIN first)")
        (run_id,) = fr.unpack_struct(fr.RUN_END, payload, "RUN_END")
        until_us = fr.run_until(payload)
        if self._end_transaction(FrameType.RUN_END):
            self._run = None
            return
        if self._run[0] != run_id:
            self._run = None
            raise _Refused(ErrorCode.BAD_STATE, f"RUN_END for run {run_id}, which was not begun")
        _, n_expected, payloads = self._run
        self._run = None
        events = fr.unpack_events(payloads)
        if len(events) != n_expected:
            raise _Refused(ErrorCode.BAD_EVENTS,
                           f"run {run_id} announced {n_expected} events, got {len(events)}")
        try:
            self.chip.check_input(events)
        except ValueError as exc:
            raise _Refused(ErrorCode.BAD_EVENTS, f"run {run_id}: {exc}") from exc
        steps = self.chip.steps(events, until_us)
        stats, n_out, cut = self._stream_output(steps)
        if cut:  # a STOP or a new session abandons a run: no END_OF_RUN
            return
        self._end_run(run_id, len(events), n_out, stats)

    def _stream(self, payload: bytes) -> None:
        """The live mode: run the chip on its sensor, streaming output EVENTS, until the
        recording ends or a STOP arrives; either way END_OF_RUN closes the stream (a STOP is
        then answered OK by the loop). A new HELLO abandons it with no END_OF_RUN."""
        self._refuse_open_transaction(FrameType.STREAM)
        self._require_config()
        (stream_id,) = fr.unpack_struct(fr.STREAM, payload, "STREAM")
        if self.chip.sensor is None:
            raise _Refused(ErrorCode.NO_SENSOR, "this device has no sensor (start the emulator with "
                                                "--sensor FILE)")
        try:
            steps = self.chip.stream(lambda s: self.link.pump(min(s, POLL_SLICE_S)))
        except ValueError as exc:
            raise _Refused(ErrorCode.BAD_EVENTS, f"stream {stream_id}: the sensor's recording: {exc}") from exc
        stats, n_out, cut = self._stream_output(steps)
        if cut == "session":
            return
        self._end_run(stream_id, stats.n_in, n_out, stats)

    def _stream_output(self, steps) -> tuple[RunStats, int, Optional[str]]:
        """Send the output of a run's or a stream's ``steps`` as EVENTS, reading the link
        between steps; return the counters, the output count and what cut it short: None
        (nothing), "stop" (a STOP waits in the inbox) or "session" (a new HELLO: nothing more
        of it may be sent)."""
        n_out, stats, session = 0, RunStats(), self.link.generation
        for out, step in steps:
            for batch in fr.pack_events(out, self.link.max_payload):
                self._reply(FrameType.EVENTS, batch)
            n_out += len(out)
            stats.add(step)
            self.link.pump(0)  # a STOP or a new HELLO abandons the run between steps
            if self.link.generation != session:
                return stats, n_out, "session"
            if any(f.type == FrameType.STOP for f in self.link.inbox):
                return stats, n_out, "stop"
        return stats, n_out, None

    def _end_run(self, run_id: int, n_in: int, n_out: int, stats: RunStats) -> None:
        """Count a run or stream that ended (``n_in`` input events, ``n_out`` output events)
        and send its END_OF_RUN."""
        self.counters["runs"] += 1
        self.counters["events_in"] += n_in
        self.counters["events_out"] += n_out
        self.counters["dropped"] += stats.dropped
        self._reply(FrameType.END_OF_RUN, fr.EndOfRun(run_id, n_in, n_out, stats.last_t, stats.dropped,
                                                      0, stats.events_in, stats.events_out).pack())

    def _status(self, payload: bytes) -> None:
        self._reply(FrameType.STATUS_DATA, fr.pack_status(self.counters))

    def _stop(self, payload: bytes) -> None:
        self._upload, self._run, self._deferred = None, None, None
        self._reply(FrameType.OK, bytes([FrameType.STOP]))

    def _require_config(self) -> None:
        if not self.applied:
            raise _Refused(ErrorCode.NOT_CONFIGURED, "no configuration applied; flash one first")

    _HANDLERS = {
        FrameType.CONFIG_BEGIN: _config_begin, FrameType.CONFIG_CHUNK: _config_chunk,
        FrameType.CONFIG_END: _config_end, FrameType.CONFIG_READ: _config_read,
        FrameType.RESET_STATES: _reset_states, FrameType.READ_STATES: _read_states,
        FrameType.RUN_BEGIN: _run_begin, FrameType.EVENTS: _events, FrameType.RUN_END: _run_end,
        FrameType.STATUS: _status, FrameType.STOP: _stop, FrameType.STREAM: _stream,
    }


class _Refused(SpikeflashError):
    """A request the device refuses; answered to the host as an ERROR frame with ``code``."""

    def __init__(self, code: ErrorCode, message: str):
        self.code = code
        super().__init__(message)


# -- transports -----------------------------------------------------------------------------
class ServedEmulator:
    """An :class:`EmulatorServer` serving on a thread; ``url`` is what a host opens
    (a pty path or ``socket://127.0.0.1:PORT``). Close it (or use ``with``) to stop it;
    :meth:`unplug` drops the host at once, as pulling the cable would."""

    def __init__(self, server: EmulatorServer, kind: str = "pty", port: int = 0):
        if kind not in ("pty", "tcp"):
            raise ValueError(f"ServedEmulator(kind={kind!r}): expected 'pty' or 'tcp'")
        self.server, self.kind = server, kind
        compile_ahead()  # before the host can connect: its first run's deadline is not for compiling
        self._stop = threading.Event()
        if kind == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no echo, no line editing: bytes pass unchanged
            self.url = os.ttyname(self._slave)
            target = self._serve_pty
        else:
            self._listener = socket.create_server(("127.0.0.1", port))
            host, bound = self._listener.getsockname()[:2]
            self.url = f"socket://{host}:{bound}"
            target = self._serve_tcp
        self._thread = threading.Thread(target=target, name=f"spikeflash-emulator {self.url}",
                                        daemon=True)
        self._thread.start()

    def _serve_pty(self) -> None:
        # the emulator keeps the slave end open, so a host closing it never ends the pty;
        # closing the master end when serving stops hangs the pty up for the host
        try:
            self.server.serve_fd(self._master, self._stop)
        finally:
            os.close(self._master)

    def _serve_tcp(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.server.in_session = False
                self.server.serve_fd(conn.fileno(), self._stop)

    def unplug(self) -> None:
        """Stop serving at once, even mid-request (thread-safe, returns immediately): the pty
        hangs up / the TCP connection closes, and the host sees a disconnect."""
        self._stop.set()

    def close(self) -> None:
        """Stop serving and release the pty / socket. Safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._thread = None
        if self.kind == "pty":
            os.close(self._slave)
        else:
            self._listener.close()

    def __enter__(self) -> "ServedEmulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def emulate(kind: str, port: int = 0, sensor: Optional[str] = None, fast: bool = False) -> int:
    """``spikeflash emulate``: serve until interrupted; print ``PTY <path>`` or
    ``TCP <host>:<port>`` on stdout (one flushed line) once ready. ``sensor``: an event file
    the emulated sensor replays in the stream mode (``fast``: as fast as possible, else at the
    recorded pace)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on SIGTERM too
    import mapper  # noqa: F401  the chip model (torch, numba) loads before "ready", not in the
    import snnlib  # noqa: F401  first flash, whose 2 s deadline a loaded machine would miss
    from backend.emulator.chip import EmulatedChip
    from backend.emulator.processes import announced
    from backend.emulator.sensor import ReplaySensor

    replay = None if sensor is None else ReplaySensor.load(sensor, fast=fast)
    server = EmulatorServer(lambda: EmulatedChip(sensor=replay))
    with ServedEmulator(server, kind, port) as served, announced(served.url):
        label = served.url if kind == "pty" else served.url.removeprefix("socket://")
        print(f"{kind.upper()} {label}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
