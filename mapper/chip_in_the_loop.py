"""Chip-in-the-loop training: inside ``with chip_in_the_loop(model) as loop:`` every forward pass
of ``model`` maps it (``map_model``, current weights), runs each sample's input events through the
event-exact simulation of that configuration, and makes each core's ``SpikingLayer`` output the
chip's spike counts per time bin, straight-through:

    output = ts_out + (chip_out - ts_out).detach()

so the forward values are the chip's (every later layer receives the chip's counts) and the
gradients are the time-stepped layer's surrogate ones, evaluated at the chip's inputs (its
membrane follows its own time-stepped spikes). This trains against the chip's per-event rules
(fire, clamp at ``threshold_low`` and saturate after every event: docs/chip-model.md), which
``chip_aware`` does not model.

The input is the model's usual ``(B*T, C, H, W)`` batch-major raster of event counts in time bins
of ``dt_us`` (T from the first spiking layer's ``num_timesteps`` or ``batch_size``; one sample
when it has neither). Each sample's events are ``raster_to_events(raster, ., dt_us)`` (within a
bin by (channel, y, x)), or, when ``loop.recordings`` holds one event array per sample, those
events in their own order (consumed by the next forward; their bins must sum to the raster).
Every forward starts the chip from rest, as ``simulate`` does.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mapper.chip_aware import core_layers
from mapper.pipeline import map_model
from snnlib import InvalidParameterError, SpikingLayer, events_to_raster, raster_to_events, simulate


@dataclass
class ChipLoop:
    """What ``chip_in_the_loop`` yields. ``recordings``: None, or one event array per sample for
    the next forward (then reset to None). ``last``: the chip's counts of the last forward,
    model layer name of each core's spiking layer -> ``(B, T, C, H, W)`` int32."""

    chip: str
    dt_us: int
    recordings: list[np.ndarray] | None = None
    last: dict[str, np.ndarray] | None = None


def _steps(spiking: SpikingLayer, n: int) -> int:
    """Time bins T per sample of a ``(B*T, ...)`` input of ``n`` rows."""
    if spiking.num_timesteps is not None:
        return int(spiking.num_timesteps)
    return n // int(spiking.batch_size) if spiking.batch_size is not None else n


def _sample_events(raster: np.ndarray, recording, layer: int, dt_us: int) -> np.ndarray:
    """A sample's input events for the chip's input ``layer``: its recording (checked against
    the raster ``(T, C, H, W)``) or the raster's events."""
    if recording is None:
        return raster_to_events(raster, layer, dt_us)
    binned = events_to_raster(recording, raster.shape[1:], dt_us, n_steps=len(raster))
    if not np.array_equal(binned, raster):
        raise InvalidParameterError(
            "chip_in_the_loop: a recording's events, binned, differ from its sample's input raster")
    events = np.array(recording, copy=True)
    events["layer"] = layer
    return events


def chip_counts(model: nn.Module, x: torch.Tensor, steps: int, loop: ChipLoop) -> dict[str, np.ndarray]:
    """The chip's spike counts ``(B, T, C, H, W)`` of each core for the input ``x`` ``(B*T, C, H,
    W)``, by the model layer name of the core's spiking layer."""
    with torch.no_grad():
        mapping = map_model(model, tuple(x.shape[1:]), loop.chip, monitor="all")
    network = mapping.config.to_network()
    rasters = x.detach().cpu().numpy().reshape(-1, steps, *x.shape[1:])
    recordings = loop.recordings if loop.recordings is not None else [None] * len(rasters)
    loop.recordings = None
    if len(recordings) != len(rasters):
        raise InvalidParameterError(
            f"chip_in_the_loop: {len(recordings)} recordings for a batch of {len(rasters)} samples")
    cores = mapping.config.cores
    counts: dict[int, list[np.ndarray]] = {cid: [] for cid in cores}
    for raster, recording in zip(rasters, recordings):
        out = simulate(network, _sample_events(raster, recording, mapping.input, loop.dt_us)).events
        for cid, core in cores.items():
            counts[cid].append(events_to_raster(out, core.output_shape, loop.dt_us, n_steps=steps, layer=cid))
    return {core.layer_names[-1]: np.stack(counts[cid]) for cid, core in cores.items()}


@contextmanager
def chip_in_the_loop(model: nn.Module, chip: str = "speck2f", dt_us: int = 1000):
    """Train ``model`` with the chip's forward (event-exact simulation of its mapping to
    ``chip``, time bins of ``dt_us`` µs) and the time-stepped surrogate gradients, inside the
    ``with`` block; yields a :class:`ChipLoop`."""
    spiking_layers = [spiking for _, spiking in core_layers(model)]
    if not spiking_layers:
        raise InvalidParameterError("chip_in_the_loop: the model has no conv/linear + SpikingLayer core")
    names = {module: name for name, module in model.named_modules()}
    loop = ChipLoop(chip, dt_us)

    def run_chip(_model, inputs):
        (x,) = inputs
        loop.last = chip_counts(model, x, _steps(spiking_layers[0], len(x)), loop)

    def take_chip_counts(spiking, _inputs, out):
        if names[spiking] not in loop.last:
            raise InvalidParameterError(f"chip_in_the_loop: {names[spiking]} is no core's spiking layer")
        chip_out = torch.as_tensor(loop.last[names[spiking]]).reshape(out.shape).to(out)
        return out + (chip_out - out).detach()

    hooks = [model.register_forward_pre_hook(run_chip)]
    hooks += [spiking.register_forward_hook(take_chip_counts) for spiking in spiking_layers]
    try:
        yield loop
    finally:
        for hook in hooks:
            hook.remove()
