"""Open Neuromorphic's SNN library benchmark shape: ``Linear(n, n)`` followed by an IF neuron,
batch 16, T 500, float32, forward + backward (sum of the output spikes), timed per library;
plus the IF step alone (spikeflash's ``integrate_and_fire``, without the matmul) against the
device's memory bandwidth: GB/s of the bytes it must move (float32 x, spikes and saved membrane
forward; gradient, membrane, spikes in and gradient out backward: 28 bytes per neuron-step)
beside ``torch.add(a, b, out=c)``'s.

    python benchmarks/bench_gpu.py --device cuda                  # n 4096 and 16384, T 500
    python benchmarks/bench_gpu.py --device cpu --neurons 256 1024 --steps 100   # smoke run

Libraries that import are timed: spikeflash SpikingLayer (multi-spike IF, subtract), sinabs IAF
(MultiSpike, MembraneSubtract), sinabs-exodus IAF (CUDA only), snntorch Leaky(beta=1, subtract)
and SpikingJelly IFNode(v_reset=None, multi-step). Each: one warm-up, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import importlib
import time

import torch

from snnlib import SpikingLayer, integrate_and_fire

BATCH = 16
BYTES_PER_NEURON_STEP = 7 * 4  # float32: forward x in, spikes and membrane out; backward 3 in, 1 out


def seconds(run, device: torch.device, repeats: int) -> float:
    """Best wall time of ``run()`` over ``repeats`` runs after a warm-up."""
    def timed():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()
    return min(timed() for _ in range(repeats))


def neurons(name: str):
    """A function (B, T, n) currents -> (B, T, n) spikes for library ``name``, or None if it
    does not import or run here."""
    if name == "spikeflash":
        layer = SpikingLayer(threshold=1.0, threshold_low=None, batch_size=BATCH)
        return lambda x: layer(x.flatten(0, 1)).reshape(x.shape)
    if name in ("sinabs", "sinabs-exodus"):
        try:
            activation = importlib.import_module("sinabs.activation")
            layers = importlib.import_module("sinabs.exodus.layers" if name == "sinabs-exodus" else "sinabs.layers")
        except ImportError:
            return None
        iaf = layers.IAF(spike_threshold=1.0, spike_fn=activation.MultiSpike, reset_fn=activation.MembraneSubtract())

        def run_sinabs(x):
            iaf.reset_states()
            return iaf(x)
        return run_sinabs
    if name == "snntorch":
        try:
            snntorch = importlib.import_module("snntorch")
        except ImportError:
            return None
        leaky = snntorch.Leaky(beta=1.0, threshold=1.0, reset_mechanism="subtract")

        def run_snntorch(x):
            membrane, spikes = leaky.init_leaky(), []
            for t in range(x.shape[1]):
                spike, membrane = leaky(x[:, t], membrane)
                spikes.append(spike)
            return torch.stack(spikes, 1)
        return run_snntorch
    try:
        neuron = importlib.import_module("spikingjelly.activation_based.neuron")
    except ImportError:
        return None
    node = neuron.IFNode(v_threshold=1.0, v_reset=None, step_mode="m")

    def run_spikingjelly(x):
        node.reset()
        return node(x.transpose(0, 1)).transpose(0, 1)
    return run_spikingjelly


LIBRARIES = ("spikeflash", "sinabs", "sinabs-exodus", "snntorch", "spikingjelly")


def bench_point(device: torch.device, n: int, steps: int, repeats: int) -> list[tuple]:
    """(row name, seconds, bytes moved or None): forward + backward for every library, the IF
    step alone and the memory-bandwidth reference, at one size."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(n, n).to(device)
    x = (torch.rand(BATCH, steps, n, device=device) < 0.3).float()
    rows = []
    for name in LIBRARIES:
        neuron = neurons(name)
        if neuron is None:
            print(f"# {name}: not installed")
            continue

        def step():
            linear.zero_grad(set_to_none=True)
            neuron(linear(x)).sum().backward()
        try:
            rows.append((f"{name} Linear + IF", seconds(step, device, repeats), None))
        except (RuntimeError, NotImplementedError) as error:  # e.g. exodus without CUDA
            print(f"# {name}: {type(error).__name__}: {str(error).splitlines()[0][:100]}")
    current = (torch.rand(BATCH, steps, n, device=device) * 2).requires_grad_(True)
    params = SpikingLayer(threshold=1.0, threshold_low=None).neuron_parameters()

    def if_step():
        current.grad = None
        integrate_and_fire(current, torch.zeros(BATCH, n, device=device), params).sum().backward()
    rows.append(("spikeflash IF step alone", seconds(if_step, device, repeats), BYTES_PER_NEURON_STEP * x.numel()))
    a, b = torch.rand(BATCH, steps, n, device=device), torch.rand(BATCH, steps, n, device=device)
    out = torch.empty_like(a)
    rows.append(("bandwidth: torch.add(out=)", seconds(lambda: torch.add(a, b, out=out), device, repeats),
                 3 * 4 * a.numel()))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--neurons", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {where}; torch {torch.__version__}; batch {BATCH}, T {args.steps}, float32, forward + backward")
    print(f"{'n':>6}  {'implementation':<30} {'seconds':>9} {'GB/s':>7}")
    for n in args.neurons:
        for name, took, moved in bench_point(device, n, args.steps, args.repeats):
            rate = "" if moved is None else f"{moved / took / 1e9:7.2f}"
            print(f"{n:>6}  {name:<30} {took:>9.4f} {rate:>7}", flush=True)


if __name__ == "__main__":
    main()
