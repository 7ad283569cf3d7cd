"""A synthetic event-camera dataset: bright shapes moving over a dark background, seen by a
simulated DVS sensor (128x128 pixels by default). Generated on the spot, no download.

A sample is one shape (:data:`SHAPES`) drifting in one of :data:`DIRECTIONS` for
``duration_us``; its label is ``shape * len(DIRECTIONS) + direction`` (see :func:`class_names`).
The scene is rendered every ``FRAME_US`` with anti-aliased edges at sub-pixel positions, and each
pixel behaves like a DVS pixel: it remembers the log intensity at its last event and emits an ON
(OFF) event when the log intensity has risen (fallen) by its contrast threshold since then (the
reference then moves by one threshold), at most one event per frame and none within
``REFRACTORY_US`` of its previous event; the event's time is interpolated to where the threshold
was crossed within the frame. Thresholds vary from pixel to pixel (fixed per dataset, as on a
real sensor), and background activity adds Poisson noise events of random polarity.

Samples follow one another in one recording whose timestamps are absolute (µs since the Unix
epoch, from ``t0_us``), as a sensor writes them. Everything is drawn from ``numpy``'s generator
seeded with ``seed``: the same arguments give the same events on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from backend.files.events import XYTP_DTYPE

#: shape name -> filled rectangles ``(x0, y0, x1, y1)`` in units of the shape's size, centred on 0
SHAPES: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "square": ((-0.5, -0.5, 0.5, 0.5),),
    "frame": ((-0.5, -0.5, 0.5, -0.3), (-0.5, 0.3, 0.5, 0.5),
              (-0.5, -0.3, -0.3, 0.3), (0.3, -0.3, 0.5, 0.3)),
    "cross": ((-0.5, -0.12, 0.5, 0.12), (-0.12, -0.5, 0.12, 0.5)),
}
#: direction name -> unit velocity ``(dx, dy)`` in pixels (y grows downwards)
DIRECTIONS: dict[str, tuple[float, float]] = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}

FRAME_US = 500  #: µs between rendered frames (the pixels' sampling period)
REFRACTORY_US = 1000  #: µs a pixel stays silent after an event
CONTRAST = 0.25  #: mean contrast threshold, in log intensity
CONTRAST_SPREAD = 0.05  #: standard deviation of the per-pixel thresholds, in log intensity
NOISE_HZ = 0.2  #: background events per pixel per second
BACKGROUND = 0.1  #: background intensity (the shapes' intensity is drawn from 0.5..1.0)
LOG_EPS = 0.01  #: added before the log, as a sensor's dark current
T0_US = 1_700_000_000_000_000  #: default start of the recording: 2023-11-14 in µs since the epoch


@dataclass(frozen=True)
class Recording:
    """One sample: ``events`` a Tonic-style ``(x, y, t, p)`` array (:data:`XYTP_DTYPE`; ``t`` in
    absolute µs, ``p`` 0 OFF / 1 ON) sorted by time, starting at or after ``t0_us`` (µs), and its
    ``label``, ``shape`` and ``direction``."""

    events: np.ndarray
    t0_us: int
    label: int
    shape: str
    direction: str


def class_names() -> list[str]:
    """The label's meaning, index = label: ``"<shape> <direction>"``."""
    return [f"{s} {d}" for s in SHAPES for d in DIRECTIONS]


def make_recordings(n: int, seed: int = 0, *, sensor_size: tuple[int, int] = (128, 128),
                    shape_size: float = 28.0, travel: float = 32.0, duration_us: int = 100_000,
                    t0_us: int = T0_US) -> list[Recording]:
    """``n`` recordings of the dataset, labels cycling through every class (balanced).

    ``sensor_size``: ``(height, width)`` in pixels; ``shape_size``: the shapes' side (pixels,
    varied by ±15 %); ``travel``: how far a shape moves during a sample (pixels, ±25 %);
    ``duration_us``: each sample's length; ``t0_us``: the absolute time the first sample starts
    (samples follow each other with a 10 ms gap).
    """
    _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    _check_int("duration_us", duration_us, FRAME_US)
    _check_int("t0_us", t0_us, 0)
    if (not isinstance(sensor_size, tuple) or len(sensor_size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in sensor_size)):
        raise ValueError(f"sensor_size={sensor_size!r}: expected (height, width), two ints >= 8")
    for name, value in (("shape_size", shape_size), ("travel", travel)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{name}={value!r}: expected a number of pixels > 0")
    if 1.15 * shape_size + 1.25 * travel + 2 > min(sensor_size):
        raise ValueError(f"shape_size={shape_size} and travel={travel}: a shape and its path "
                         f"(up to {1.15 * shape_size + 1.25 * travel + 2:.0f} px) must fit the sensor "
                         f"{sensor_size}; make them smaller")
    rng = np.random.default_rng(seed)
    thresholds = np.clip(rng.normal(CONTRAST, CONTRAST_SPREAD, sensor_size), CONTRAST / 4, None)
    shapes, directions = list(SHAPES), list(DIRECTIONS)
    out = []
    for i in range(n):
        label = i % (len(shapes) * len(directions))
        shape, direction = shapes[label // len(directions)], directions[label % len(directions)]
        start = t0_us + i * (duration_us + 10_000)
        size = shape_size * rng.uniform(0.85, 1.15)
        distance = travel * rng.uniform(0.75, 1.25)
        velocity = np.array(DIRECTIONS[direction]) * distance / duration_us  # pixels per µs
        # a start position keeping the whole path on the sensor
        low = size / 2 + 1 - np.minimum(velocity, 0) * duration_us
        high = np.array(sensor_size[::-1]) - size / 2 - 1 - np.maximum(velocity, 0) * duration_us
        centre = rng.uniform(low, high)
        # only the pixels the shape ever touches see a change
        end = centre + velocity * duration_us
        (x0, y0), (x1, y1) = np.minimum(centre, end) - size / 2, np.maximum(centre, end) + size / 2
        rows, cols = slice(int(y0), int(np.ceil(y1))), slice(int(x0), int(np.ceil(x1)))
        scene = _Scene(SHAPES[shape], size, centre, velocity, rng.uniform(0.5, 1.0), rows, cols)
        events = _pixel_events(scene, thresholds[rows, cols], duration_us)
        events["x"] += cols.start
        events["y"] += rows.start
        noise = _noise_events(sensor_size, duration_us, rng)
        events = np.concatenate([events, noise])
        events = events[np.argsort(events["t"], kind="stable")]
        events["t"] += start
        out.append(Recording(events, start, label, shape, direction))
    return out


@dataclass(frozen=True)
class _Scene:
    """A shape of side ``size`` whose centre moves from ``centre`` (x, y pixels) at ``velocity``
    (pixels per µs), seen through the pixel window ``rows`` x ``cols`` (slices) of the sensor."""

    rects: tuple[tuple[float, float, float, float], ...]
    size: float
    centre: np.ndarray
    velocity: np.ndarray
    brightness: float
    rows: slice
    cols: slice

    def log_intensity(self, t_us: np.ndarray) -> np.ndarray:
        """Log intensity of the window's pixels ``(len(t_us), rows, cols)`` at the times
        ``t_us`` (µs after the start)."""
        cx, cy = (self.centre[:, None] + self.velocity[:, None] * t_us)[:, :, None]
        cover = 0.0
        for x0, y0, x1, y1 in self.rects:
            across = _overlap(cx + x0 * self.size, cx + x1 * self.size, self.cols)
            down = _overlap(cy + y0 * self.size, cy + y1 * self.size, self.rows)
            cover = np.maximum(cover, down[:, :, None] * across[:, None, :])
        return np.log(BACKGROUND + (self.brightness - BACKGROUND) * cover + LOG_EPS)


def _overlap(a: np.ndarray, b: np.ndarray, pixels: slice) -> np.ndarray:
    """Fraction of each unit pixel ``[i, i+1)``, i in ``pixels``, covered by ``[a, b)``;
    ``a``, ``b`` ``(n, 1)`` -> ``(n, len(pixels))``."""
    edges = np.arange(pixels.start, pixels.stop)
    return np.clip(np.minimum(b, edges + 1) - np.maximum(a, edges), 0.0, 1.0)


def _pixel_events(scene: _Scene, thresholds: np.ndarray, duration_us: int) -> np.ndarray:
    """The DVS pixels' events for ``scene`` (see the module docstring), ``t`` relative to its
    start and before ``duration_us``, in the order the frames produce them (row-major within one)."""
    times = np.arange(0, duration_us, FRAME_US)
    x, y, t, p = _fire(scene.log_intensity(times), thresholds, times)
    events = np.empty(len(t), dtype=XYTP_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


@njit(cache=True)
def _fire(frames, thresholds, times):
    """The pixel model over log-intensity ``frames`` ``(n, h, w)`` at ``times`` (µs): arrays x,
    y, t, p of the events, frame by frame."""
    n, h, w = frames.shape
    reference = frames[0].copy()
    last_event = np.full((h, w), -REFRACTORY_US, dtype=np.int64)
    out = np.empty((4, 1024), np.int64)  # rows x, y, t, p
    k = 0
    for f in range(1, n):
        for i in range(h):
            for j in range(w):
                change = frames[f, i, j] - reference[i, j]
                if abs(change) < thresholds[i, j] or times[f] - last_event[i, j] < REFRACTORY_US:
                    continue
                sign = 1.0 if change > 0 else -1.0
                level = reference[i, j] + sign * thresholds[i, j]
                step = frames[f, i, j] - frames[f - 1, i, j]
                fraction = (level - frames[f - 1, i, j]) / step if step != 0 else 0.0
                stamp = times[f - 1] + np.round(min(max(fraction, 0.0), 1.0) * FRAME_US)
                stamp = max(int(stamp), last_event[i, j] + REFRACTORY_US)
                reference[i, j] = level
                last_event[i, j] = stamp
                if k == out.shape[1]:
                    out = np.concatenate((out, np.empty_like(out)), axis=1)
                out[0, k], out[1, k], out[2, k], out[3, k] = j, i, stamp, sign > 0
                k += 1
    return out[:, :k]


def _noise_events(sensor_size: tuple[int, int], duration_us: int, rng: np.random.Generator) -> np.ndarray:
    """Background activity: Poisson events at :data:`NOISE_HZ` per pixel, random polarity."""
    h, w = sensor_size
    n = rng.poisson(NOISE_HZ * h * w * duration_us * 1e-6)
    noise = np.empty(n, dtype=XYTP_DTYPE)
    noise["x"], noise["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    noise["t"], noise["p"] = rng.integers(0, duration_us, n), rng.integers(0, 2, n)
    return noise


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an int >= {minimum}")
