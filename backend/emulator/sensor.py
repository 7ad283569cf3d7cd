"""The emulator's sensor: it replays recordings, so a stream over the pty is testable.

A :class:`ReplaySensor` holds one or more recordings (EVENT_DTYPE arrays, usually DVS events
of layer 13 with absolute timestamps in µs). Each stream plays the next recording in turn,
from its start: a file of several recordings is a playlist. A :class:`Playback` releases a
recording's events either at their recorded pace (an event at ``t`` is due ``t - t_first``
µs after the stream began) or as fast as the chip takes them (``fast=True``). Time is passed
in, so the pacing is a pure function of the clock (tests step it by hand).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from snnlib.events import InvalidEventsError, check_events


class ReplaySensor:
    """A sensor replaying ``recordings`` (one EVENT_DTYPE array, or a list of them: stream k
    plays recording ``k mod n``). ``fast``: release events as fast as the chip takes them
    instead of at their recorded pace."""

    def __init__(self, recordings: Union[np.ndarray, list[np.ndarray]], *, fast: bool = False):
        recordings = [recordings] if isinstance(recordings, np.ndarray) else list(recordings)
        if not recordings:
            raise InvalidEventsError("ReplaySensor(recordings=[]): expected at least one recording")
        for i, events in enumerate(recordings):
            try:
                check_events(events)
            except InvalidEventsError as error:
                raise InvalidEventsError(f"ReplaySensor(recordings[{i}]): {error}; files are read "
                                         "with ReplaySensor.load(path)",
                                         error.field, error.value, error.index) from None
        self.recordings, self.fast, self._next = recordings, bool(fast), 0

    @classmethod
    def load(cls, path: Union[str, Path], *, fast: bool = False) -> "ReplaySensor":
        """A sensor replaying the recordings of an event file (``.npy``, ``.npz``: every array
        in file order, ``.aedat4``; Tonic (x, y, t, p) arrays become DVS events)."""
        from backend.files.events import load_event_file

        return cls(list(load_event_file(path).arrays.values()), fast=fast)

    def play(self, now_s: float) -> "Playback":
        """Start the next recording at monotonic time ``now_s`` (s)."""
        events = self.recordings[self._next % len(self.recordings)]
        self._next += 1
        return Playback(events, now_s, self.fast)


class Playback:
    """One recording being played: :meth:`take` the events due, :meth:`wait_s` until the next."""

    def __init__(self, events: np.ndarray, start_s: float, fast: bool):
        self.events, self.start_s, self.fast = events, start_s, fast
        self.taken = 0  # events released so far
        self._t0 = int(events["t"][0]) if len(events) else 0

    @property
    def done(self) -> bool:
        return self.taken == len(self.events)

    def _due(self, now_s: float) -> int:
        """How many events are due at ``now_s`` (all of them when fast)."""
        if self.fast:
            return len(self.events)
        elapsed_us = int((now_s - self.start_s) * 1e6)
        return int(np.searchsorted(self.events["t"], self._t0 + elapsed_us, "right"))

    def take(self, now_s: float, limit: int) -> np.ndarray:
        """The next at most ``limit`` events due at ``now_s`` (possibly none)."""
        end = min(self._due(now_s), self.taken + limit)
        batch = self.events[self.taken:end]
        self.taken = max(self.taken, end)
        return batch

    def wait_s(self, now_s: float) -> float:
        """Seconds from ``now_s`` until the next event is due (0 when one is due)."""
        if self.fast or self.done:
            return 0.0
        due_s = self.start_s + (int(self.events["t"][self.taken]) - self._t0) / 1e6
        return max(0.0, due_s - now_s)
