"""backend.app.digits_demo: the end-to-end demo trains, maps, flashes an emulator process over a
pty, runs the test digits on it and proves the device matched the simulation."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from backend.app.digits_demo import N_BINS, check_agreement, first_step, predict, rate_code, run_demo
from backend.devices import open_device
from backend.testing.qualification import qualification_config, random_input
from snnlib import EventSimulator, empty_events, simulate


@pytest.mark.slow
def test_demo_runs_end_to_end_on_an_emulator_process(tmp_path, capsys):
    assert run_demo(tmp_path / "out", n_test=30) == 0
    out = capsys.readouterr().out

    accuracy = {name: float(v) for name, v in re.findall(
        r"^  (device|event-exact simulation|time-stepped float SNN)\b.*?(\d+\.\d+) %$", out, re.M)}
    assert set(accuracy) == {"device", "event-exact simulation", "time-stepped float SNN"}
    assert accuracy["device"] == accuracy["event-exact simulation"] >= 90.0
    assert accuracy["time-stepped float SNN"] >= 90.0
    assert re.search(r"^accuracy on 30 test digits$", out, re.M)

    exact = re.search(r"BIT-EXACT: all (\d+) output events on (\d+) monitored layer\(s\) of 30 samples agree", out)
    assert exact and int(exact.group(1)) > 30 and int(exact.group(2)) == 1

    assert re.search(r"^memory \(needed/available\):$", out, re.M)
    assert re.findall(r"^\s+\d+\s+(conv1|conv2|fc)\s+\d+/16384", out, re.M) == ["conv1", "conv2", "fc"]  # one row per core, by conv name
    assert re.search(r"on /dev/pts/\d+; flashing", out)  # went through a pty

    pngs = re.findall(r"^  (\S+\.png)$", out, re.M)
    assert len(pngs) == 3
    for path in pngs:
        data = open(path, "rb").read()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000, path
        assert path.startswith(str(tmp_path / "out"))


def test_rate_code_turns_pixel_values_into_that_many_spikes_spread_over_the_bins():
    images = np.arange(N_BINS + 1).reshape(1, 1, N_BINS + 1)
    raster = rate_code(images)
    assert raster.shape == (1, N_BINS, 1, N_BINS + 1)
    assert raster.max() == 1
    np.testing.assert_array_equal(raster.sum(1)[0, 0], np.arange(N_BINS + 1))
    half = raster[0, :, 0, N_BINS // 2]  # v = 8: every other bin
    np.testing.assert_array_equal(half, np.tile([0, 1], N_BINS // 2))


def test_rate_code_rejects_values_outside_the_bin_count():
    with pytest.raises(ValueError, match=r"values 0\.\.17; expected 0\.\.16"):
        rate_code(np.array([[[0, 17]]]))


def test_predict_takes_most_spikes_then_earliest_first_spike():
    events = empty_events(5)
    events["t"] = [0, 10, 20, 30, 40]
    events["channel"] = [3, 5, 5, 3, 7]
    assert predict(events, 10) == 3  # tie 2:2, class 3 fired first
    events["channel"][4] = 5
    assert predict(events, 10) == 5
    assert predict(empty_events(0), 10) == 0


def test_run_demo_rejects_a_bad_n_test():
    with pytest.raises(ValueError, match=r"n_test=0"):
        run_demo(n_test=0)


def test_training_gives_the_same_weights_whatever_the_thread_count():
    import torch

    from backend.app.digits_demo import load_digit_rasters, train_ann

    x_train, y_train, _, _ = load_digit_rasters()
    rates, labels = x_train[:192].mean(1), y_train[:192]
    weights = []
    for threads in (2, 1):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        weights.append(train_ann(rates, labels, epochs=1).state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_first_step_is_each_class_first_spiking_bin_or_never():
    counts = np.array([[0, 0, 1, 0], [0, 2, 0, 0], [1, 0, 3, 0]])  # (T=3, classes=4)
    never = np.iinfo(np.int64).max
    np.testing.assert_array_equal(first_step(counts), [2, 1, 0, never])


def _agreement(device, config, samples):
    """check_agreement of ``device``'s outputs (run now) against the simulation of ``config``."""
    simulated = [simulate(config.to_network(), s).events for s in samples]
    received = []
    for events in samples:
        device.reset()
        received.append(device.run(events, rasters=False).events)
    return check_agreement(config, device, samples, simulated, received)


def test_check_agreement_accepts_reordered_events_and_names_the_first_sample_that_diverges():
    config = qualification_config("single_core", 5)
    network = config.to_network()
    samples = [empty_events(0), random_input(network, 300, seed=5), random_input(network, 300, seed=6)]
    with open_device("emu://") as device:
        device.flash(config)
        simulated = [simulate(network, s).events for s in samples]
        reordered = [e[::-1].copy() for e in simulated]  # same events, another order: re-run agrees
        agreement = check_agreement(config, device, samples, simulated, reordered)
        assert agreement.bit_exact and agreement.n_events == sum(map(len, simulated)) > 0
        assert str(agreement).startswith(f"BIT-EXACT: all {agreement.n_events} output events on 1 ")

        wrong = copy.deepcopy(network)
        wrong.layers[0].weights[1] += 3  # a faulty chip computes with other weights
        device._open_chip()._engine = EventSimulator(wrong)
        agreement = _agreement(device, config, samples)
        assert not agreement.bit_exact and agreement.first_bad_sample == 1  # sample 0: no output
        assert str(agreement).startswith("DIVERGED on sample 1 of 3:\nDIVERGED at t=")
