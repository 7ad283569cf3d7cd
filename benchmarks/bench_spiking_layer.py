"""Time SpikingLayer (subtract mode, multi-spike) against sinabs 3.x IAF / IAFSqueeze and
snntorch Leaky, forward and forward+backward, beside torch.mul(x, 2, out=y) into a reused
buffer (the memory-bandwidth floor). Prints M neuron-steps/s (batch * T * N / seconds) and
the ratios to sinabs IAF, with 1 and 2 threads.

    python benchmarks/bench_spiking_layer.py            # quick: T 100, N 1k and 16k
    python benchmarks/bench_spiking_layer.py --full     # the issue's grid (see --help)

Needs the bench extra (pip install -e .[bench]). sinabs and snntorch loop over time in
Python; sinabs' forward+backward is O(T^2) and is timed once per point.
"""

from __future__ import annotations

import argparse
import time

import numba
import sinabs.activation as sa
import sinabs.layers as sl
import snntorch
import torch

from snnlib import SpikingLayer
from snnlib.functional import integrate_and_fire

BATCH = 8


def best_seconds(run, repeats: int) -> float:
    run()  # warm-up (compilation, first-touch of buffers)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def make_runs(steps: int, neurons: int, integer: bool):
    """name -> (forward, forward+backward) callables on (B*T, N) / (B, T, N) inputs."""
    torch.manual_seed(0)
    x = torch.randint(-1, 3, (BATCH * steps, neurons)).float() if integer else torch.rand(BATCH * steps, neurons) * 1.5 - 0.25
    grad = torch.randn_like(x)
    x_grad = x.clone().requires_grad_()
    ours = SpikingLayer(threshold=1.0, threshold_low=-1.0, batch_size=BATCH, saturate_int16=integer)
    out = torch.empty(BATCH, steps, neurons)
    state = torch.zeros(BATCH, neurons)
    params = ours.neuron_parameters()
    sinabs_iaf = sl.IAF(spike_threshold=1.0, spike_fn=sa.MultiSpike, reset_fn=sa.MembraneSubtract(), min_v_mem=-1.0)
    sinabs_sq = sl.IAFSqueeze(batch_size=BATCH, spike_threshold=1.0, spike_fn=sa.MultiSpike,
                              reset_fn=sa.MembraneSubtract(), min_v_mem=-1.0)
    leaky = snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract")
    floor_out = torch.empty_like(x)

    def ours_fb():
        x_grad.grad = None
        ours.reset_states()
        ours(x_grad).backward(grad)

    def sinabs_iaf_fb():
        x_grad.grad = None
        sinabs_iaf.reset_states()
        sinabs_iaf(x_grad.view(BATCH, steps, neurons)).backward(grad.view(BATCH, steps, neurons))

    def sinabs_sq_fb():
        x_grad.grad = None
        sinabs_sq.reset_states()
        sinabs_sq(x_grad).backward(grad)

    def leaky_run(inputs):
        mem = torch.zeros(BATCH, neurons)
        view = inputs.view(BATCH, steps, neurons)
        spikes = []
        for t in range(steps):
            spike, mem = leaky(view[:, t], mem)
            spikes.append(spike)
        return torch.stack(spikes, 1)

    def leaky_fb():
        x_grad.grad = None
        leaky_run(x_grad).backward(grad.view(BATCH, steps, neurons))

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run

    return {
        "bandwidth floor torch.mul(out=)": (lambda: torch.mul(x, 2, out=floor_out), None),
        "spikeflash SpikingLayer": (no_grad(lambda: (ours.reset_states(), ours(x))), ours_fb),
        "spikeflash integrate_and_fire(out=)": (
            no_grad(lambda: integrate_and_fire(x.view(BATCH, steps, neurons), state.zero_(), params, out=out)), None),
        "sinabs IAF": (no_grad(lambda: (sinabs_iaf.reset_states(), sinabs_iaf(x.view(BATCH, steps, neurons)))), sinabs_iaf_fb),
        "sinabs IAFSqueeze": (no_grad(lambda: (sinabs_sq.reset_states(), sinabs_sq(x))), sinabs_sq_fb),
        "snntorch Leaky(beta=1)": (no_grad(lambda: leaky_run(x)), leaky_fb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true",
                        help="T 100 and 500, N 1k/16k/128k (N 128k at T 100 only: T 500 needs > 10 GB)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    grid = [(100, 1024), (100, 16384)]
    if args.full:
        grid = [(100, 1024), (100, 16384), (100, 131072), (500, 1024), (500, 16384)]
    print(f"M neuron-steps/s (batch {BATCH}), best of {args.repeats}; ratio = / sinabs IAF same column")
    print(f"{'threads':>7} {'T':>4} {'N':>7} {'mode':>7}  {'implementation':<36} {'forward':>9} {'ratio':>6} {'fwd+bwd':>9} {'ratio':>6}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        numba.set_num_threads(threads)
        for steps, neurons in grid:
            for integer in (False, True):
                runs = make_runs(steps, neurons, integer)
                size = BATCH * steps * neurons
                rates = {}
                for name, (forward, forward_backward) in runs.items():
                    f = size / best_seconds(forward, args.repeats) / 1e6
                    fb = None
                    if forward_backward is not None:
                        slow = name.startswith(("sinabs", "snntorch"))
                        fb = size / best_seconds(forward_backward, 1 if slow else args.repeats) / 1e6
                    rates[name] = (f, fb)
                ref_f, ref_fb = rates["sinabs IAF"]
                for name, (f, fb) in rates.items():
                    fb_text = f"{fb:9.1f} {fb / ref_fb:6.1f}" if fb else f"{'-':>9} {'':>6}"
                    print(f"{threads:>7} {steps:>4} {neurons:>7} {'int' if integer else 'float':>7}  {name:<36} "
                          f"{f:9.0f} {f / ref_f:6.1f} {fb_text}", flush=True)


if __name__ == "__main__":
    main()
