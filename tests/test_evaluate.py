"""Dataset-scale evaluation: the same results (and the same results file, byte for byte) in this
process, on 2 local worker processes, on a Ray local cluster and on a farm of 2 emulator
processes on ptys; a driver killed mid-run resumes without computing any sample twice; a worker
or device killed mid-run loses no sample."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.analysis.datasets import dataset_samples
from backend.analysis.evaluate import Sweep, evaluate, sweep
from backend.analysis.runner import RunnerSpec, predict
from backend.analysis.workers import make_slots
from backend.app.cli import main
from backend.errors import DatasetError, EvaluationError
from backend.files.events import events_to_xytp, save_events
from mapper import map_model
from snnlib import DVS_LAYER_ID, SpikingLayer, SumPool2d, empty_events, raster_to_events

ROOT = Path(__file__).resolve().parents[1]
N_PER_CLASS = 4
CLASSES = ("circle", "cross", "line")


def tiny_config(weight_high: float = 0.6):
    """conv 1->4 (8x8) -> pool 2 -> conv 4->3 (4x4 -> 1x1): 3 output classes on 2 cores."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), SpikingLayer(), SumPool2d(2),
                                torch.nn.Conv2d(4, 3, 4, bias=False), SpikingLayer())
    with torch.no_grad():
        for conv in (model[0], model[3]):
            conv.weight.uniform_(0.0, weight_high)
    return map_model(model, input_shape=(1, 8, 8), chip="speck2f")


@pytest.fixture(scope="module")
def mapping():
    return tiny_config()


@pytest.fixture(scope="module")
def folder(mapping, tmp_path_factory):
    """DATA/<class>/<i>.npy: 4 random recordings of 20 ms per class."""
    root = tmp_path_factory.mktemp("recordings")
    rng = torch.Generator().manual_seed(1)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(N_PER_CLASS):
            raster = (torch.rand(20, 1, 8, 8, generator=rng) < 0.1 + 0.1 * label).float()
            save_events(root / name / f"{i}.npy", raster_to_events(raster, mapping.input_cores[0], 1000))
    return root


@pytest.fixture(scope="module")
def config_path(mapping, tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    mapping.config.save(path)
    return path


@pytest.fixture(scope="module")
def reference(config_path, folder, tmp_path_factory):
    """The uninterrupted in-process run and its results file."""
    path = tmp_path_factory.mktemp("reference") / "tiny.results.jsonl"
    return evaluate(config_path, folder, workers=0, results=path)


def fields(evaluation):
    return [vars(s) for s in evaluation.samples]


def test_the_reference_run_predicts_every_sample_and_summarizes_them(reference):
    n = N_PER_CLASS * len(CLASSES)
    assert [s.index for s in reference.samples] == list(range(n)) and reference.classes == list(CLASSES)
    assert [s.label for s in reference.samples] == [i // N_PER_CLASS for i in range(n)]
    summary = reference.summary
    assert summary.n_samples == n and summary.n_failed == 0 and summary.n_computed == n
    assert summary.confusion.sum() == n
    correct = sum(s.prediction == s.label for s in reference.samples)
    assert summary.accuracy == correct / n
    for s in reference.samples:
        assert len(s.counts) == 3 and s.counts[s.prediction] == max(s.counts)
        assert s.synops > 0 and s.bit_exact is None and s.error is None
    assert reference.output_layer == 1  # the core that sends nowhere
    lines = reference.results.read_text().splitlines()
    assert len(lines) == n + 1 and '"format":"spikeflash-evaluate/1"' in lines[0]


def test_the_counts_are_the_output_layer_spikes_per_channel_of_the_simulation(mapping, reference, folder):
    from snnlib import simulate

    network = mapping.config.to_network()
    for sample, result in zip(dataset_samples(folder), reference.samples):
        output = simulate(network, sample.events).events
        output = output[output["layer"] == reference.output_layer]
        assert result.counts == np.bincount(output["channel"], minlength=3).tolist()
        assert result.prediction == predict(output, 3)
    assert sum(sum(s.counts) for s in reference.samples) > 0
    silent = evaluate(mapping.config, [(empty_events(0), 2)], workers=0).samples[0]
    assert (silent.counts, silent.prediction) == ([0, 0, 0], 0)  # a silent output predicts class 0


def test_a_prediction_is_the_most_spikes_then_the_first_spike_then_the_lowest_class():
    """``predict``: the class whose output neuron spiked most; a tie goes to the earliest
    first spike, then to the lower class; a silent output is class 0."""
    def output(*spikes):  # (t, channel) pairs
        events = empty_events(len(spikes))
        events["t"], events["channel"] = [t for t, _ in spikes], [c for _, c in spikes]
        return events
    assert predict(output((5, 2), (6, 2), (7, 1)), 4) == 2
    assert predict(output((9, 1), (3, 3), (10, 1), (4, 3)), 4) == 3  # 2 spikes each; 3 spiked first
    assert predict(output((1, 2), (1, 1)), 4) == 1  # tied twice: the lower class
    assert predict(output(), 4) == 0


def test_two_local_worker_processes_give_the_same_results_file(reference, config_path, folder, tmp_path):
    path = tmp_path / "two.jsonl"
    two = evaluate(config_path, folder, workers=2, results=path)
    assert fields(two) == fields(reference) and two.lost == []
    assert path.read_bytes() == reference.results.read_bytes()


def test_a_driver_killed_mid_run_resumes_without_computing_a_sample_twice(reference, config_path, folder,
                                                                          tmp_path):
    path = tmp_path / "killed.jsonl"
    driver = textwrap.dedent("""
        import sys, time
        from backend.analysis.evaluate import evaluate
        done = []
        def on_result(result):
            done.append(result)
            if len(done) == 4:
                print("READY", flush=True)
                time.sleep(120)
        evaluate(sys.argv[1], sys.argv[2], workers=0, results=sys.argv[3], on_result=on_result)
    """)
    process = subprocess.Popen([sys.executable, "-c", driver, str(config_path), str(folder), str(path)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert process.stdout.readline().strip() == "READY"
    finally:
        os.kill(process.pid, signal.SIGKILL)  # the driver dies mid-run, no cleanup
        process.wait(30)
    kept = path.read_text().splitlines()[1:]
    assert len(kept) == 4
    resumed = evaluate(config_path, folder, workers=0, results=path, resume=True)
    assert resumed.summary.n_resumed == 4 and resumed.summary.n_computed == len(reference.samples) - 4
    assert fields(resumed) == fields(reference)
    assert path.read_bytes() == reference.results.read_bytes()
    assert set(kept) <= set(path.read_text().splitlines())


def test_a_worker_killed_mid_run_loses_no_sample(reference, config_path, folder):
    import multiprocessing

    killed = []

    def kill_a_worker(result):
        if not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(victim.pid)

    survived = evaluate(config_path, folder, workers=2, on_result=kill_a_worker)
    assert fields(survived) == fields(reference)
    assert len(survived.lost) == 1 and f"pid {killed[0]}" in survived.lost[0]


def test_a_farm_of_two_emulators_on_ptys_is_bit_exact_and_survives_losing_one(reference, config_path, folder):
    from backend.emulator.processes import emulators_on_ptys, running_emulators

    with emulators_on_ptys(2) as (first, second):
        farm = evaluate(config_path, folder, devices=[first, second])  # a worker process per device
        assert [s.bit_exact for s in farm.samples] == [True] * len(reference.samples)
        assert [(s.prediction, s.counts, s.synops) for s in farm.samples] == \
            [(s.prediction, s.counts, s.synops) for s in reference.samples]
        assert farm.summary.n_bit_exact == len(reference.samples) and farm.lost == []
        assert str(farm).splitlines()[1] == f"device vs simulation: {len(reference.samples)} bit-exact, 0 diverged"
        pid = next(pid for pid, url in running_emulators() if url == second)

        def unplug(result):
            if pid is not None and result.index >= 2:
                os.kill(pid, signal.SIGKILL)

        one_left = evaluate(config_path, folder, devices=[first, second], on_result=unplug, timeout=5.0,
                            workers=0)  # a thread of this process per device
    assert [s.bit_exact for s in one_left.samples] == [True] * len(reference.samples)
    assert len(one_left.lost) == 1 and second in one_left.lost[0]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_a_ray_local_cluster_gives_the_same_results_with_tasks_and_device_actors(ray_cluster, reference,
                                                                                 config_path, folder, tmp_path):
    path = tmp_path / "ray.jsonl"
    on_ray = evaluate(config_path, folder, ray="auto", results=path)
    assert fields(on_ray) == fields(reference) and path.read_bytes() == reference.results.read_bytes()
    actors = evaluate(config_path, folder, ray="auto", devices=["emu://"])  # one actor keeps it flashed
    assert actors.summary.n_bit_exact == len(reference.samples)
    assert [s.prediction for s in actors.samples] == [s.prediction for s in reference.samples]


def test_every_dataset_form_gives_the_same_samples(mapping, folder):
    from_folder = list(dataset_samples(folder))
    pairs = [(s.events, s.label) for s in from_folder]
    assert [s.digest() for s in dataset_samples(pairs)] == [s.digest() for s in from_folder]
    assert [s.digest() for s in dataset_samples(iter(pairs))] == [s.digest() for s in from_folder]
    assert dataset_samples(folder).fingerprint == dataset_samples(str(folder)).fingerprint

    class TonicStyle:  # (x, y, t, p) recordings, as Tonic datasets return them
        def __len__(self):
            return 2

        def __getitem__(self, i):
            dvs = from_folder[i].events.copy()
            dvs["layer"] = 0
            return events_to_xytp(dvs), np.int64(i)

    tonic = list(dataset_samples(TonicStyle()))
    assert [s.label for s in tonic] == [0, 1] and all(s.error is None for s in tonic)
    assert (tonic[0].events["layer"] == DVS_LAYER_ID).all()
    with pytest.raises(DatasetError, match="expected a folder of class subfolders"):
        dataset_samples(42)
    with pytest.raises(DatasetError, match="no event files"):
        dataset_samples(folder / CLASSES[0])


def test_a_sample_that_fails_is_recorded_with_its_error_not_dropped(mapping, reference, folder):
    pairs = [(s.events, s.label) for s in dataset_samples(folder)][:3]
    bad = pairs[1][0].copy()
    bad["x"][0] = 99  # outside the 8x8 input
    pairs[1] = (bad, pairs[1][1])
    pairs.append(("not events", 0))
    result = evaluate(mapping.config, pairs, workers=0)
    assert [s.error is None for s in result.samples] == [True, False, True, False]
    assert "x" in result.samples[1].error and "EVENT_DTYPE" in result.samples[3].error
    assert result.summary.n_failed == 2 and result.summary.confusion.sum() == 2
    assert {**vars(result.samples[2]), "name": ""} == {**fields(reference)[2], "name": ""}


def test_a_progress_bar_is_drawn_on_stderr_only_when_asked(mapping, folder, capsys):
    pairs = [(s.events, s.label) for s in dataset_samples(folder)][:2]
    quiet = evaluate(mapping.config, pairs, workers=0)
    assert capsys.readouterr() == ("", "")  # a library call prints nothing by default
    shown = evaluate(mapping.config, pairs, workers=0, progress=True)
    err = capsys.readouterr().err
    assert "evaluating" in err and "2/2" in err
    assert fields(shown) == fields(quiet)


def test_the_slots_are_one_per_device_else_the_workers_asked_else_one_per_core(monkeypatch):
    spec = RunnerSpec("{}", 1)

    def described(slots):
        return [(type(slot).__name__, slot.name, slot.spec.device) for slot in slots]

    assert described(make_slots(spec, workers=3)) == [("ProcessSlot", f"worker {i}", None) for i in range(3)]
    assert described(make_slots(spec, workers=0)) == [("ThreadSlot", "in-process worker", None)]
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert described(make_slots(spec)) == [("ProcessSlot", f"worker {i}", None) for i in range(5)]
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # a platform that cannot tell: one worker
    assert described(make_slots(spec)) == [("ProcessSlot", "worker 0", None)]
    urls = ["emu://", "/dev/ttyACM0"]
    assert described(make_slots(spec, urls, workers=3)) == [("ProcessSlot", f"device {u}", u) for u in urls]
    assert described(make_slots(spec, urls, workers=0)) == [("ThreadSlot", f"device {u}", u) for u in urls]
    with pytest.raises(EvaluationError, match="Ray resources .* without Ray"):
        make_slots(spec, [("emu://", {"GPU": 1})])


def test_the_report_shows_accuracy_and_synops_or_a_dash_when_no_sample_ran(mapping, reference):
    broken = evaluate(mapping.config, [("not events", 0), ("not events", 1)], workers=0)
    assert broken.summary.accuracy is None and broken.summary.synops_per_inference is None
    assert str(broken).startswith("2 samples (2 failed): accuracy -, synaptic operations per inference -; ")
    assert str(broken).count("\nfailed ") == 2 and "device vs simulation" not in str(broken)
    summary = reference.summary
    assert str(reference).startswith(
        f"{summary.n_samples} samples (0 failed): accuracy {100 * summary.accuracy:.2f} %, synaptic "
        f"operations per inference {summary.synops_per_inference:.0f}; ")
    assert "\n" not in str(reference)  # no device, no failure, no divergence
    table = Sweep([broken, reference], ["broken", "reference"]).table().splitlines()
    assert table[1].split() == ["broken", "-", "-", "2"]
    assert table[2].split()[:3] == ["reference", f"{100 * summary.accuracy:.2f}", "%"]
    assert table[2].endswith("  <- best")


def test_a_sweep_reports_each_config_and_the_best(mapping, folder, tmp_path):
    configs = [mapping.config, tiny_config(0.2).config]
    found = sweep(configs, folder, names=["strong", "weak"], workers=0, results=tmp_path)
    assert len(found.evaluations) == 2 and found.names[found.best] in ("strong", "weak")
    accuracies = [e.summary.accuracy for e in found.evaluations]
    assert accuracies[found.best] == max(accuracies)
    table = found.table().splitlines()
    assert len(table) == 3 and "<- best" in table[1 + found.best]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{c.digest()[:16]}.results.jsonl"
                                                                 for c in configs)


def test_the_cli_evaluates_resumes_and_refuses_what_cannot_run(config_path, folder, tmp_path, capsys):
    results = tmp_path / "cli.jsonl"
    assert main(["evaluate", str(config_path), str(folder), "--workers", "0", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"{N_PER_CLASS * len(CLASSES)} samples (0 failed)" in out and str(results) in out
    assert main(["evaluate", str(config_path), str(folder), "--workers", "0", "--results", str(results),
                 "--resume"]) == 0
    assert f"0 run in" in capsys.readouterr().out
    assert main(["evaluate", str(config_path), str(folder), "--workers", "0", "--results", str(results)]) == 1
    assert capsys.readouterr().err.splitlines()[1].startswith("hint: pass resume=True (--resume)")
    assert main(["evaluate", str(config_path), str(folder), "--no-simulate"]) == 1
    assert capsys.readouterr().err.startswith("error: --no-simulate without --device")
    assert main(["evaluate", str(config_path), str(folder), "--output-layer", "1", "--results",
                 str(results), "--resume", "--workers", "0"]) == 0
    with pytest.raises(EvaluationError, match="output_layer=5"):
        evaluate(config_path, folder, output_layer=5, workers=0)


@pytest.mark.parametrize("max_attempts", [1, 2, 3])
def test_a_sample_lost_with_its_worker_returns_until_max_attempts_then_is_recorded_failed(max_attempts):
    from backend.analysis.datasets import Sample
    from backend.analysis.workers import _Work

    work = _Work(iter([Sample(0, empty_events(0), 1, "only")]), max_attempts)
    for _ in range(1, max_attempts):
        batch = work.take(4)
        assert [s.index for s in batch] == [0] and work.give_back(batch, "worker died") == []
    (failed,) = work.give_back(work.take(4), "worker died")
    assert failed["index"] == 0 and failed["error"] == f"lost {max_attempts} times, last: worker died"
    assert work.take(4) is None and not work.left()
