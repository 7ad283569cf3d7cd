"""Interim demo: simulate a small spiking network built with snnlib and print spike counts per
layer. (A later issue replaces it with the end-to-end map / flash / compare workflow.)"""

from __future__ import annotations

import torch

from snnlib import Img2SpikeLayer, SpikingLayer, SumPool2d, SynOpCounter


def _demo_image(size: int = 16) -> torch.Tensor:
    """A (1, size, size) image with values 0..255: a bright disc on a dim horizontal ramp."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    ramp = x / (size - 1) * 60.0
    disc = ((x - size / 2) ** 2 + (y - size / 2) ** 2 <= (size / 4) ** 2) * 195.0
    return (ramp + disc).unsqueeze(0)


def run_demo(time_steps: int = 50, seed: int = 0) -> int:
    """Rate-code a 16x16 image into ``time_steps`` 1-ms steps, run it through
    conv -> SpikingLayer -> SumPool2d -> conv -> SpikingLayer and print the spike count and
    rate of each spiking layer and the SynOps of each conv. Returns 0 (the exit status)."""
    torch.manual_seed(seed)
    encoder = Img2SpikeLayer((1, 16, 16), tw=time_steps, max_rate=500, seed=seed)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False),
        SpikingLayer(threshold=2.0, layer_name="spiking1"),
        SumPool2d(2),
        torch.nn.Conv2d(4, 8, 3, padding=1, bias=False),
        SpikingLayer(threshold=16.0, layer_name="spiking2"),
    )
    with torch.no_grad():
        for conv in (network[0], network[3]):
            conv.weight.copy_(torch.randint(-1, 3, conv.weight.shape))  # small integer weights
    spikes_in = encoder(_demo_image())
    with SynOpCounter(network) as counter, torch.no_grad():
        network(spikes_in)
    print(f"input: {int(spikes_in.sum())} spikes over {time_steps} steps of 1 ms, shape {tuple(spikes_in.shape)}")
    for index, layer in enumerate(network):
        activity = counter.activity.get(str(index))
        if isinstance(layer, SpikingLayer):
            print(f"{layer.layer_name}: {int(activity.spikes)} spikes, rate {activity.spike_rate:.3f} per neuron per step")
        elif activity is not None:
            print(f"conv layer {index}: {int(activity.synops)} SynOps")
    return 0
