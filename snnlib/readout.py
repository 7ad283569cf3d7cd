"""The readout layer of Speck 2e / 2f: per-class moving averages of the spikes one core sends
to it, compared with a threshold on every slow-clock tick (docs/chip-model.md, "Readout").

The readout is a sink: it never feeds the network, so it is computed from the spikes of its
source core and the slow clock, after the engine has produced them. On the tick at ``nP``
(``P`` the slow-clock period) it closes the window of spikes with ``(n-1)P <= t < nP``, adds
each class's count to the last ``average`` windows, and when the largest moving average
``floor(sum / average)`` exceeds ``threshold`` it emits one event ``(t=nP, layer=12,
channel=class, y=0, x=0)`` with the 1-based class of the largest (the lowest class on ties).
Channel ``c`` of the source counts for class ``c // channel_stride + 1`` when it is a multiple
of ``channel_stride`` (4 on Speck 2e/2f: the erratum channel 4(k-1) -> class k), else not at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnlib.events import EVENT_DTYPE

#: Layer id of the readout layer (its router id on Speck 2e/2f); readout events carry it.
READOUT_LAYER_ID = 12
#: classes (output pins' values 1..15) of the readout layer
READOUT_CLASSES = 15
#: moving-average lengths in slow-clock ticks (1: the low-pass filter disabled)
READOUT_AVERAGES = (1, 16, 32)


@dataclass
class Readout:
    """Readout configuration. ``threshold``: a class is reported when its moving average
    exceeds it (0..65535). ``average``: window count of the moving average (1, 16 or 32).
    ``channel_stride``: source channel ``stride * (k - 1)`` feeds class k (4 on Speck 2e/2f,
    the erratum; 1 as the datasheet intends)."""

    threshold: int = 0
    average: int = 16
    channel_stride: int = 4

    def class_of(self, channels: np.ndarray) -> np.ndarray:
        """1-based class per source channel, 0 for channels the readout ignores."""
        channels = np.asarray(channels, np.int64)
        k = channels // self.channel_stride + 1
        return np.where((channels % self.channel_stride == 0) & (k <= READOUT_CLASSES), k, 0)


class ReadoutState:
    """The readout's state across runs: the open window's counts and the last windows."""

    def __init__(self, readout: Readout, period_us: int):
        self.readout, self.period = readout, int(period_us)
        self.reset()

    def reset(self) -> None:
        self.next_tick = self.period
        self.open = np.zeros(READOUT_CLASSES + 1, np.int64)
        self.history = np.zeros((self.readout.average, READOUT_CLASSES + 1), np.int64)

    def advance(self, spikes: np.ndarray, until_us: int) -> np.ndarray:
        """Count ``spikes`` (the source core's events, time-sorted) and apply every tick up to
        ``until_us``; return the readout events (:data:`EVENT_DTYPE`) in time order."""
        classes = self.readout.class_of(spikes["channel"])
        times = spikes["t"].astype(np.int64)
        out = []
        start = 0
        while self.next_tick <= until_us:
            end = int(np.searchsorted(times, self.next_tick, side="left"))
            if end == start and not self.open.any() and not self.history.any():
                # at rest: the ticks before the next spike's window closes report nothing
                quiet_until = min(int(times[start]), until_us) if start < len(times) else until_us
                self.next_tick += ((quiet_until - self.next_tick) // self.period + 1) * self.period
                continue
            self.open += np.bincount(classes[start:end], minlength=READOUT_CLASSES + 1)
            start = end
            self.history = np.roll(self.history, 1, axis=0)
            self.history[0] = self.open
            self.open = np.zeros_like(self.open)
            means = self.history[:, 1:].sum(axis=0) // self.readout.average
            best = int(np.argmax(means))
            if means[best] > self.readout.threshold:
                out.append((self.next_tick, READOUT_LAYER_ID, best + 1, 0, 0))
            self.next_tick += self.period
        self.open += np.bincount(classes[start:], minlength=READOUT_CLASSES + 1)
        return np.array(out, dtype=EVENT_DTYPE)
