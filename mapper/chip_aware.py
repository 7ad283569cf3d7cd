"""Chip-aware training: inside ``with chip_aware(model):`` each core layer (a bias-free
``Conv2d``/``Linear`` directly followed by a ``SpikingLayer``) computes what ``map_model`` will
put on the chip: the weights rounded to the int8 grid of the layer's scale (chosen as
``mapper.quantize`` chooses it, from the current weights and thresholds), the thresholds and
``threshold_low`` rounded on that scale (None becomes the chip's floor, -32768).

The membrane is not clipped at 32767 after each time bin (``saturate_int16`` is off inside the
block): the chip clips after each synaptic update, and each update that reaches the threshold
fires and subtracts, so while weights are at most the threshold its membrane never nears 32767;
clipping a bin's summed input would cap that bin at ``32767 / threshold`` spikes where the chip
does not. With weights in [0, threshold] the block's spike counts per bin are the chip's
(tests/test_chip_aware.py); otherwise they differ as docs/chip-model.md, "Relation to the
time-stepped layers", says (mixed signs within a bin, weights above the threshold, clamping).

The core runs in chip units (the convolution with the integer weights ``round(w * scale)``, the
spiking layer with the integer thresholds), so its spikes are those of the quantized core; the
rounding passes the gradient straight through (``d round(w * scale) / dw = scale``). On leaving
the block the model's float weights and spiking-layer settings are as they were, trained.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from mapper.quantize import tensor_scale
from snnlib import InvalidParameterError, SpikingLayer


class _ChipWeights(nn.Module):
    """Parametrization ``w -> round(w * scale)`` (straight-through) with the layer's scale,
    which it keeps in ``scale`` for the spiking layer that follows (whose float settings are
    ``original``)."""

    def __init__(self, original: dict):
        super().__init__()
        self.original, self.scale = original, 1.0

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        low = self.original["threshold_low"]
        pair = [_value(self.original["threshold"])] + ([] if low is None else [low])
        scale = min(tensor_scale(weight.detach().cpu().numpy(), 8), tensor_scale(pair, 16))
        self.scale = scale if np.isfinite(scale) else 1.0
        scaled = weight * self.scale
        return scaled + (torch.round(scaled) - scaled).detach()


class _ChipThreshold(nn.Module):
    """Parametrization of a threshold parameter: ``max(1, round(threshold * scale))`` on the
    scale of its layer's weights (``weights``: their ``_ChipWeights``), straight-through."""

    def __init__(self, weights: _ChipWeights):
        super().__init__()
        self.weights = [weights]  # a list: not a submodule

    def forward(self, threshold: torch.Tensor) -> torch.Tensor:
        scaled = threshold * self.weights[0].scale
        return scaled + (torch.round(scaled).clamp(min=1) - scaled).detach()


SETTINGS = ("threshold", "threshold_low", "_membrane_subtract", "saturate_int16")


def _value(threshold) -> float:
    """A threshold (a number, or a one-value tensor or parameter) as a float."""
    return float(threshold.detach()) if isinstance(threshold, torch.Tensor) else float(threshold)


def _chip_settings(original: dict, scale: float) -> dict:
    """A spiking layer's ``original`` settings in chip units, as mapper.quantize rounds them
    (no per-bin int16 clipping: see the module docstring)."""
    high = max(1.0, float(np.round(_value(original["threshold"]) * scale)))
    low = original["threshold_low"]
    low = -32768 if low is None else int(np.round(low * scale)) or -1
    # the chip subtracts its threshold per spike: None makes the layer follow its threshold
    return {"threshold": high, "threshold_low": float(low), "_membrane_subtract": None, "saturate_int16": False}


def core_layers(model: nn.Module) -> list[tuple[nn.Module, SpikingLayer]]:
    """The (conv or linear, spiking layer) pairs of ``model``, in module order."""
    leaves = [m for m in model.modules() if not list(m.children())]
    pairs = [(a, b) for a, b in zip(leaves, leaves[1:])
             if isinstance(a, (nn.Conv2d, nn.Linear)) and isinstance(b, SpikingLayer)]
    for layer, spiking in pairs:
        if layer.bias is not None:
            raise InvalidParameterError(f"chip_aware: {layer} has a bias; chip-aware training takes bias-free layers")
        if len(spiking.threshold_values()) != 1:
            raise InvalidParameterError(
                f"chip_aware: {spiking.layer_name} has one threshold per channel; the chip holds one per "
                "layer: give it a single value (a number or a 0-dim tensor)")
    return pairs


@contextmanager
def chip_aware(model: nn.Module):
    """Train (or evaluate) ``model`` as the chip will compute it, inside the ``with`` block."""
    pairs = core_layers(model)
    saved, hooks = [], []
    for layer, spiking in pairs:
        saved.append({name: getattr(spiking, name) for name in SETTINGS})
        weights = _ChipWeights(saved[-1])
        parametrize.register_parametrization(layer, "weight", weights)
        if isinstance(spiking.threshold, nn.Parameter):  # stays a parameter, trained through the rounding
            parametrize.register_parametrization(spiking, "threshold", _ChipThreshold(weights))

        def to_chip_units(module, _inputs, weights=weights):
            for name, value in _chip_settings(weights.original, weights.scale).items():
                if not (name == "threshold" and parametrize.is_parametrized(module, name)):
                    setattr(module, name, value)
        hooks.append(spiking.register_forward_pre_hook(to_chip_units))
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        for (layer, spiking), original in zip(pairs, saved):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
            if parametrize.is_parametrized(spiking, "threshold"):
                parametrize.remove_parametrizations(spiking, "threshold", leave_parametrized=False)
            for name, value in original.items():
                setattr(spiking, name, value)
