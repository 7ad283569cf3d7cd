"""A fault-injecting TCP relay for testing the wire protocol (and qualifying hosts).

``FaultyLink(("127.0.0.1", device_port))`` listens on a loopback port; a host opens
``link.url`` (``socket://...``) and every byte it exchanges with the device passes through
two relay threads that cut the stream into random pieces of 1..``piece`` bytes and, with the
seeded probabilities of :class:`Faults`, drop, duplicate, hold back (reorder), bit-flip or
delay them. :meth:`stall` stops forwarding one way; :meth:`unplug` closes both sockets.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass

from backend.protocol.timing import POLL_SLICE_S


@dataclass
class Faults:
    """Per-piece fault probabilities for one direction; ``delay``: max extra seconds per piece."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.0
    piece: int = 512


class FaultyLink:
    """Relay between a host (connects to :attr:`url`) and a TCP device at ``device``."""

    def __init__(self, device: tuple[str, int], to_device: Faults = Faults(), to_host: Faults = Faults(),
                 seed: int = 0):
        self.device, self.faults, self.seed = device, {"to_device": to_device, "to_host": to_host}, seed
        self.counters = {d: dict.fromkeys(("pieces", "dropped", "duplicated", "reordered", "corrupted"), 0)
                         for d in self.faults}
        self._stalled = {d: threading.Event() for d in self.faults}
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "socket://127.0.0.1:%d" % self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="faulty-link accept")
        self._thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._closed.is_set():
            try:
                host, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                device = socket.create_connection(self.device)
            except OSError:  # no device: the host sees the link close
                host.close()
                continue
            self._sockets += [host, device]
            for src, dst, direction, salt in ((host, device, "to_device", 1), (device, host, "to_host", 2)):
                rng = random.Random(self.seed * 7 + salt)
                threading.Thread(target=self._relay, args=(src, dst, direction, rng),
                                 daemon=True, name=f"faulty-link {direction}").start()

    def _relay(self, src: socket.socket, dst: socket.socket, direction: str, rng: random.Random) -> None:
        faults, counters, held = self.faults[direction], self.counters[direction], b""
        try:
            while not self._closed.is_set():
                if not select.select([src], [], [], POLL_SLICE_S)[0]:
                    if held:  # nothing followed the held-back piece: send it now
                        dst.sendall(held)
                        held = b""
                    continue
                data = src.recv(65536)
                if not data:
                    break
                while self._stalled[direction].is_set() and not self._closed.is_set():
                    time.sleep(0.01)  # hold the data and read no more: the sender's buffers fill
                out = []
                for start in range(0, len(data), faults.piece):
                    cut = rng.randint(1, faults.piece)
                    for piece in (data[start:start + cut], data[start + cut:start + faults.piece]):
                        if piece:
                            counters["pieces"] += 1
                            held = self._mangle(piece, faults, counters, rng, out, held)
                if faults.delay:
                    time.sleep(rng.uniform(0, faults.delay))
                dst.sendall(b"".join(out))
        except (OSError, ValueError):  # the other relay thread or unplug() closed the sockets
            pass
        finally:
            self.unplug()

    @staticmethod
    def _mangle(piece: bytes, faults: Faults, counters: dict, rng: random.Random, out: list,
                held: bytes) -> bytes:
        """Apply the faults to ``piece``, appending what to send to ``out``; return the piece
        now held back for reordering (or b"")."""
        if rng.random() < faults.drop:
            counters["dropped"] += 1
            return held
        if rng.random() < faults.corrupt:
            counters["corrupted"] += 1
            i = rng.randrange(len(piece))
            piece = piece[:i] + bytes([piece[i] ^ (1 << rng.randrange(8))]) + piece[i + 1:]
        if rng.random() < faults.reorder and not held:
            counters["reordered"] += 1
            return piece  # sent after the next piece
        out.append(piece)
        if held:
            out.append(held)
        if rng.random() < faults.duplicate:
            counters["duplicated"] += 1
            out.append(piece)
        return b""

    def stall(self, direction: str, stalled: bool = True) -> None:
        """Stop (or resume) forwarding ``direction`` ("to_device" or "to_host")."""
        if direction not in self._stalled:
            raise ValueError(f"stall(direction={direction!r}): expected 'to_device' or 'to_host'")
        (self._stalled[direction].set if stalled else self._stalled[direction].clear)()

    def unplug(self) -> None:
        """Close both connections, as pulling the cable would."""
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        """Unplug and stop listening."""
        self._closed.set()
        self.unplug()
        self._listener.close()
        self._thread.join(timeout=2)

    def __enter__(self) -> "FaultyLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
