"""PNG plots: event rasters and frames, per-core memory use, firing rates per layer,
hardware-vs-simulation divergence, confusion.

Every function draws one figure with matplotlib's Agg renderer (no window, no pyplot global
state), writes it to ``path`` (a ``.png``; missing parent folders are created) and returns the
path. matplotlib is imported inside the functions, so ``import backend`` stays light; install
it with ``pip install spikeflash[demo]``.

Events are :data:`snnlib.EVENT_DTYPE` arrays; times are shown in milliseconds. In rasters a
neuron is drawn at the row ``(channel * H + y) * W + x`` of its layer, with ``H`` and ``W``
taken from the largest ``y`` and ``x`` seen in that layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from snnlib.errors import SpikeflashError
from snnlib.events import InvalidEventsError, check_events

PathLike = Union[str, Path]
DPI = 100
MEMORY_KINDS = ("kernel", "neuron", "bias")


class PlotInputError(SpikeflashError, ValueError):
    """A plotting function got data it cannot draw.

    Example scenarios:
      - a raster of two empty event arrays, or a memory row without ``kernel_used``
      - predicted labels outside the given classes, or a path that does not end in ``.png``
    """


def plot_event_raster(
    path: PathLike,
    input_events: np.ndarray,
    output_events: Optional[np.ndarray] = None,
    title: str = "Event raster",
) -> Path:
    """Raster of ``input_events`` and ``output_events``, one panel per (direction, layer).

    Rows are neurons (see the module docstring), the x axis is time in ms; output events are
    grouped by the layer that emitted them, input events by the layer they enter.
    """
    panels = _layer_panels("input_events", input_events, "in")
    if output_events is not None:
        panels += _layer_panels("output_events", output_events, "out")
    if not panels:
        raise PlotInputError(
            "input_events / output_events: both are empty; pass at least one event to draw"
        )
    fig = _figure(width=8.0, height=1.0 + 1.8 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, ev) in zip(axes, panels):
        ax.scatter(ev["t"] / 1000.0, _neuron_rows(ev), s=16, marker="|", linewidths=1.0)
        ax.set_ylabel(f"{label}\nneuron")
        ax.set_title(f"{label}: {len(ev)} events", fontsize=9, loc="left")
    axes[-1].set_xlabel("time (ms)")
    fig.suptitle(title)
    return _save(fig, path)


def plot_event_frames(
    path: PathLike,
    events: np.ndarray,
    sensor_size: tuple[int, int],
    n_frames: int = 4,
    title: str = "Event frames",
) -> Path:
    """``events`` of one layer (e.g. a DVS recording: channel 1 ON, 0 OFF) accumulated into
    ``n_frames`` equal time windows over their span, drawn side by side on the
    ``sensor_size`` ``(height, width)`` pixel grid: ON counts red, OFF counts blue.
    """
    events = _checked("events", events)
    if len(events) == 0 or len(np.unique(events["layer"])) != 1:
        raise PlotInputError(
            f"events: {len(events)} events on layers {np.unique(events['layer']).tolist()}; expected "
            "a non-empty array of one layer"
        )
    if (not isinstance(sensor_size, tuple) or len(sensor_size) != 2 or not all(
            isinstance(v, (int, np.integer)) and v > 0 for v in sensor_size)):
        raise PlotInputError(f"sensor_size={sensor_size!r}: expected (height, width), two positive ints")
    h, w = sensor_size
    if events["y"].max() >= h or events["x"].max() >= w or events["channel"].max() > 1:
        raise PlotInputError(
            f"events: y up to {events['y'].max()}, x up to {events['x'].max()}, channel up to "
            f"{events['channel'].max()}; expected y < {h}, x < {w} and channel 0 (OFF) or 1 (ON)"
        )
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise PlotInputError(f"n_frames={n_frames!r}: expected an int >= 1")
    t0, span = int(events["t"][0]), int(events["t"][-1] - events["t"][0]) + 1
    window = np.minimum((events["t"] - t0) * n_frames // span, n_frames - 1)
    counts = np.zeros((n_frames, 2, h, w))
    np.add.at(counts, (window, events["channel"], events["y"], events["x"]), 1)
    scale = max(np.percentile(counts[counts > 0], 99), 1.0)
    fig = _figure(width=1.0 + 2.4 * n_frames, height=3.2)
    axes = fig.subplots(1, n_frames, squeeze=False)[0]
    for k, ax in enumerate(axes):
        on, off = np.clip(counts[k, 1] / scale, 0, 1), np.clip(counts[k, 0] / scale, 0, 1)
        ax.imshow(np.stack([on, np.zeros_like(on), off], -1), interpolation="nearest")
        start_ms = (k * span // n_frames) / 1000.0
        ax.set_title(f"{start_ms:.0f}-{((k + 1) * span // n_frames) / 1000.0:.0f} ms\n"
                     f"{int(counts[k, 1].sum())} ON, {int(counts[k, 0].sum())} OFF", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} (red ON, blue OFF; from t = {t0} µs)", fontsize=10)
    return _save(fig, path)


def plot_firing_rates(path: PathLike, rates: Mapping[str, float], title: str = "Firing rate per layer") -> Path:
    """Bar chart of ``rates``: layer name -> mean events per neuron per second (Hz), in order."""
    if not isinstance(rates, Mapping) or not rates:
        raise PlotInputError(f"rates: got {type(rates).__name__}; expected a non-empty dict layer name -> Hz")
    for name, value in rates.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 0:
            raise PlotInputError(f"rates[{name!r}] = {value!r}; expected a rate in Hz >= 0")
    fig = _figure(width=6.0, height=1.2 + 0.45 * len(rates))
    ax = fig.subplots()
    bars = ax.barh(np.arange(len(rates)), list(rates.values()), color="tab:green")
    ax.bar_label(bars, [f"{v:.3g} Hz" for v in rates.values()], fontsize=8, padding=2)
    ax.set_yticks(np.arange(len(rates)), [str(name) for name in rates])
    ax.invert_yaxis()
    ax.set_xlabel("mean events per neuron per second (Hz)")
    ax.set_xlim(0, 1.2 * max(max(rates.values()), 1e-9))
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_memory_use(path: PathLike, rows: Sequence[Any], title: str = "Memory use per core") -> Path:
    """Bar chart of kernel, neuron and bias memory used per core, in % of what the core offers.

    ``rows``: one per used core, each a mapping or object with ``core`` (int), ``layer``
    (name, str) and, for each kind in kernel / neuron / bias, ``<kind>_used`` and
    ``<kind>_available`` (entries). Bars are labelled ``used/available``.
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise PlotInputError(
            f"rows: got {type(rows).__name__}; expected a non-empty list of rows with core, layer, "
            "kernel_used, kernel_available, neuron_used, neuron_available, bias_used, bias_available"
        )
    table = [_memory_row(i, row) for i, row in enumerate(rows)]
    fig = _figure(width=8.0, height=1.5 + 0.6 * len(table))
    ax = fig.subplots()
    positions = np.arange(len(table))
    height = 0.8 / len(MEMORY_KINDS)
    for k, kind in enumerate(MEMORY_KINDS):
        used = np.array([r[f"{kind}_used"] for r in table], dtype=float)
        available = np.array([r[f"{kind}_available"] for r in table], dtype=float)
        percent = np.divide(100.0 * used, available, out=np.zeros_like(used), where=available > 0)
        bars = ax.barh(positions + (k - 1) * height, percent, height=height, label=kind)
        ax.bar_label(bars, [f"{int(u)}/{int(a)}" for u, a in zip(used, available)], fontsize=7, padding=2)
    ax.axvline(100.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yticks(positions, [f"core {r['core']}: {r['layer']}" for r in table])
    ax.invert_yaxis()
    ax.set_xlabel("memory used (% of the core's capacity)")
    ax.set_xlim(0, max(115.0, ax.get_xlim()[1]))
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_divergence(
    path: PathLike,
    expected: np.ndarray,
    received: np.ndarray,
    layer: int,
    title: str = "Hardware vs simulation",
) -> Path:
    """Expected (simulation) vs received (device) events of one ``layer`` over time.

    Top: both rasters overlaid. Bottom: cumulative event counts. The first divergence (first
    position where the event sequences differ in t, channel, y or x) is marked with a red line;
    the title says "no divergence" when the two agree.
    """
    exp = _select_layer("expected", expected, layer)
    rec = _select_layer("received", received, layer)
    t_div = _first_divergence_us(exp, rec)
    rows = _neuron_rows(np.concatenate([exp, rec]))
    fig = _figure(width=8.0, height=5.5)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.scatter(exp["t"] / 1000.0, rows[: len(exp)], s=30, facecolors="none", edgecolors="tab:blue",
                label=f"expected (simulation, {len(exp)})")
    top.scatter(rec["t"] / 1000.0, rows[len(exp):], s=12, marker="x", color="tab:orange",
                label=f"received (device, {len(rec)})")
    top.set_ylabel("neuron")
    top.legend(loc="upper left", fontsize=8)
    for ev, name in ((exp, "expected"), (rec, "received")):
        bottom.step(ev["t"] / 1000.0, np.arange(1, len(ev) + 1), where="post", label=name)
    bottom.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("events so far")
    bottom.set_xlabel("time (ms)")
    if t_div is None:
        verdict = "no divergence"
    else:
        verdict = f"first divergence at t = {t_div} µs"
        for ax in (top, bottom):
            ax.axvline(t_div / 1000.0, color="red", linewidth=1.2)
    fig.suptitle(f"{title}, layer {layer}: {verdict}")
    return _save(fig, path)


def plot_confusion_matrix(
    path: PathLike,
    true_labels: Sequence[int],
    predicted_labels: Sequence[int],
    class_names: Optional[Sequence[str]] = None,
    title: str = "Confusion matrix",
) -> Path:
    """Confusion matrix (rows: true class, columns: predicted class) with counts and accuracy.

    Labels are integers in ``[0, n_classes)``; ``n_classes`` is ``len(class_names)`` when
    given, else one more than the largest label.
    """
    truth = _labels("true_labels", true_labels)
    pred = _labels("predicted_labels", predicted_labels)
    if len(truth) != len(pred) or len(truth) == 0:
        raise PlotInputError(
            f"true_labels / predicted_labels: lengths {len(truth)} and {len(pred)}; expected two "
            "non-empty sequences of the same length"
        )
    n = len(class_names) if class_names is not None else int(max(truth.max(), pred.max())) + 1
    for name, labels in (("true_labels", truth), ("predicted_labels", pred)):
        if labels.max() >= n:
            i = int(np.argmax(labels >= n))
            raise PlotInputError(
                f"{name}[{i}] = {labels[i]}: outside the {n} classes of class_names; pass a "
                "name for every class"
            )
    matrix = np.bincount(truth * n + pred, minlength=n * n).reshape(n, n)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
    fig = _figure(width=1.5 + 0.5 * n, height=1.2 + 0.5 * n)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > matrix.max() / 2 else "black")
    ax.set_xticks(range(n), names, rotation=90 if n > 12 or max(map(len, names)) > 4 else 0)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / len(truth)
    ax.set_title(f"{title} (accuracy {100 * accuracy:.1f} %)")
    return _save(fig, path)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: matplotlib is an optional extra

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: PathLike) -> Path:
    path = Path(path)
    if path.suffix != ".png":
        raise PlotInputError(f"path={str(path)!r}: expected a file name ending in '.png'")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _checked(name: str, events) -> np.ndarray:
    try:
        return check_events(events)
    except InvalidEventsError as exc:
        raise PlotInputError(f"{name}: {exc}") from exc


def _layer_panels(name: str, events: np.ndarray, direction: str) -> list[tuple[str, np.ndarray]]:
    events = _checked(name, events)
    return [
        (f"{direction} layer {int(lid)}", events[events["layer"] == lid])
        for lid in np.unique(events["layer"])
    ]


def _select_layer(name: str, events: np.ndarray, layer: int) -> np.ndarray:
    events = _checked(name, events)
    return events[events["layer"] == layer]


def _neuron_rows(events: np.ndarray) -> np.ndarray:
    """Row of each event's neuron: ``(channel * H + y) * W + x`` with H, W from the data."""
    if len(events) == 0:
        return np.zeros(0, dtype=np.int64)
    h = int(events["y"].max()) + 1
    w = int(events["x"].max()) + 1
    return (events["channel"].astype(np.int64) * h + events["y"]) * w + events["x"]


def _first_divergence_us(expected: np.ndarray, received: np.ndarray) -> Optional[int]:
    """Time (µs) of the first position where the two event sequences differ, or None."""
    n = min(len(expected), len(received))
    differ = np.zeros(n, dtype=bool)
    for f in ("t", "channel", "y", "x"):
        differ |= expected[f][:n] != received[f][:n]
    if differ.any():
        i = int(np.argmax(differ))
        return int(min(expected["t"][i], received["t"][i]))
    if len(expected) != len(received):
        longer = expected if len(expected) > n else received
        return int(longer["t"][n])
    return None


def _memory_row(index: int, row: Any) -> dict:
    keys = ["core", "layer"] + [f"{k}_{s}" for k in MEMORY_KINDS for s in ("used", "available")]
    get = row.get if isinstance(row, Mapping) else lambda key: getattr(row, key, None)
    values = {key: get(key) for key in keys}
    for key, value in values.items():
        if value is None:
            raise PlotInputError(
                f"rows[{index}]: has no '{key}'; each row needs {', '.join(keys)}"
            )
        is_count = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0
        if key != "layer" and not is_count:
            raise PlotInputError(f"rows[{index}].{key} = {value!r}; expected an integer >= 0")
    return values


def _labels(name: str, labels) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise PlotInputError(
            f"{name}: shape {arr.shape}, dtype {arr.dtype}; expected a 1-D sequence of integer "
            "class labels"
        )
    if arr.size and arr.min() < 0:
        i = int(np.argmin(arr))
        raise PlotInputError(f"{name}[{i}] = {arr[i]}; class labels must be >= 0")
    return arr.astype(np.int64)
