"""Chip accuracy with and without chip-aware fine-tuning (mapper.chip_aware), and where it goes.

The conv SNN of examples/train_conv_snn.py is trained in float on the digits (``--bins`` time
bins of 1 ms: the 16 rate-coded bins summed in groups, so a bin holds up to 16 / bins events
per pixel), then trained on for ``--finetune`` more epochs three times from the same weights: in float
(the control), inside ``chip_aware(model)`` and inside ``chip_in_the_loop(model)`` (the chip's
event-exact forward, the time-stepped surrogate gradients). Each model is scored on the test
digits three ways:

- float: the time-stepped float SNN;
- quantized: the same time-stepped SNN inside ``chip_aware`` (the int8 weights and integer
  thresholds ``map_model`` will choose), i.e. what quantization alone costs;
- chip: the event-exact simulation of ``map_model``'s configuration for speck2f;

and, between quantized and chip, ``agree``: the fraction of test digits given the same class,
``same``: the fraction whose 10 output spike counts are all equal (the rest is what the chip's
per-event rules change, docs/chip-model.md). A class is the output with the most spikes, ties
to the lowest index, in all three.

    OMP_NUM_THREADS=1 python benchmarks/bench_chip_aware.py --bins 4 --lr 0.02 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.app.digits_demo import load_digit_rasters
from mapper import map_model
from mapper.chip_aware import chip_aware
from mapper.chip_in_the_loop import chip_in_the_loop
from snnlib import SpikingLayer, events_to_raster, raster_to_events, simulate

BATCH = 32
FINE_TUNING = {"+ float fine-tuning": contextlib.nullcontext, "+ chip-aware fine-tuning": chip_aware,
               "+ chip-in-the-loop tuning": chip_in_the_loop}
_spec = importlib.util.spec_from_file_location("train_conv_snn", Path(__file__).parents[1] / "examples" / "train_conv_snn.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def train(model: nn.Module, rasters: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in torch.randperm(len(rasters), generator=generator).split(BATCH):
            loss = nn.functional.cross_entropy(example.spike_counts(model, rasters[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@torch.no_grad()
def output_counts(model: nn.Module, rasters: torch.Tensor) -> np.ndarray:
    """Output spike counts ``(n, 10)`` of the time-stepped model."""
    return np.concatenate([example.spike_counts(model, part).numpy() for part in rasters.split(64)])


def chip_counts(model: nn.Module, rasters: torch.Tensor) -> tuple[np.ndarray, list[int]]:
    """Output spike counts ``(n, 10)`` of the event-exact simulation of ``model`` mapped to
    speck2f, and each core's integer threshold."""
    mapping = map_model(model, (1, 8, 8), "speck2f")
    network = mapping.config.to_network()
    (out,) = [cid for cid, core in mapping.config.cores.items() if not core.destinations]
    counts = [events_to_raster(simulate(network, raster_to_events(raster, mapping.input, 1000)).events,
                               (10, 1, 1), 1000, n_steps=len(raster), layer=out).sum(0).ravel()
              for raster in rasters.numpy()]
    return np.array(counts), [core.threshold_high for _, core in sorted(mapping.config.cores.items())]


def scores(model: nn.Module, rasters: torch.Tensor, labels: torch.Tensor) -> tuple[dict, list[int]]:
    """Accuracies (float, quantized, chip) and the fractions ``agree`` and ``same`` (see the
    module docstring)."""
    truth = labels.numpy()
    floats = output_counts(model, rasters)
    with chip_aware(model):
        quantized = output_counts(model, rasters)
    chip, thresholds = chip_counts(model, rasters)
    result = {name: float(np.mean(counts.argmax(1) == truth))
              for name, counts in (("float", floats), ("quantized", quantized), ("chip", chip))}
    result["agree"] = float(np.mean(quantized.argmax(1) == chip.argmax(1)))
    result["same"] = float(np.mean((quantized == chip).all(1)))
    return result, thresholds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=1.0)
    parser.add_argument("--threshold-low", default="-1", help="a multiple of the threshold, or 'none'")
    parser.add_argument("--bins", type=int, default=16, choices=(1, 2, 4, 8, 16))
    parser.add_argument("--epochs", type=int, default=4, help="float training epochs")
    parser.add_argument("--finetune", type=int, default=2, help="fine-tuning epochs (float and chip-aware)")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--finetune-lr", type=float, default=None, help="default: lr / 10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-thresholds", action="store_true", help="thresholds as nn.Parameter")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    low = None if args.threshold_low == "none" else float(args.threshold_low) * args.threshold
    x_train, y_train, x_test, y_test = load_digit_rasters()
    x_train, x_test = (x.reshape(len(x), args.bins, -1, 1, 8, 8).sum(2) for x in (x_train, x_test))
    print(f"threshold {args.threshold}{' (trained)' if args.train_thresholds else ''}, threshold_low {low}, "
          f"{args.bins} bins, lr {args.lr}: "
          f"{args.epochs} float epochs, then {args.finetune} more; {len(y_test)} test digits")
    print(f"{'seed':>4} {'model':>25} {'float':>7} {'quantized':>9} {'chip':>7} {'agree':>6} {'same':>6}  integer thresholds")
    totals: dict[str, list[dict]] = {}
    for seed in args.seeds:
        torch.manual_seed(seed)
        base = example.build_snn(args.bins, args.threshold)
        for layer in base.modules():
            if isinstance(layer, SpikingLayer):
                layer.threshold_low = low
                if args.train_thresholds:
                    layer.threshold = nn.Parameter(torch.tensor(args.threshold))
        train(base, x_train, y_train, args.epochs, args.lr, seed)
        models = {"trained": base}
        for name, mode in FINE_TUNING.items():
            models[name] = copy.deepcopy(base)
            with mode(models[name]):
                train(models[name], x_train, y_train, args.finetune, args.finetune_lr or args.lr / 10, seed + 1)
        for name, model in models.items():
            result, thresholds = scores(model, x_test, y_test)
            totals.setdefault(name, []).append(result)
            print(f"{seed:>4} {name:>25} {100 * result['float']:6.1f}% {100 * result['quantized']:8.1f}% "
                  f"{100 * result['chip']:6.1f}% {100 * result['agree']:5.1f}% {100 * result['same']:5.1f}%  {thresholds}", flush=True)
    for name, results in totals.items():
        mean = {key: 100 * np.mean([r[key] for r in results]) for key in results[0]}
        print(f"mean {name:>25} {mean['float']:6.1f}% {mean['quantized']:8.1f}% {mean['chip']:6.1f}% {mean['agree']:5.1f}% {mean['same']:5.1f}%")


if __name__ == "__main__":
    main()
