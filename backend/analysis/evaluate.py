"""Dataset-scale evaluation: a mapped config over every recording of a dataset, on the
event-exact simulation and/or devices, locally or on Ray; and sweeps over several configs.

>>> evaluation = evaluate("model.json", "recordings/", workers=2, results="model.results.jsonl")  # doctest: +SKIP

Per sample: prediction, label, spike counts of the output layer, synaptic operations (in
simulation), and where both simulation and a device ran, bit-exact or the first divergence
(:func:`backend.analysis.compare.compare_outputs`). Summary: accuracy, confusion matrix,
synaptic operations per inference, throughput. Results are in sample order whatever the
scheduling; with ``results`` they are also written per sample to a resumable file
(:mod:`backend.analysis.results`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from backend.analysis.datasets import Dataset, Sample, dataset_samples
from backend.analysis.results import ResultsFile, check_resumed
from backend.analysis.runner import RunnerSpec, default_output_layer
from backend.analysis.workers import DeviceTarget, make_slots, schedule
from backend.errors import EvaluationError

ConfigLike = Union[str, Path, Any]  # a ChipConfig or the path of one


@dataclass
class SampleResult:
    """One sample's result (the fields of a results-file record): ``counts`` spikes per output
    channel, ``synops`` synaptic updates in simulation, ``bit_exact`` / ``divergence`` when
    simulation and device both ran, ``error`` when the sample failed."""

    index: int
    name: str
    label: Optional[int]
    sample: str
    prediction: Optional[int]
    counts: Optional[list[int]]
    synops: Optional[int]
    bit_exact: Optional[bool]
    divergence: Optional[dict]
    error: Optional[str]


@dataclass
class Summary:
    """``accuracy`` over the samples that ran (None if none did); ``confusion[label, prediction]``;
    ``synops_per_inference`` (None without simulation); ``n_computed`` samples run now and
    ``n_resumed`` taken from the results file; ``throughput``: samples/s computed now."""

    n_samples: int
    n_failed: int
    accuracy: Optional[float]
    confusion: np.ndarray
    synops_per_inference: Optional[float]
    n_bit_exact: int
    n_diverged: int
    n_computed: int
    n_resumed: int
    seconds: float

    @property
    def throughput(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        acc = "-" if self.accuracy is None else f"{100 * self.accuracy:.2f} %"
        synops = "-" if self.synops_per_inference is None else f"{self.synops_per_inference:.0f}"
        text = (f"{self.n_samples} samples ({self.n_failed} failed): accuracy {acc}, synaptic "
                f"operations per inference {synops}; {self.n_computed} run in {self.seconds:.2f} s "
                f"({self.throughput:.1f} samples/s), {self.n_resumed} resumed")
        if self.n_bit_exact or self.n_diverged:
            text += f"\ndevice vs simulation: {self.n_bit_exact} bit-exact, {self.n_diverged} diverged"
        return text


@dataclass
class Evaluation:
    """What :func:`evaluate` returns: ``samples`` in index order, the ``summary``, one message
    per worker or device ``lost`` during the run, the ``config_digest``, ``output_layer``,
    class names (for a folder) and the ``results`` path (None without one)."""

    samples: list[SampleResult]
    summary: Summary
    config_digest: str
    output_layer: int
    lost: list[str] = field(default_factory=list)
    classes: Optional[list[str]] = None
    results: Optional[Path] = None

    def __str__(self) -> str:
        lines = [str(self.summary), *(f"lost {message}" for message in self.lost)]
        lines += [f"failed {s.name}: {s.error}" for s in self.samples if s.error][:10]
        diverged = [s for s in self.samples if s.bit_exact is False]
        if diverged:
            d = diverged[0].divergence
            lines.append(f"first divergence: sample {diverged[0].name}, layer {d['layer']} neuron "
                         f"{tuple(d['neuron'])} at t={d['t_us']} µs: expected {d['expected']}, "
                         f"received {d['received']}")
        return "\n".join(lines)


def evaluate(config: ConfigLike, data: Any, *, devices: Sequence[DeviceTarget] = (),
             simulate: bool = True, workers: Optional[int] = None, ray: Optional[str] = None,
             results: Optional[Union[str, Path]] = None, resume: bool = False,
             output_layer: Optional[int] = None, timeout: Optional[float] = None,
             progress: bool = False, on_result: Optional[Callable[[SampleResult], None]] = None,
             max_attempts: int = 3) -> Evaluation:
    """Run ``config`` (a ``mapper.ChipConfig`` or its JSON path) over every sample of ``data``
    (see :func:`backend.analysis.datasets.dataset_samples`).

    ``simulate``: run the event-exact simulation; ``devices``: device URLs (each one worker
    that keeps its device flashed; ``(url, ray_resources)`` pins one under Ray). With both, each
    sample runs on both and is compared. ``workers``: local simulation processes (None: one per
    core, 0: in this process); ``ray``: "auto", a cluster address or "local" to run on Ray.
    ``results``: the results file; ``resume``: continue it, skipping samples it holds.
    ``output_layer``: the core whose spikes predict (default: the monitored core that sends to
    no other). ``timeout``: seconds per device run. ``progress``: a progress bar on stderr;
    ``on_result``: called in this thread with each new :class:`SampleResult` as it arrives.
    ``max_attempts``: how often a sample may be lost with its worker before it counts as failed.
    """
    if not simulate and not devices:
        raise EvaluationError("nothing to run: simulate=False and no devices",
                              hint="pass devices=[url, ...] (--device URL) or keep the simulation")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise EvaluationError(f"workers={workers!r}: expected None (one per core), 0 (this process) "
                              "or a positive number of processes")
    chip_config = _as_config(config)
    layer = default_output_layer(chip_config) if output_layer is None else output_layer
    if layer not in chip_config.cores:
        raise EvaluationError(f"output_layer={layer!r}: not a core of the config (cores: "
                              f"{sorted(chip_config.cores)})", hint="pass the id of the output core")
    dataset = dataset_samples(data)
    header = {"dataset": dataset.fingerprint, "config": chip_config.digest(), "output_layer": layer,
              "simulate": bool(simulate), "device": bool(devices)}
    file = None if results is None else ResultsFile(results, header, resume)
    done = {} if file is None else file.done
    records: dict[int, dict] = {}
    pending = _pending(dataset, done, records, file)
    first = next(pending, None)  # reads the resumed part; starts no worker when nothing is left
    started = time.perf_counter()
    lost: list[str] = []
    bar = _progress_bar(progress, dataset, len(done))
    try:
        def on_record(record: dict) -> None:
            records[record["index"]] = record
            if file is not None:
                file.append(record)
            if bar is not None:
                bar.update(1)
            if on_result is not None:
                on_result(SampleResult(**record))

        if first is not None:
            spec = RunnerSpec(chip_config.to_json(), layer, bool(simulate), None, timeout)
            lost = schedule(itertools.chain([first], pending), make_slots(spec, devices, workers, ray),
                            on_record, max_attempts)
    finally:
        if bar is not None:
            bar.close()
        if file is not None:
            file.close()
    seconds = time.perf_counter() - started
    ordered = [records[i] for i in sorted(records)]
    if file is not None:
        file.finish(ordered)
    samples = [SampleResult(**r) for r in ordered]
    n_resumed = sum(1 for i in records if i in done)
    return Evaluation(samples, _summarize(samples, chip_config, layer, len(records) - n_resumed,
                                          n_resumed, seconds),
                      chip_config.digest(), layer, lost, dataset.classes,
                      None if file is None else file.path)


def _pending(dataset: Dataset, done: dict, records: dict, file) -> Iterator[Sample]:
    """The samples still to run; those the results file holds go straight into ``records``."""
    for sample in dataset:
        earlier = check_resumed(done, sample.index, sample.digest(), None if file is None else file.path)
        if earlier is None:
            yield sample
        else:
            records[sample.index] = earlier


def _progress_bar(progress: bool, dataset: Dataset, initial: int):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=dataset.length, initial=initial, desc="evaluating", unit="sample")


def _as_config(config: ConfigLike):
    from mapper import ChipConfig

    if isinstance(config, ChipConfig):
        return config
    if isinstance(config, (str, Path)):
        return ChipConfig.load(config)
    raise EvaluationError(f"config: got {type(config).__name__}; expected a mapper.ChipConfig or the "
                          "path of a config JSON (spikeflash map writes one)")


def _summarize(samples: list[SampleResult], config, layer: int, n_computed: int, n_resumed: int,
               seconds: float) -> Summary:
    ran = [s for s in samples if s.error is None]
    n_classes = config.cores[layer].weights.shape[0]
    labels = [s.label for s in ran if s.label is not None]
    size = max([n_classes, *(label + 1 for label in labels)])
    confusion = np.zeros((size, size), np.int64)
    for s in ran:
        if s.label is not None:
            confusion[s.label, s.prediction] += 1
    synops = [s.synops for s in ran if s.synops is not None]
    return Summary(
        len(samples), len(samples) - len(ran),
        float(np.trace(confusion) / confusion.sum()) if confusion.sum() else None, confusion,
        float(np.mean(synops)) if synops else None,
        sum(s.bit_exact is True for s in ran), sum(s.bit_exact is False for s in ran),
        n_computed, n_resumed, seconds)


@dataclass
class Sweep:
    """Several configs over the same data: ``evaluations[i]`` of ``names[i]``; :attr:`best`
    has the highest accuracy (the first of equals)."""

    evaluations: list[Evaluation]
    names: list[str]

    @property
    def best(self) -> int:
        """Index of the most accurate config."""
        accuracies = [-1.0 if e.summary.accuracy is None else e.summary.accuracy for e in self.evaluations]
        return int(np.argmax(accuracies))

    def table(self) -> str:
        """One row per config: accuracy, synaptic operations per inference, failed samples."""
        rows = [f"{'config':<32} {'accuracy':>9} {'synops/inference':>17} {'failed':>7}"]
        for i, (name, e) in enumerate(zip(self.names, self.evaluations)):
            s = e.summary
            acc = "-" if s.accuracy is None else f"{100 * s.accuracy:.2f} %"
            synops = "-" if s.synops_per_inference is None else f"{s.synops_per_inference:.0f}"
            rows.append(f"{name:<32} {acc:>9} {synops:>17} {s.n_failed:>7}" + ("  <- best" if i == self.best else ""))
        return "\n".join(rows)


def sweep(configs: Sequence[ConfigLike], data: Any, *, names: Optional[Sequence[str]] = None,
          results: Optional[Union[str, Path, Sequence[Union[str, Path]]]] = None,
          **options) -> Sweep:
    """:func:`evaluate` each of ``configs`` over the same ``data`` with the same ``options``.
    ``names``: one per config for the table (default: the paths, or ``config <i>``).
    ``results``: a folder (one ``<config digest>.results.jsonl`` per config inside) or one
    path per config."""
    if not configs:
        raise EvaluationError("sweep: no configs given", hint="pass a list of ChipConfigs or config paths")
    names = list(names) if names is not None else [
        str(c) if isinstance(c, (str, Path)) else f"config {i}" for i, c in enumerate(configs)]
    dataset = dataset_samples(data)
    if dataset.length is None:  # a plain iterable can be read once: keep its samples for every config
        kept = list(dataset)
        dataset = Dataset(lambda: iter(kept), len(kept), dataset.fingerprint, dataset.classes)
    chip_configs = [_as_config(c) for c in configs]
    if results is None or isinstance(results, (str, Path)):
        paths = [None if results is None else Path(results) / f"{c.digest()[:16]}.results.jsonl"
                 for c in chip_configs]
    else:
        paths = list(results)
    if len(paths) != len(chip_configs) or len(names) != len(chip_configs):
        raise EvaluationError(f"sweep: {len(chip_configs)} configs but {len(paths)} results paths and "
                              f"{len(names)} names", hint="give one of each per config")
    return Sweep([evaluate(c, dataset, results=p, **options) for c, p in zip(chip_configs, paths)], names)
