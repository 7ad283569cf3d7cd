"""Dataset evaluation throughput: samples/s of ``evaluate`` in this process, on 1 and 2 local
worker processes and on a local Ray instance (2 CPUs), against the bare simulation loop; the
overhead per sample of the evaluation (records, digests) and of the transport to a worker.

Command: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_evaluate.py [--samples N] [--no-ray]``

Steady rate: the results after the first 8 / the time from the 8th to the last (worker start-up
excluded; in this process: all results / wall); wall: the whole call, start-up included. Ray runs twice; the second run (its worker
processes already started) is reported. Every row is the best of 3 runs. Prints the load average before
and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from backend.analysis.evaluate import evaluate
from mapper import map_model
from snnlib import SpikingLayer, SumPool2d, raster_to_events, simulate


def build(n_samples: int):
    """A 3-core conv network on 2x32x32 input and ``n_samples`` recordings of 50 ms at 5 %."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 16, 3, padding=1, bias=False), SpikingLayer(), SumPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1, bias=False), SpikingLayer(), SumPool2d(2),
        torch.nn.Conv2d(32, 10, 8, bias=False), SpikingLayer(),
    )
    with torch.no_grad():
        for conv in (model[0], model[3], model[6]):
            conv.weight.uniform_(-0.1, 0.12)
    mapping = map_model(model, input_shape=(2, 32, 32), chip="speck2f")
    generator = torch.Generator().manual_seed(1)
    data = [(raster_to_events((torch.rand(50, 2, 32, 32, generator=generator) < 0.05).float(),
                              mapping.input, 1000), i % 10) for i in range(n_samples)]
    return mapping.config, data


REPEATS = 3  #: runs per row; the best steady rate is reported
#: arrivals left out of the steady rate: worker start-up, and one Ray task's shard
SKIP = 8


def timed(config, data, **options) -> tuple[float, float, float, object]:
    """(steady samples/s, wall seconds, driver CPU ms per sample, evaluation)."""
    arrivals = []
    start, cpu = time.perf_counter(), time.process_time()
    evaluation = evaluate(config, data, on_result=lambda r: arrivals.append(time.perf_counter()), **options)
    wall = time.perf_counter() - start
    cpu_ms = 1e3 * (time.process_time() - cpu) / len(data)
    if options.get("workers") == 0:  # no start-up; the driver thread is starved of the GIL while the
        return len(arrivals) / wall, wall, cpu_ms, evaluation  # worker thread runs: arrivals bunch up
    steady = (len(arrivals) - SKIP) / (arrivals[-1] - arrivals[SKIP - 1])
    return steady, wall, cpu_ms, evaluation


def append_ms(directory: Path, n: int = 200) -> tuple[float, float]:
    """Median wall ms of appending one record to a results file, and of one fsync there."""
    from backend.analysis.results import ResultsFile

    results = ResultsFile(directory / "bench.results.jsonl", {"dataset": "bench"})
    record = {"index": 0, "name": "x" * 20, "label": 3, "sample": "0" * 16, "prediction": 3,
              "counts": list(range(10)), "synops": 2852916, "bit_exact": None, "divergence": None, "error": None}
    appends, syncs = [], []
    for i in range(n):
        start = time.perf_counter()
        results.append({**record, "index": i})
        appends.append(time.perf_counter() - start)
        start = time.perf_counter()
        os.fsync(results.file.fileno())
        syncs.append(time.perf_counter() - start)
    results.close()
    return 1e3 * float(np.median(appends)), 1e3 * float(np.median(syncs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}, {os.cpu_count()} cores")
    torch.set_num_threads(1)  # torch's idle OpenMP threads would spin beside the engine
    config, data = build(args.samples)
    network = config.to_network()
    simulate(network, data[0][0])  # compile / load the engine
    runs = []
    for _ in range(REPEATS):
        start, cpu = time.perf_counter(), time.process_time()
        synops = sum(sum(c["synaptic_updates"] for c in simulate(network, events).counters.values())
                     for events, _ in data)
        runs.append((len(data) / (time.perf_counter() - start), 1e3 * (time.process_time() - cpu) / len(data)))
    bare, bare_cpu = max(runs)
    print(f"{len(data)} samples, {np.mean([len(e) for e, _ in data]):.0f} input events and "
          f"{synops / len(data):.0f} synaptic updates each; engine CPU {bare_cpu:.2f} ms per sample")
    rows = [("bare simulate() loop, this process", bare, None, bare_cpu)]
    reference = None
    modes = [("evaluate, in this process (workers=0)", {"workers": 0}),
             ("evaluate, 1 local worker process", {"workers": 1}),
             ("evaluate, 2 local worker processes", {"workers": 2})]
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        timed(config, data, ray="auto")  # starts Ray's worker processes
        modes.append(("evaluate, Ray local instance, 2 CPUs (tasks of 8)", {"ray": "auto"}))
    for name, options in modes:
        steady, wall, cpu_ms, evaluation = max((timed(config, data, **options) for _ in range(REPEATS)),
                                               key=lambda run: run[0])
        predictions = [s.prediction for s in evaluation.samples]
        assert reference is None or predictions == reference, name  # same results everywhere
        reference = predictions
        rows.append((name, steady, wall, cpu_ms))
    print(f"\n{'':<52} {'samples/s':>10} {'x 1 worker':>10} {'wall s':>7} {'driver CPU ms/sample':>21}")
    one = rows[2][1]
    for name, rate, wall, cpu_ms in rows:
        print(f"{name:<52} {rate:>10.1f} {rate / one:>10.2f} {'' if wall is None else f'{wall:7.2f}':>7} "
              f"{cpu_ms:>21.2f}")
    import tempfile

    with tempfile.TemporaryDirectory(dir=".") as folder:
        append, sync = append_ms(Path(folder))
        print(f"\nresults file, median of 200 on this disk: append a record {append:.3f} ms, one fsync "
              f"{sync:.2f} ms (taken at most every 0.5 s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
