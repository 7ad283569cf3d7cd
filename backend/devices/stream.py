"""The live mode's host side: :class:`Stream`, an iterator over a device's output while the
chip runs on its own sensor, and :class:`DVSFilter`, the devkit sensor's noise filter.

A pump thread runs the driver's ``_stream`` generator (it reads the device: the wire
protocol's ``STREAM``, samna's sink, or the in-process emulator) and hands each output batch
to a queue bounded in events, so a live sensor never waits for the program and the program
never loses an event unknowingly: a batch that does not fit raises :class:`StreamOverflow`
after the batches before it (``on_full="raise"``), or is counted in ``counters.dropped``
(``on_full="drop"``). Closing the stream (``close()``, leaving the ``with`` block, Ctrl-C
in it, ``Device.close()``) stops the device's stream and waits for its last accounting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np

from backend.errors import StreamOverflow
from backend.protocol.timing import POLL_SLICE_S
from snnlib.events import EVENT_DTYPE

if TYPE_CHECKING:
    from backend.devices.base import Counters, Device

#: the default bound of a stream's queue: output events received and not yet taken (16 MiB)
MAX_QUEUED_EVENTS = 1 << 20
#: seconds close() waits for the device to end its stream (STOP, END_OF_RUN, OK)
CLOSE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DVSFilter:
    """The devkit sensor's event filter (Speck Dev Kit Datasheet §3.2.3.5; samna's
    ``dvs_filter``), one mode at a time: ``"noise"`` passes an event when a pixel within
    ``size`` ``(y, x)`` (1..15 each) fired less than ``threshold`` slow-clock ticks before;
    ``"hot-pixel"`` adds the hot-pixel filter to it; ``"low-pass"`` drops an event whose pixel
    fired less than ``threshold`` ticks before (flicker; ``size`` is ignored and written as 0)."""

    mode: str = "noise"
    threshold: int = 2
    size: tuple[int, int] = (3, 3)

    def __post_init__(self):
        if self.mode not in ("noise", "hot-pixel", "low-pass"):
            raise ValueError(f"DVSFilter(mode={self.mode!r}): expected 'noise', 'hot-pixel' or 'low-pass'")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 0:
            raise ValueError(f"DVSFilter(threshold={self.threshold!r}): expected slow-clock ticks, an int >= 0")
        if self.mode != "low-pass" and (len(self.size) != 2 or not all(1 <= s <= 15 for s in self.size)):
            raise ValueError(f"DVSFilter(size={self.size!r}): expected (y, x) neighbourhood sides in 1..15")


class Stream:
    """Output of a device's live mode: iterate for EVENT_DTYPE batches in device order (the
    iteration ends when the sensor does, e.g. a replayed recording); use as a context manager
    or call :meth:`close`. ``counters``: this stream's ``sent`` (sensor events the chip
    took in, as the device reports them), ``received`` (output events that reached the host)
    and ``dropped`` (lost in the device, or in this queue with ``on_full="drop"``)."""

    def __init__(self, device: Device, source: Callable[[threading.Event], Iterator[np.ndarray]],
                 max_queued: int, on_full: str):
        self.device, self.max_queued, self.on_full = device, max_queued, on_full
        self._before = device.counters.snapshot()
        self._stop = threading.Event()
        self._ready = threading.Condition()
        self._batches: deque[np.ndarray] = deque()
        self._queued = 0
        self._error: Optional[BaseException] = None
        self._done = False
        self._thread = threading.Thread(target=self._pump, args=(source(self._stop),), daemon=True,
                                        name=f"spikeflash-stream {device.url}")
        self._thread.start()

    @property
    def counters(self) -> Counters:
        return self.device.counters.since(self._before)

    def _pump(self, batches: Iterator[np.ndarray]) -> None:
        try:
            for batch in batches:
                self.device.counters.received += len(batch)
                with self._ready:
                    fits = not self._queued or self._queued + len(batch) <= self.max_queued
                    if self._error is None and fits:
                        self._batches.append(batch)
                        self._queued += len(batch)
                        self._ready.notify()
                        continue
                    self.device.counters.dropped += len(batch)
                    if self.on_full == "raise" and self._error is None:
                        self._error = StreamOverflow(
                            f"{self.device.url}: the stream's queue holds {self._queued} output events and "
                            f"{len(batch)} more arrived (max_queued={self.max_queued}); the stream is stopped",
                            counters=self.counters,
                            hint="take the batches faster, pass a larger max_queued, or on_full='drop'")
                        self._stop.set()
        except BaseException as exc:  # handed to the consumer by __next__
            with self._ready:
                self._error = self._error or exc
        finally:
            with self._ready:
                self._done = True
                self._ready.notify_all()

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> np.ndarray:
        batch = self.poll(None)
        if batch is None:
            raise StopIteration
        return batch

    def poll(self, timeout_s: Optional[float]) -> Optional[np.ndarray]:
        """The next batch; an empty one when none came within ``timeout_s`` seconds (None:
        wait for one); None when the stream has ended and every batch was taken. Raises the
        error that ended the stream (e.g. :class:`StreamOverflow`) after the batches before it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._ready:
            while not self._batches and not self._done:
                if deadline is not None and time.monotonic() >= deadline:
                    return np.zeros(0, EVENT_DTYPE)
                self._ready.wait(POLL_SLICE_S)  # a short wait: Ctrl-C is raised here at once
            if self._batches:
                batch = self._batches.popleft()
                self._queued -= len(batch)
                return batch
        if self._error is not None and not self._stop_requested:
            raise self._error
        return None

    @property
    def _stop_requested(self) -> bool:
        """Whether the program stopped the stream (then a pending error is not its concern)."""
        return self._stop.is_set() and not isinstance(self._error, StreamOverflow)

    def collect(self) -> np.ndarray:
        """Every remaining output event until the stream ends, as one EVENT_DTYPE array."""
        batches = list(self)
        return np.concatenate(batches) if batches else np.zeros(0, EVENT_DTYPE)

    @property
    def ended(self) -> bool:
        """Whether the device's stream is over (the sensor ended, or it was stopped)."""
        return self._done

    def close(self) -> None:
        """Stop the device's stream and wait (up to CLOSE_TIMEOUT_S) for its end; the batches
        received until then stay readable (iterate on). Safe to call twice."""
        self._stop.set()
        self._thread.join(CLOSE_TIMEOUT_S)
        if not self._thread.is_alive():  # else the device stays busy until its stream has ended
            self.device._stream_closed(self)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
