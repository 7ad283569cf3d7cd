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

Rasters are ``(T, C, H, W)`` arrays of non-negative integer spike counts; bin ``i`` covers
``[t0_us + i * dt_us, t0_us + (i + 1) * dt_us)``. A count of n is n identical events, both ways.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

from snnlib.errors import SpikeflashError

EVENT_DTYPE = np.dtype(
    [("t", "<i8"), ("layer", "<i2"), ("channel", "<i2"), ("y", "<i2"), ("x", "<i2")]
)
SPATIAL_FIELDS = ("channel", "y", "x")


class InvalidEventsError(SpikeflashError, ValueError):
    """An event array (or raster) holds a value that cannot be processed.

    Example scenarios:
      - timestamps that decrease, or a negative coordinate or channel
      - an array whose dtype is not :data:`EVENT_DTYPE` (and cannot be converted to it)

    ``field``, ``value`` and ``index`` name the first offending entry (``index`` is None when
    the problem is the array as a whole).
    """

    def __init__(self, message: str, field: str | None = None, value=None, index: int | None = None):
        super().__init__(message)
        self.field, self.value, self.index = field, value, index


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n`` (dtype :data:`EVENT_DTYPE`)."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def _bad_entry(events: np.ndarray, field: str, bad: np.ndarray, expected: str) -> InvalidEventsError:
    i = int(np.argmax(bad))
    value = int(events[field][i])
    return InvalidEventsError(f"events[{i}].{field} = {value}: {expected}", field, value, i)


def check_events(events, shapes: Mapping[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """Validate an event array and return it.

    Checks that ``events`` is a 1-D array of :data:`EVENT_DTYPE`, that ``t`` is never negative
    (times are µs in 0..2**63-1) and never decreases,
    and, if ``shapes`` maps layer id -> input shape ``(c, h, w)``, that every event names one of
    those layers and lies inside its shape. Raises :class:`InvalidEventsError` naming the field,
    the value and the index of the first bad event; nothing is clipped.
    """
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        got = f"{type(events).__name__} of dtype {getattr(events, 'dtype', None)} and shape {getattr(events, 'shape', None)}"
        raise InvalidEventsError(
            f"events: got a {got}; expected a 1-D numpy array of snnlib.EVENT_DTYPE "
            "(use snnlib.empty_events(n) or raster_to_events)", None, None, None
        )
    valid = _all_valid(events, _limits_table(shapes or {}), shapes is not None)
    if valid and not (events.size and events["t"][0] < 0):
        return events
    # something is wrong: find and name it (vectorised numpy, only on this path)
    t = events["t"]
    if t.size > 1:
        back = t[1:] < t[:-1]
        if back.any():
            i = int(np.argmax(back)) + 1
            raise InvalidEventsError(
                f"events[{i}].t = {int(t[i])} is earlier than events[{i - 1}].t = {int(t[i - 1])}; "
                "events must be sorted by t (np.sort(events, order='t', kind='stable'))",
                "t", int(t[i]), i,
            )
    if t.size and t[0] < 0:
        raise _bad_entry(events, "t", t < 0, "timestamps are µs in 0..2**63-1, never negative")
    if shapes is not None and events.size:
        _check_bounds(events, shapes)
    return events


def _limits_table(shapes: Mapping[int, tuple[int, int, int]]) -> np.ndarray:
    """``(max id + 1, 3)`` int64: the input shape (c, h, w) of each layer id, -1 where none."""
    table = np.full((max(shapes) + 1 if shapes else 0, 3), -1, dtype=np.int64)
    for lid, shape in shapes.items():
        if lid >= 0:
            table[lid] = shape
    return table


@njit(cache=True, error_model="numpy")
def _all_valid(events, limits, check_bounds) -> bool:
    """One compiled pass: ``t`` never decreases and, if ``check_bounds``, every event names a
    layer with a shape in ``limits`` (see ``_limits_table``) and lies inside it."""
    previous = events[0].t if events.size else 0
    for i in range(events.size):
        e = events[i]
        if e.t < previous:
            return False
        previous = e.t
        if check_bounds:
            if e.layer < 0 or e.layer >= limits.shape[0] or limits[e.layer, 0] < 0:
                return False
            if not (0 <= e.channel < limits[e.layer, 0] and 0 <= e.y < limits[e.layer, 1]
                    and 0 <= e.x < limits[e.layer, 2]):
                return False
    return True


def _check_bounds(events: np.ndarray, shapes: Mapping[int, tuple[int, int, int]]) -> None:
    ids = np.array(sorted(shapes), dtype=np.int64)
    layer = events["layer"].astype(np.int64)
    slot = np.searchsorted(ids, layer).clip(0, ids.size - 1)
    unknown = ids[slot] != layer
    if unknown.any():
        raise _bad_entry(events, "layer", unknown, f"not a layer of the network (layers: {ids.tolist()})")
    limits = np.array([shapes[int(i)] for i in ids], dtype=np.int64)[slot]
    for k, name in enumerate(SPATIAL_FIELDS):
        value = events[name]
        bad = (value < 0) | (value >= limits[:, k])
        if bad.any():
            i = int(np.argmax(bad))
            raise _bad_entry(
                events, name, bad,
                f"out of range for layer {int(layer[i])}: expected 0 <= {name} < {int(limits[i, k])}",
            )


def _check_step(dt_us: int, t0_us: int) -> None:
    if isinstance(dt_us, bool) or not isinstance(dt_us, (int, np.integer)) or dt_us < 1:
        raise InvalidEventsError(f"dt_us={dt_us!r}: expected a positive integer number of microseconds", "dt_us", dt_us)
    if isinstance(t0_us, bool) or not isinstance(t0_us, (int, np.integer)) or t0_us < 0:
        raise InvalidEventsError(f"t0_us={t0_us!r}: expected an integer time in microseconds, 0..2**63-1",
                                 "t0_us", t0_us)


@njit(cache=True)
def _count_total(flat) -> int:
    total = 0
    for i in range(flat.size):
        total += flat[i]
    return total


@njit(cache=True)
def _fill_events(counts, layer, t0_us, dt_us, out):
    n_t, n_c, n_h, n_w = counts.shape
    columns = np.empty(n_w, np.int64)
    k = 0
    for ti in range(n_t):
        t = t0_us + ti * dt_us
        for c in range(n_c):
            for y in range(n_h):
                row = counts[ti, c, y]
                m = 0
                for x in range(n_w):  # branch-free: gather the non-zero columns of the row
                    columns[m] = x
                    m += row[x] != 0
                for j in range(m):
                    x = columns[j]
                    for _ in range(row[x]):
                        e = out[k]
                        e.t, e.layer, e.channel, e.y, e.x = t, layer, c, y, x
                        k += 1


def raster_to_events(raster, layer: int, dt_us: int, t0_us: int = 0) -> np.ndarray:
    """Events from a raster of counts ``(T, C, H, W)`` (numpy or torch, integer-valued, >= 0).

    Bin ``i`` becomes timestamp ``t0_us + i * dt_us`` (µs); a count of n gives n identical
    events. Order: by bin, then (channel, y, x) ascending. All events get ``layer``.
    """
    _check_step(dt_us, t0_us)
    counts = _as_counts(raster)
    if max(counts.shape[1:], default=0) > 32768 or not -32768 <= layer <= 32767:
        raise InvalidEventsError(
            f"raster shape {counts.shape} / layer={layer}: channel, y, x and layer must fit int16", "raster"
        )
    counts = np.ascontiguousarray(counts)
    events = np.empty(_count_total(counts.reshape(-1)), dtype=EVENT_DTYPE)
    _fill_events(counts, int(layer), int(t0_us), int(dt_us), events)
    return events


def _as_counts(raster) -> np.ndarray:
    counts = np.asarray(raster.detach().cpu().numpy() if hasattr(raster, "detach") else raster)
    if counts.ndim != 4:
        raise InvalidEventsError(f"raster: shape {counts.shape}; expected (T, C, H, W) counts", "raster")
    if counts.dtype == bool:
        return counts.view(np.uint8)
    if not np.issubdtype(counts.dtype, np.integer):
        fractional = np.mod(counts, 1) != 0
        if fractional.any():
            idx = [int(i) for i in np.argwhere(fractional)[0]]
            value = counts[tuple(idx)]
            raise InvalidEventsError(f"raster{idx} = {value}: counts must be integers", "raster", value)
        counts = counts.astype(np.int64)
    if counts.size and counts.min() < 0:
        idx = [int(i) for i in np.argwhere(counts < 0)[0]]
        value = counts[tuple(idx)]
        raise InvalidEventsError(f"raster{idx} = {value}: counts must be >= 0", "raster", value)
    return counts


# codes returned by _scatter for the first event it cannot place
_OK, _BAD_LAYER, _EARLY, _LATE, _BAD_C, _BAD_Y, _BAD_X = range(7)


@njit(cache=True)
def _scatter(events, layer, t0_us, dt_us, raster):
    """Add each event of ``layer`` to ``raster``; return (code, index) of the first bad one."""
    n_t, n_c, n_h, n_w = raster.shape
    for i in range(events.size):
        e = events[i]
        if e.layer != layer:
            return _BAD_LAYER, i
        if e.t < t0_us:
            return _EARLY, i
        b = (e.t - t0_us) // dt_us
        if b >= n_t:
            return _LATE, i
        c, y, x = e.channel, e.y, e.x
        if c < 0 or c >= n_c:
            return _BAD_C, i
        if y < 0 or y >= n_h:
            return _BAD_Y, i
        if x < 0 or x >= n_w:
            return _BAD_X, i
        raster[b, c, y, x] += 1
    return _OK, -1


@njit(cache=True)
def _last_bin(t, t0_us, dt_us) -> int:
    latest = t0_us
    for v in t:
        latest = max(latest, v)
    return (latest - t0_us) // dt_us


def events_to_raster(events, shape: tuple[int, int, int], dt_us: int, t0_us: int = 0,
                     n_steps: int | None = None, *, layer: int | None = None) -> np.ndarray:
    """Spike counts ``(T, C, H, W)`` (int32) of the events, with ``shape = (C, H, W)``.

    Event time t falls in bin ``(t - t0_us) // dt_us`` (absolute time is kept: nothing is
    shifted to the first event). ``n_steps`` defaults to just enough bins for the last event.
    ``layer`` selects the events of one layer; when None, all events must share one layer.
    An event before ``t0_us``, after the last bin or outside ``shape`` raises
    :class:`InvalidEventsError` naming it; nothing is dropped.
    """
    check_events(events)
    _check_step(dt_us, t0_us)
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise InvalidEventsError(f"shape={shape!r}: expected (C, H, W) with positive sizes", "shape")
    if layer is not None:
        events = events[events["layer"] == layer]
    elif events.size:
        layer = int(events["layer"][0])
    if n_steps is None:
        n_steps = int(_last_bin(events["t"], int(t0_us), int(dt_us))) + 1 if events.size else 0
    elif isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise InvalidEventsError(f"n_steps={n_steps!r}: expected a non-negative integer or None", "n_steps", n_steps)
    raster = np.zeros((int(n_steps), *(int(n) for n in shape)), dtype=np.int32)
    code, i = _scatter(events, -1 if layer is None else int(layer), int(t0_us), int(dt_us), raster)
    if code != _OK:
        raise _scatter_error(events, code, i, shape, int(t0_us), int(dt_us), int(n_steps), layer)
    return raster


def _scatter_error(events, code, i, shape, t0_us, dt_us, n_steps, layer) -> InvalidEventsError:
    field = {_BAD_LAYER: "layer", _EARLY: "t", _LATE: "t", _BAD_C: "channel", _BAD_Y: "y", _BAD_X: "x"}[code]
    expected = {
        _BAD_LAYER: f"events of several layers (first is {layer}); pass layer= to select one",
        _EARLY: f"before t0_us = {t0_us}",
        _LATE: f"after the last bin: {n_steps} bins of {dt_us} us from t0_us = {t0_us} end at "
               f"{t0_us + n_steps * dt_us}; raise n_steps",
        _BAD_C: f"outside shape {tuple(shape)}: expected 0 <= channel < {shape[0]}",
        _BAD_Y: f"outside shape {tuple(shape)}: expected 0 <= y < {shape[1]}",
        _BAD_X: f"outside shape {tuple(shape)}: expected 0 <= x < {shape[2]}",
    }[code]
    value = int(events[field][i])
    return InvalidEventsError(f"events[{i}].{field} = {value}: {expected}", field, value, int(i))
