"""Chip accuracy with and without chip-aware fine-tuning (mapper.chip_aware).

The conv SNN of examples/train_conv_snn.py is trained in float on the digits rasters, then
trained on for ``--finetune`` more epochs twice from the same weights: once in float, once inside
``chip_aware(model)`` (int8 weights on the mapper's per-layer scale, thresholds on that scale,
int16 saturation; straight-through gradients). Each result is mapped with ``map_model`` and its
accuracy measured on the chip's event-exact simulation of the mapped configuration (the test
digits as events, 1 ms bins), beside the float time-stepped accuracy.

    python benchmarks/bench_chip_aware.py --threshold 0.05
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from backend.analysis.runner import predict
from backend.app.digits_demo import load_digit_rasters
from mapper import map_model
from mapper.chip_aware import chip_aware
from snnlib import raster_to_events, simulate

BATCH = 32
_spec = importlib.util.spec_from_file_location("train_conv_snn", Path(__file__).parents[1] / "examples" / "train_conv_snn.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def train(model: nn.Module, rasters: torch.Tensor, labels: torch.Tensor, epochs: int, lr: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(rasters), generator=generator)
        for start in range(0, len(order) - BATCH + 1, BATCH):
            batch = order[start:start + BATCH]
            loss = nn.functional.cross_entropy(example.spike_counts(model, rasters[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def chip_accuracy(model: nn.Module, rasters: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of the event-exact simulation of ``model`` mapped to speck2f."""
    mapping = map_model(model, (1, 8, 8), "speck2f")
    network = mapping.config.to_network()
    right = 0
    for raster, label in zip(rasters.numpy(), labels.numpy()):
        events = simulate(network, raster_to_events(raster, mapping.input, 1000)).events
        right += predict(events, 10) == label
    return right / len(labels)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--finetune", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--test", type=int, default=450, help="test digits used")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digit_rasters()
    x_test, y_test = x_test[:args.test], y_test[:args.test]
    base = example.build_snn(threshold=args.threshold)
    train(base, x_train, y_train, args.epochs, args.lr, 0)
    print(f"threshold {args.threshold}, {args.epochs} float epochs, then {args.finetune} more:")
    for name in ("float", "chip-aware"):
        model = copy.deepcopy(base)
        if name == "float":
            train(model, x_train, y_train, args.finetune, args.lr / 5, 1)
        else:
            with chip_aware(model):
                train(model, x_train, y_train, args.finetune, args.lr / 5, 1)
        float_acc = example.accuracy(model, x_test, y_test, BATCH, torch.device("cpu"))
        print(f"  {name:>10} fine-tuning: time-stepped float {100 * float_acc:5.1f} %, "
              f"chip (event-exact simulation) {100 * chip_accuracy(model, x_test, y_test):5.1f} %", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
