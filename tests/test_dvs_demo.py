"""backend.app.dvs_demo in a reduced form (96 training and 24 test recordings, 12 epochs; the
full demo is ``spikeflash demo --dvs``): trains through the DVS stage's pooling, maps with the
DVS stage, streams the test recordings from the sensor of an emulator process over a pty,
bit-exact."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from backend.app.dvs_demo import DURATION_US, DVS_POOLING, FULL, N_BINS, SENSOR, firing_rates, run_dvs_demo
from backend.app.dvs_shapes import class_names
from backend.testing.qualification import pooled_chain
from mapper.report import CoreUsage, FitReport
from snnlib import DVS_LAYER_ID, EVENT_DTYPE, SimulationResult

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide.md"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_reduced_dvs_demo_runs_bit_exact_on_an_emulator_process(tmp_path, capsys):
    assert run_dvs_demo(tmp_path / "out", n_train=96, n_test=24, epochs=12) == 0
    out = capsys.readouterr().out

    assert re.search(r"^DVS shapes: 96 training and 24 test recordings of 100 ms on a 128x128 sensor, "
                     r"12 classes, \d+ events per recording on average; the first starts at "
                     r"t = 1700000000000000 µs$", out, re.M)
    assert re.search(r"^mapped to speck2f through the DVS stage:$", out, re.M)
    assert re.findall(r"^\s+\d+\s+(conv1|conv2|conv3|fc)\s+\d+/\d+", out, re.M) == ["conv1", "conv2", "conv3", "fc"]
    # through a pty, from the emulator's sensor
    assert re.search(r"on /dev/pts/\d+, its sensor replaying the 24 test recordings; flashing$", out, re.M)

    accuracy = {name: float(v) for name, v in re.findall(
        r"^  (device|event-exact simulation|time-stepped float SNN)\b.*?(\d+\.\d+) %$", out, re.M)}
    assert set(accuracy) == {"device", "event-exact simulation", "time-stepped float SNN"}
    # 12 classes: chance is 8.3 %; the reduced training set still gets several times that
    assert accuracy["device"] == accuracy["event-exact simulation"] >= 25.0
    assert accuracy["time-stepped float SNN"] >= 25.0
    exact = re.search(r"BIT-EXACT: all (\d+) output events on 1 monitored layer\(s\) of 24 samples agree", out)
    assert exact and int(exact.group(1)) > 24

    pngs = re.findall(r"^  (\S+\.png)$", out, re.M)
    assert [p.rsplit("/", 1)[1] for p in pngs] == [
        "event_frames_sample0.png", "firing_rates.png", "simulation_vs_device_sample0.png", "confusion_device.png"]
    for path in pngs:
        assert path.startswith(str(tmp_path / "out"))
        data = open(path, "rb").read()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, path


def test_run_dvs_demo_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"run_dvs_demo\(n_test=0\): expected an int >= 1"):
        run_dvs_demo(n_test=0)
    with pytest.raises(ValueError, match=r"run_dvs_demo\(epochs=1.5\)"):
        run_dvs_demo(epochs=1.5)


def test_the_full_demo_is_the_one_the_guide_describes():
    guide = " ".join(GUIDE.read_text().split())
    n_test, n_classes = (int(n) for n in re.search(r"accuracy on (\d+) test recordings \((\d+) classes\)",
                                                   guide).groups())
    assert (FULL["n_test"], len(class_names())) == (n_test, n_classes) == (240, 12)
    assert f"of {n_test} samples agree" in guide and f"with the {n_test} test recordings" in guide
    assert f"for {DURATION_US // 1000} ms in front of a simulated {SENSOR[0]}x{SENSOR[1]} event camera" in guide
    assert f"{N_BINS} time bins) whose first layer, a {DVS_POOLING}x{DVS_POOLING} sum pooling" in guide
    assert FULL["n_train"] == 4 * FULL["n_test"]  # 80 training and 20 test recordings per class


def test_firing_rates_are_events_per_neuron_per_second_over_all_recordings_by_layer_name():
    network = pooled_chain()  # core 1: 4x8x8 = 256 neurons, core 4: 3x2x2 = 12
    assert (DURATION_US, SENSOR) == (100_000, (128, 128))  # 2 recordings: 0.2 s
    report = FitReport("speck2f", memory=[CoreUsage(1, "conv1", None, None)])  # core 4 unnamed
    counts = [(6000, 200, 1), (10384, 312, 5)]  # DVS events in, core 1 and core 4 spikes out
    results = [SimulationResult(np.zeros(0, EVENT_DTYPE), {}, {
        DVS_LAYER_ID: {"events_in": dvs}, 1: {"spikes_out": one}, 4: {"spikes_out": four}})
        for dvs, one, four in counts]
    rates = firing_rates(report, network, results)
    assert list(rates) == ["DVS input (per pixel)", "conv1", "core 4"]
    # 16384 / (128 * 128 * 0.2 s), 512 / (256 * 0.2 s), 6 / (12 * 0.2 s)
    assert list(rates.values()) == pytest.approx([5.0, 10.0, 2.5], rel=1e-12)
