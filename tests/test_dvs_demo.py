"""backend.app.dvs_demo in a reduced form (96 training and 24 test recordings, 12 epochs; the
full demo is ``spikeflash demo --dvs``): trains through the DVS stage's pooling, maps with the
DVS stage, streams the test recordings from the sensor of an emulator process over a pty,
bit-exact."""

from __future__ import annotations

import re

import pytest

from backend.app.dvs_demo import run_dvs_demo

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
