"""``spikeflash stream``: run a configuration on a device's own sensor and show live per-class
counts in the terminal (a line rewritten in place; one line per refresh when not a terminal),
until the sensor ends, ``--seconds`` pass, or Ctrl-C; then optionally save what it saw."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Optional, TextIO

import numpy as np

from backend.devices.stream import MAX_QUEUED_EVENTS
from snnlib.events import EVENT_DTYPE
from snnlib.readout import READOUT_LAYER_ID

if TYPE_CHECKING:
    from backend.devices.base import Counters

#: seconds between two refreshes of the live line
REFRESH_S = 0.5


def output_layer(config, chosen: Optional[int]) -> int:
    """The layer whose channels are the classes: ``chosen``, else the readout layer when the
    configuration has one, else the monitored core that sends to no other."""
    from backend.analysis.runner import default_output_layer
    from backend.errors import EvaluationError

    if chosen is None:
        return READOUT_LAYER_ID if config.readout is not None else default_output_layer(config)
    if chosen not in config.monitored_layer_names():
        raise EvaluationError(f"--output-layer {chosen}: not a monitored layer of this configuration "
                              f"(monitored: {sorted(config.monitored_layer_names())})")
    return chosen


def class_line(counts: np.ndarray, n_events: int, elapsed_s: float) -> str:
    """``"  3.5 s  1234 events  class 0: 12  1: 40 ...  top: 1"`` (the top class by count)."""
    classes = "  ".join(f"{k}: {int(n)}" for k, n in enumerate(counts))
    top = f"top: {int(np.argmax(counts))}" if counts.any() else "top: -"
    return f"{elapsed_s:6.1f} s  {n_events:>8} events  class {classes}  {top}"


def stream_live(device, config, layer: int, *, seconds: Optional[float] = None, max_queued: Optional[int] = None,
                out: Optional[TextIO] = None) -> tuple[np.ndarray, Optional[Counters], bool]:
    """Stream from the sensor of ``device`` (flashed with ``config``, reset) and print the
    counts of each class (channel of ``layer``) every REFRESH_S, until the sensor ends,
    ``seconds`` pass or Ctrl-C; ``max_queued``: the stream's queue bound (None: the default);
    ``out``: where to print (None: ``sys.stdout`` as it is at the call).
    Returns every output event seen (EVENT_DTYPE), the stream's
    counters (None if Ctrl-C came before it began), and whether Ctrl-C ended it."""
    from backend.devices.base import monitored_shape

    out = out or sys.stdout
    n_classes = monitored_shape(config.to_network(), layer)[0]
    counts = np.zeros(n_classes, np.int64)
    batches: list[np.ndarray] = []
    interrupted = False
    terminal = out.isatty()
    started = shown = time.monotonic()
    stream = None
    try:  # around the with block: Ctrl-C at any moment stops the stream, and what came is kept
        with device.stream(max_queued=max_queued or MAX_QUEUED_EVENTS) as stream:
            while (batch := stream.poll(REFRESH_S)) is not None:
                batches.append(batch)
                counts += np.bincount(batch["channel"][batch["layer"] == layer], minlength=n_classes)
                now = time.monotonic()
                if now - shown >= REFRESH_S:
                    shown = now
                    line = class_line(counts, sum(map(len, batches)), now - started)
                    print(("\r" if terminal else "") + line, end="" if terminal else "\n", file=out, flush=True)
                if seconds is not None and now - started >= seconds:
                    break
    except KeyboardInterrupt:
        interrupted = True
    if stream is not None:
        batches += list(stream)  # what arrived before the device stopped
    events = np.concatenate(batches) if batches else np.zeros(0, EVENT_DTYPE)
    counts = np.bincount(events["channel"][events["layer"] == layer], minlength=n_classes)
    print(("\r" if terminal else "") + class_line(counts, len(events), time.monotonic() - started), file=out)
    return events, None if stream is None else stream.counters, interrupted
