"""Event arrays: the one numpy structured dtype for spike events used across spikeflash.

An event array is a 1-D numpy array of :data:`EVENT_DTYPE` with the fields

=========  ========  ==============================================================
field      type      meaning
=========  ========  ==============================================================
``t``      int64     timestamp in microseconds (absolute; never shifted silently)
``layer``  int16     id of the layer the event enters (input) or left (output)
``channel`` int16    feature / channel index; for DVS input the polarity (0 off, 1 on)
``y``      int16     row
``x``      int16     column
=========  ========  ==============================================================

The dtype is packed (16 bytes per event). Events are ordered by ``t``; several events
with the same ``t`` keep the order in which they were produced.
"""

from __future__ import annotations

import numpy as np

EVENT_DTYPE = np.dtype(
    [("t", "<i8"), ("layer", "<i2"), ("channel", "<i2"), ("y", "<i2"), ("x", "<i2")]
)


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n`` (dtype :data:`EVENT_DTYPE`)."""
    return np.zeros(n, dtype=EVENT_DTYPE)
