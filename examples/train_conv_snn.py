"""Train a convolutional SNN on the 8x8 digits with surrogate gradients, on one CPU, one GPU, or
many processes through torchrun (DistributedDataParallel: gloo on CPUs, NCCL on GPUs).

    python examples/train_conv_snn.py                                  # one process, GPU if any
    torchrun --nproc_per_node 2 examples/train_conv_snn.py             # two processes (or GPUs)
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --nproc_per_node 8 examples/train_conv_snn.py

Each process trains on its shard of the training set (DistributedSampler) and DDP averages the
gradients, so every rank holds the same weights after each step. The network maps to a speck
chip afterwards (mapper.map_model): conv 8 -> sum pool -> conv 16 -> sum pool -> linear 10, each
followed by a SpikingLayer; the class is the output neuron with the most spikes. Input: the
digits rate coded into 16 time bins (backend.app.digits_demo.load_digit_rasters).

``--out DIR`` writes each rank's losses and final weights to ``DIR/rank{r}.pt``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from backend.app.digits_demo import N_BINS, load_digit_rasters
from snnlib import SpikingLayer, SumPool2d


def build_snn(num_timesteps: int = N_BINS, threshold: float = 1.0) -> nn.Sequential:
    """The chip-mappable conv SNN for ``(B * num_timesteps, 1, 8, 8)`` batch-major inputs, any B."""
    def spiking(name):
        return SpikingLayer(threshold=threshold, threshold_low=-threshold, num_timesteps=num_timesteps,
                            layer_name=name)

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1, bias=False)), ("spk1", spiking("spk1")), ("pool1", SumPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1, bias=False)), ("spk2", spiking("spk2")), ("pool2", SumPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(64, 10, bias=False)), ("spk3", spiking("spk3")),
    ]))


def spike_counts(model: nn.Module, rasters: torch.Tensor) -> torch.Tensor:
    """Output spike counts ``(B, 10)`` for rasters ``(B, T, 1, 8, 8)``, from fresh membranes."""
    for layer in model.modules():
        if isinstance(layer, SpikingLayer):
            layer.reset_states()
    batch, steps = rasters.shape[:2]
    return model(rasters.flatten(0, 1)).reshape(batch, steps, -1).sum(1)


def setup() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write DIR/rank{r}.pt (losses, weights)")
    args = parser.parse_args(argv)

    rank, world, device = setup()
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    x_train, y_train, x_test, y_test = load_digit_rasters()
    train = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    # the layers take any batch size (num_timesteps), so the last, smaller batch trains too
    loader = DataLoader(train, args.batch_size, sampler=sampler)
    model = build_snn().to(device)
    # the membranes are per-process state: never broadcast them (torch 2.13 warns that the flag is
    # deprecated, yet names it as the way to keep rank-local buffers until init_sync_buffers exists)
    warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
    ddp = DistributedDataParallel(model, broadcast_buffers=False) if world > 1 else model
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    losses, step = [], 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for rasters, labels in loader:
            counts = spike_counts(ddp, rasters.to(device))
            loss = nn.functional.cross_entropy(counts, labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if args.max_steps is not None and step >= args.max_steps:
                break
        if rank == 0:
            print(f"epoch {epoch}: step {step}, loss {sum(losses[-10:]) / len(losses[-10:]):.3f}", flush=True)
        if args.max_steps is not None and step >= args.max_steps:
            break
    if rank == 0:
        print(f"test accuracy {accuracy(model, x_test, y_test, args.batch_size, device):.3f}")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"losses": losses, "weights": {k: v.cpu() for k, v in model.state_dict().items()}},
                   args.out / f"rank{rank}.pt")
    if world > 1:
        dist.destroy_process_group()


@torch.no_grad()
def accuracy(model: nn.Module, rasters: torch.Tensor, labels: torch.Tensor, batch_size: int,
             device: torch.device) -> float:
    """Fraction of ``rasters`` classified right (the most output spikes), in batches of ``batch_size``."""
    right = 0
    for start in range(0, len(rasters), batch_size):
        counts = spike_counts(model, rasters[start:start + batch_size].to(device))
        right += int((counts.argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return right / len(rasters)


if __name__ == "__main__":
    main()
