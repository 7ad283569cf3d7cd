"""Count spikes and synaptic operations (SynOps) per layer while a model runs.

A SynOp is one synaptic update: a spike (or, in an ANN, a unit of activation) arriving at one
target neuron. For a Conv2d the count is exact at the borders: each input unit contributes the
number of output neurons its value reaches, i.e. ``conv2d(input, ones_like(weight)).sum()``;
for a Linear, ``input.sum() * out_features``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from snnlib.ann import NeuromorphicReLU
from snnlib.functional import InvalidParameterError
from snnlib.layers import SpikingLayer


@dataclass
class LayerActivity:
    """What one layer did since the last reset: ``spikes`` (total output count of a spiking
    layer, else None), ``neuron_steps`` (neurons x time steps it ran, for rates) and ``synops``
    (SynOps it received, for Conv2d / Linear layers, else None)."""

    spikes: float | None = None
    neuron_steps: int = 0
    synops: float | None = None

    @property
    def spike_rate(self) -> float | None:
        """Spikes per neuron per time step."""
        return None if self.spikes is None or not self.neuron_steps else self.spikes / self.neuron_steps


def _synops(layer: torch.nn.Module, x: torch.Tensor) -> float:
    x = x.detach()
    if isinstance(layer, torch.nn.Linear):
        return float(x.sum()) * layer.out_features
    ones = torch.ones_like(layer.weight, dtype=x.dtype)
    if layer.padding_mode != "zeros":
        raise InvalidParameterError(f"layer {layer}: padding_mode={layer.padding_mode!r}; SynOps are counted for 'zeros' only")
    return float(F.conv2d(x, ones, None, layer.stride, layer.padding, layer.dilation, layer.groups).sum())


class SynOpCounter:
    """Attach to ``model`` and record a ``LayerActivity`` per named SpikingLayer /
    NeuromorphicReLU (spikes) and Conv2d / Linear (SynOps) on each forward pass.

    Use as a context manager, or call ``remove()`` to detach; ``reset()`` zeroes the counts;
    ``activity`` maps module names to LayerActivity; ``total_synops()`` sums them.
    """

    def __init__(self, model: torch.nn.Module):
        if not isinstance(model, torch.nn.Module):
            raise InvalidParameterError(f"model={model!r}: expected a torch.nn.Module")
        self.activity: dict[str, LayerActivity] = {}
        self._hooks = []
        for name, module in model.named_modules():
            if isinstance(module, (SpikingLayer, NeuromorphicReLU, torch.nn.Conv2d, torch.nn.Linear)):
                self.activity[name] = LayerActivity()
                self._hooks.append(module.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):
        def hook(module, inputs, output):
            record = self.activity[name]
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                record.synops = (record.synops or 0.0) + _synops(module, inputs[0])
            else:
                record.spikes = (record.spikes or 0.0) + float(output.detach().abs().sum())
                record.neuron_steps += output.numel()
        return hook

    def reset(self) -> None:
        """Zero all counts."""
        for name in self.activity:
            self.activity[name] = LayerActivity()

    def total_synops(self) -> float:
        """SynOps of all Conv2d / Linear layers together."""
        return sum(a.synops or 0.0 for a in self.activity.values())

    def remove(self) -> None:
        """Detach from the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def __enter__(self) -> SynOpCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
