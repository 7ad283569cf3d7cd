"""ANN-to-SNN conversion: replace the ReLUs of a trained torch model by SpikingLayers, and
optionally normalise its weights by activation percentiles first (data-based normalisation:
each layer is rescaled so that the chosen percentile of its ReLU output becomes 1, the
threshold)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from snnlib.ann import NeuromorphicReLU
from snnlib.functional import InvalidParameterError
from snnlib.layers import SpikingLayer

_RELUS = (torch.nn.ReLU, NeuromorphicReLU)
_WEIGHTED = (torch.nn.Conv2d, torch.nn.Linear)


def normalize_weights(model: torch.nn.Module, sample_data: torch.Tensor, percentile: float = 99.0) -> torch.nn.Module:
    """Rescale, in place, each Conv2d/Linear that feeds a ReLU so that the ``percentile`` (0-100]
    of that ReLU's output on ``sample_data`` is 1, and the layers after the last ReLU so that
    the network's output keeps its scale relative to the last one. Layers are paired in module
    registration order, so the model must be a feed-forward chain of them (e.g. Sequential).
    Returns ``model``."""
    if not 0 < percentile <= 100:
        raise InvalidParameterError(f"percentile={percentile!r}: expected a number in (0, 100]")
    scales: dict[torch.nn.Module, float] = {}  # weighted layer -> percentile of its ReLU's output
    hooks, weighted = [], None

    def record(layer):
        def hook(_module, _input, output):
            scales[layer] = float(np.percentile(output.detach().cpu().numpy(), percentile))
        return hook

    for module in model.modules():
        if isinstance(module, _WEIGHTED):
            weighted = module
        elif isinstance(module, _RELUS) and weighted is not None:
            hooks.append(module.register_forward_hook(record(weighted)))
            weighted = None
    if not hooks:
        raise InvalidParameterError("model: has no Conv2d/Linear followed by a ReLU to normalise")
    try:
        with torch.no_grad():
            model(sample_data)
    finally:
        for hook in hooks:
            hook.remove()
    previous = 1.0
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, _WEIGHTED)):
            scale = scales.get(layer, 1.0) or 1.0  # not before a ReLU, or a silent ReLU: keep the scale
            layer.weight.mul_(previous / scale)
            if layer.bias is not None:
                layer.bias.div_(scale)
            previous = scale
    return model


def from_torch(model: torch.nn.Module, threshold: float = 1.0, threshold_low: float | None = -1.0,
               membrane_subtract: float | None = None, batch_size: int | None = None, *,
               sample_data: torch.Tensor | None = None, percentile: float = 99.0, **spiking_options) -> torch.nn.Module:
    """A spiking copy of ``model``: every ReLU / NeuromorphicReLU becomes a SpikingLayer with the
    given parameters (``spiking_options`` go to SpikingLayer too). With ``sample_data`` (one
    input batch of the ANN) the copy's weights are first normalised with ``normalize_weights``.
    The copy takes ``(T, ...)`` or ``(B*T, ...)`` inputs (time steps on the first axis); the
    original model is not changed."""
    snn = copy.deepcopy(model)
    if sample_data is not None:
        normalize_weights(snn, sample_data, percentile)

    def make_layer(name: str) -> SpikingLayer:
        return SpikingLayer(threshold, threshold_low, membrane_subtract, batch_size, layer_name=name, **spiking_options)

    if isinstance(snn, _RELUS):
        return make_layer("spiking")
    for name, module in list(snn.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, _RELUS):
                setattr(module, child_name, make_layer(f"{name}.{child_name}" if name else child_name))
    return snn
