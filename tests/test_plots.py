"""Plots render real PNG files; their header says PNG and the size matches the figure."""

from __future__ import annotations

import struct
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from backend.files.plots import (
    DPI,
    PlotInputError,
    _first_divergence_us,
    plot_confusion_matrix,
    plot_divergence,
    plot_event_frames,
    plot_event_raster,
    plot_firing_rates,
    plot_memory_use,
)
from snnlib import empty_events

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk; asserts it is a PNG."""
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def events(n: int, layer: int, seed: int, t_scale: int = 50_000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev["t"] = np.sort(rng.integers(0, t_scale, n))
    ev["layer"] = layer
    ev["channel"] = rng.integers(0, 4, n)
    ev["y"] = rng.integers(0, 8, n)
    ev["x"] = rng.integers(0, 8, n)
    return ev


def test_event_raster_has_one_panel_per_layer(tmp_path):
    inp = events(300, 0, 1)
    out = np.sort(np.concatenate([events(80, 0, 2), events(20, 3, 3)]), order="t", kind="stable")
    path = plot_event_raster(tmp_path / "sub" / "raster.png", inp, out)
    assert path == tmp_path / "sub" / "raster.png"
    w, h = png_size(path)
    assert (w, h) == (8 * DPI, int((1.0 + 1.8 * 3) * DPI))  # in layer 0, out layers 0 and 3
    only_input = plot_event_raster(tmp_path / "in.png", inp)
    assert png_size(only_input) == (8 * DPI, int((1.0 + 1.8) * DPI))


@dataclass
class Row:
    core: int
    layer: str
    kernel_used: int
    kernel_available: int
    neuron_used: int
    neuron_available: int
    bias_used: int
    bias_available: int


def test_memory_use_accepts_dicts_and_objects(tmp_path):
    rows = [
        Row(0, "conv1", 4096, 16384, 8192, 65536, 8, 1024),
        dict(core=3, layer="fc", kernel_used=30000, kernel_available=32768, neuron_used=10,
             neuron_available=32768, bias_used=10, bias_available=1024),
    ]
    path = plot_memory_use(tmp_path / "memory.png", rows)
    assert png_size(path) == (8 * DPI, int((1.5 + 0.6 * 2) * DPI))


def test_memory_a_core_lacks_is_an_empty_bar_without_numeric_warnings(tmp_path):
    """A memory kind of which a core has none (0 available, e.g. a custom chip spec without
    bias memory) draws an empty bar labelled used/0: no division by zero reaches the user."""
    row = dict(core=0, layer="conv", kernel_used=10, kernel_available=100, neuron_used=5,
               neuron_available=50, bias_used=0, bias_available=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for used in (0, 4):
            path = plot_memory_use(tmp_path / f"memory{used}.png", [dict(row, bias_used=used)])
            assert png_size(path) == (8 * DPI, int((1.5 + 0.6) * DPI))


def test_divergence_plot_marks_first_difference(tmp_path):
    exp = events(60, 2, 5)
    rec = exp.copy()
    rec["x"][25] = (rec["x"][25] + 1) % 8
    assert _first_divergence_us(exp, rec) == int(exp["t"][25])
    other_layer = events(10, 1, 6)
    path = plot_divergence(tmp_path / "div.png", np.sort(np.concatenate([exp, other_layer]), order="t"),
                           rec, layer=2)
    assert png_size(path) == (8 * DPI, int(5.5 * DPI))
    same = plot_divergence(tmp_path / "same.png", exp, exp, layer=2)
    assert png_size(same) == (8 * DPI, int(5.5 * DPI))
    assert path.read_bytes() != same.read_bytes()  # the marked plot differs from the clean one


def test_first_divergence_covers_missing_events_and_agreement():
    exp = events(10, 0, 7)
    assert _first_divergence_us(exp, exp) is None
    assert _first_divergence_us(exp, exp[:6]) == int(exp["t"][6])
    assert _first_divergence_us(exp[:0], exp) == int(exp["t"][0])


def test_confusion_matrix_size_follows_classes(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 10, 200)
    pred = np.where(rng.random(200) < 0.9, truth, rng.integers(0, 10, 200))
    path = plot_confusion_matrix(tmp_path / "cm.png", truth, pred)
    assert png_size(path) == (int((1.5 + 5.0) * DPI), int((1.2 + 5.0) * DPI))
    named = plot_confusion_matrix(tmp_path / "cm3.png", [0, 1, 2], [0, 2, 2], class_names=["a", "b", "c"])
    assert png_size(named) == (int((1.5 + 1.5) * DPI), int((1.2 + 1.5) * DPI))


def test_bad_inputs_name_the_argument(tmp_path):
    ev = events(5, 0, 1)
    with pytest.raises(PlotInputError, match="expected a file name ending in '.png'"):
        plot_event_raster(tmp_path / "r.jpg", ev)
    with pytest.raises(PlotInputError, match="both are empty"):
        plot_event_raster(tmp_path / "r.png", empty_events(0))
    with pytest.raises(PlotInputError, match="output_events: .*dtype float64"):
        plot_event_raster(tmp_path / "r.png", ev, np.zeros(3))
    with pytest.raises(PlotInputError, match=r"rows\[0\]: has no 'bias_available'"):
        plot_memory_use(tmp_path / "m.png", [dict(core=0, layer="a", kernel_used=1, kernel_available=2,
                                                  neuron_used=1, neuron_available=2, bias_used=0)])
    with pytest.raises(PlotInputError, match=r"rows\[0\].kernel_used = -1"):
        plot_memory_use(tmp_path / "m.png", [Row(0, "a", -1, 2, 1, 2, 0, 1)])
    with pytest.raises(PlotInputError, match="non-empty list of rows"):
        plot_memory_use(tmp_path / "m.png", [])
    with pytest.raises(PlotInputError, match="lengths 2 and 3"):
        plot_confusion_matrix(tmp_path / "c.png", [0, 1], [0, 1, 1])
    with pytest.raises(PlotInputError, match=r"predicted_labels\[1\] = 5: outside the 3 classes"):
        plot_confusion_matrix(tmp_path / "c.png", [0, 1], [0, 5], class_names=["a", "b", "c"])
    with pytest.raises(PlotInputError, match=r"true_labels\[2\] = 3: outside the 3 classes"):
        plot_confusion_matrix(tmp_path / "c.png", [0, 2, 3], [0, 1, 2], class_names=["a", "b", "c"])
    with pytest.raises(PlotInputError, match=r"true_labels\[1\] = -2"):
        plot_confusion_matrix(tmp_path / "c.png", [0, -2], [0, 1])
    with pytest.raises(PlotInputError, match="integer class labels"):
        plot_confusion_matrix(tmp_path / "c.png", [0.5, 1.0], [0, 1])
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_event_frames_draw_on_and_off_counts_per_time_window(tmp_path):
    ev = events(400, 13, 8)
    ev["channel"] = np.arange(400) % 2
    path = plot_event_frames(tmp_path / "frames.png", ev, (8, 8), n_frames=3)
    assert png_size(path) == (round((1.0 + 2.4 * 3) * DPI), round(3.2 * DPI))
    on_only = ev.copy()
    on_only["channel"] = 1
    other = plot_event_frames(tmp_path / "on.png", on_only, (8, 8), n_frames=3)
    assert other.read_bytes() != path.read_bytes()  # polarity changes the colours drawn


def test_firing_rates_one_bar_per_layer(tmp_path):
    path = plot_firing_rates(tmp_path / "rates.png", {"dvs": 9.3, "conv1": 34.0, "fc": 0.0})
    assert png_size(path) == (round(6.0 * DPI), round((1.2 + 0.45 * 3) * DPI))


def test_frames_and_rates_reject_what_they_cannot_draw(tmp_path):
    ev = events(20, 13, 9)
    ev["channel"] = 1
    with pytest.raises(PlotInputError, match=r"x up to 7, channel up to 1; expected y < 4, x < 8"):
        plot_event_frames(tmp_path / "f.png", ev, (4, 8))
    two_layers = np.sort(np.concatenate([ev, events(5, 0, 3)]), order="t")
    with pytest.raises(PlotInputError, match=r"layers \[0, 13\]; expected a non-empty array of one layer"):
        plot_event_frames(tmp_path / "f.png", two_layers, (8, 8))
    with pytest.raises(PlotInputError, match=r"channel up to 3; expected .* channel 0 \(OFF\) or 1 \(ON\)"):
        plot_event_frames(tmp_path / "f.png", events(20, 13, 9), (8, 8))
    with pytest.raises(PlotInputError, match=r"n_frames=0"):
        plot_event_frames(tmp_path / "f.png", ev, (8, 8), n_frames=0)
    with pytest.raises(PlotInputError, match=r"sensor_size=\(8,\)"):
        plot_event_frames(tmp_path / "f.png", ev, (8,))
    with pytest.raises(PlotInputError, match=r"rates\['fc'\] = -1.0"):
        plot_firing_rates(tmp_path / "r.png", {"conv1": 2.0, "fc": -1.0})
    with pytest.raises(PlotInputError, match="non-empty dict"):
        plot_firing_rates(tmp_path / "r.png", {})
    assert not list(tmp_path.iterdir())


def test_importing_backend_plots_does_not_import_matplotlib():
    code = "import sys, backend.files.plots, backend.files.events; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _frame_events(field: str, value: int) -> np.ndarray:
    """Six DVS events (layer 13) on a 3x5 sensor, event 2's ``field`` set to ``value``."""
    ev = events(6, 13, 4)
    ev["channel"] %= 2
    ev["y"] %= 3
    ev["x"] %= 5
    ev[field][2] = value
    return ev


def test_event_frames_take_each_field_up_to_its_bound_and_refuse_beyond(tmp_path):
    at_bounds = _frame_events("y", 2)
    at_bounds["x"][3], at_bounds["channel"][4] = 4, 1
    assert png_size(plot_event_frames(tmp_path / "ok.png", at_bounds, (3, 5), n_frames=1)) == \
        (round(3.4 * DPI), round(3.2 * DPI))
    for field, bad in (("y", 3), ("x", 5), ("channel", 2)):
        with pytest.raises(PlotInputError, match=rf"{field} up to {bad}"):
            plot_event_frames(tmp_path / "bad.png", _frame_events(field, bad), (3, 5))
    for size in ((0, 5), (3, 0), (3.0, 5), [3, 5], (3, 5, 1)):
        with pytest.raises(PlotInputError, match=r"sensor_size=.*two positive ints"):
            plot_event_frames(tmp_path / "bad.png", at_bounds, size)
    for n_frames in (0, -1, True, 2.0):
        with pytest.raises(PlotInputError, match=rf"n_frames={n_frames!r}: expected an int >= 1"):
            plot_event_frames(tmp_path / "bad.png", at_bounds, (3, 5), n_frames=n_frames)
    one_pixel = _frame_events("y", 0)
    one_pixel["y"], one_pixel["x"] = 0, 0
    plot_event_frames(tmp_path / "one.png", one_pixel, (1, 1))  # the smallest sensor
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png", "one.png"]


@pytest.mark.parametrize("key, bad", [("kernel_used", -1), ("neuron_available", True),
                                      ("core", 1.5), ("bias_used", "3")])
def test_memory_rows_take_counts_from_zero_and_refuse_anything_else(tmp_path, key, bad):
    row = dict(core=0, layer="conv", kernel_used=0, kernel_available=0, neuron_used=0,
               neuron_available=1, bias_used=0, bias_available=0)
    plot_memory_use(tmp_path / "zeros.png", [row])
    with pytest.raises(PlotInputError, match=rf"rows\[1\].{key} = {bad!r}; expected an integer >= 0"):
        plot_memory_use(tmp_path / "bad.png", [row, dict(row, **{key: bad})])
    with pytest.raises(PlotInputError, match=rf"rows\[0\]: has no '{key}'"):
        plot_memory_use(tmp_path / "bad.png", [dict(row, **{key: None})])
    assert [p.name for p in tmp_path.iterdir()] == ["zeros.png"]
