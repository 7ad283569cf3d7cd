"""Build an :class:`IntegerNetwork` from a ``torch.nn.Sequential`` with integer parameters.

The model is a chain of core layers, each ``Conv2d`` (or ``Flatten`` + ``Linear``) followed by
a :class:`snnlib.SpikingLayer`, optionally followed by ``SumPool2d`` / ``AvgPool2d``, whose
factor becomes the destination pooling of that core. ``AvgPool2d(k)`` is a sum pool whose
``1/k²`` is folded into the next layer's weights, which must stay integers. A conv bias is
the leak: it is added on every slow-clock tick, so it needs ``slow_clock_period_us``.
``nn.Identity`` and ``nn.Dropout`` are skipped. Anything the chip cannot represent raises
:class:`UnsupportedModelError` naming the module's index and what to change.
"""

from __future__ import annotations

import numpy as np
import torch

from snnlib.ann import SumPool2d
from snnlib.errors import SpikeflashError
from snnlib.layers import SpikingLayer
from snnlib.network import INT16_RANGE, CoreLayer, Destination, IntegerNetwork

SKIPPED = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Dropout2d)


class UnsupportedModelError(SpikeflashError, ValueError):
    """A module of the model cannot be expressed as chip core layers.

    Example scenarios:
      - a Conv2d with a non-square kernel, or a SpikingLayer with ``negative_spikes=True``
      - weights that are not integers in the chip's range, or a Linear after a missing Flatten
    """


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _integers(where: str, name: str, tensor: torch.Tensor, lo: int, hi: int) -> np.ndarray:
    a = tensor.detach().cpu().double().numpy()
    bad = (np.mod(a, 1) != 0) | (a < lo) | (a > hi)
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]]
        raise UnsupportedModelError(
            f"{where}: {name}{idx if idx else ''} = {a[tuple(idx)]}; expected integers in [{lo}, {hi}] "
            "(quantize the model first)"
        )
    return a.astype(np.int64)


def _pool_factor(index: int, module) -> int:
    k, s = _pair(module.kernel_size), _pair(module.stride if module.stride is not None else module.kernel_size)
    pad = _pair(getattr(module, "padding", 0))
    if k[0] != k[1] or s != k or pad != (0, 0) or getattr(module, "ceil_mode", False):
        raise UnsupportedModelError(
            f"module {index} ({type(module).__name__}): kernel {k}, stride {s}, padding {pad}; the chip "
            "pools square windows with stride = kernel, no padding and no ceil_mode"
        )
    return k[0]


class _Builder:
    """Walks the modules, collecting one pending core layer at a time."""

    def __init__(self, input_shape, slow_clock_period_us):
        self.shape = tuple(int(n) for n in input_shape)  # (c, h, w) of the current activity
        self.flat = False
        self.slow_clock_period_us = slow_clock_period_us
        self.layers: list[CoreLayer] = []
        self.pools: list[int] = []  # pooling after each finished layer
        self.conv = None  # (weights float (f, c, k, k), bias, stride, padding, index) awaiting its neurons
        self.avg_scale = 1  # 1/k² factors of AvgPools awaiting the next weights

    def weights(self, i: int, weight: torch.Tensor, bias, stride, padding) -> None:
        if self.conv is not None:
            raise UnsupportedModelError(
                f"module {i} ({type(weight).__name__}): two weight layers in a row; a core is "
                "conv -> SpikingLayer: add a SpikingLayer between them"
            )
        c = weight.shape[1]
        if c != self.shape[0]:
            raise UnsupportedModelError(f"module {i}: expects {c} input channels, gets {self.shape}")
        self.conv = (weight.detach().double() / self.avg_scale, bias, stride, padding, i)
        self.avg_scale = 1

    def conv2d(self, i: int, m: torch.nn.Conv2d) -> None:
        if self.flat:
            raise UnsupportedModelError(f"module {i} (Conv2d): after Flatten; a Conv2d needs a (c, h, w) input")
        if _pair(m.dilation) != (1, 1) or m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise UnsupportedModelError(
                f"module {i} (Conv2d): dilation {m.dilation}, groups {m.groups}, padding {m.padding!r}, "
                f"padding_mode {m.padding_mode!r}; the chip supports dilation 1, groups 1, integer zero padding"
            )
        if m.kernel_size[0] != m.kernel_size[1]:
            raise UnsupportedModelError(f"module {i} (Conv2d): kernel {m.kernel_size}; the chip needs a square kernel")
        self.weights(i, m.weight, m.bias, _pair(m.stride), _pair(m.padding))

    def linear(self, i: int, m: torch.nn.Linear) -> None:
        c, h, w = self.shape
        if m.in_features != c * h * w:
            raise UnsupportedModelError(f"module {i} (Linear): in_features {m.in_features}, gets {c}x{h}x{w} = {c * h * w}")
        if (h, w) != (1, 1) and not self.flat:
            raise UnsupportedModelError(f"module {i} (Linear): input {self.shape} is not flat; add nn.Flatten")
        if h != w:
            raise UnsupportedModelError(
                f"module {i} (Linear): input map {h}x{w} becomes a {h}x{w} kernel; the chip needs a square one"
            )
        self.weights(i, m.weight.reshape(m.out_features, c, h, w), m.bias, (1, 1), (0, 0))

    def spiking(self, i: int, m: SpikingLayer) -> None:
        if self.conv is None:
            raise UnsupportedModelError(f"module {i} (SpikingLayer): no Conv2d / Linear before it")
        weight, bias, stride, padding, wi = self.conv
        where = f"module {wi}"
        threshold = torch.as_tensor(m.threshold, dtype=torch.float64).detach()
        if threshold.numel() != 1:
            raise UnsupportedModelError(
                f"module {i} (SpikingLayer): {threshold.numel()} thresholds (one per channel); the chip has one "
                "per layer"
            )
        threshold = threshold.reshape(())
        if float(torch.as_tensor(m.membrane_subtract).detach()) != float(threshold) and not m.membrane_reset:
            raise UnsupportedModelError(
                f"module {i} (SpikingLayer): membrane_subtract = {m.membrane_subtract} differs from threshold "
                f"= {m.threshold}; the chip subtracts exactly threshold_high"
            )
        if m.negative_spikes:
            raise UnsupportedModelError(f"module {i} (SpikingLayer): negative_spikes=True; the chip has none")
        thr = _integers(f"module {i} (SpikingLayer)", "threshold", threshold, 1, INT16_RANGE[1])
        low = INT16_RANGE[0] if m.threshold_low is None else m.threshold_low
        low = _integers(f"module {i} (SpikingLayer)", "threshold_low", torch.tensor(float(low)), *INT16_RANGE)
        w = _integers(where, "weight", weight, -128, 127).astype(np.int8)
        leak = None
        if bias is not None and bool(torch.any(bias != 0)):
            if self.slow_clock_period_us is None:
                raise UnsupportedModelError(
                    f"module {wi}: has a bias, which the chip adds on every slow-clock tick; pass "
                    "slow_clock_period_us (the time step in µs), or remove the bias"
                )
            leak = _integers(where, "bias", bias, *INT16_RANGE).astype(np.int16)
        layer = CoreLayer(w, self.shape, int(thr), int(low), stride, padding,
                          "zero" if m.membrane_reset else "subtract", leak, leak is not None)
        self.layers.append(layer)
        self.pools.append(1)
        self.conv = None
        self.shape = layer.output_shape
        self.flat = False

    def pool(self, i: int, m) -> None:
        if self.conv is not None or not self.layers:
            raise UnsupportedModelError(
                f"module {i} ({type(m).__name__}): pooling must follow a SpikingLayer (conv -> spiking -> pool)"
            )
        k = _pool_factor(i, m)
        self.pools[-1] *= k
        if self.pools[-1] not in (1, 2, 4):
            raise UnsupportedModelError(
                f"module {i} ({type(m).__name__}): total pooling {self.pools[-1]} after layer "
                f"{len(self.layers) - 1}; the chip pools by 1, 2 or 4"
            )
        if isinstance(m, torch.nn.AvgPool2d):
            self.avg_scale *= k * k
        c, h, w = self.shape
        self.shape = (c, h // k, w // k)


def network_from_sequential(model: torch.nn.Sequential, input_shape: tuple[int, int, int], *,
                            monitor="output", slow_clock_period_us: int | None = None) -> IntegerNetwork:
    """An :class:`IntegerNetwork` with layer ids ``0..n-1`` (one per SpikingLayer) from ``model``.

    ``input_shape``: ``(c, h, w)`` of the input events (layer 0). ``monitor``: ``"output"`` (the
    last layer), ``"all"``, or a list of layer ids. ``slow_clock_period_us``: the leak tick
    period in µs, needed when a weight layer has a bias.
    """
    if not isinstance(model, torch.nn.Sequential):
        raise UnsupportedModelError(f"model: got {type(model).__name__}; expected a torch.nn.Sequential")
    if len(input_shape) != 3 or any(int(n) < 1 for n in input_shape):
        raise UnsupportedModelError(f"input_shape={input_shape!r}: expected (c, h, w) with positive sizes")
    b = _Builder(input_shape, slow_clock_period_us)
    for i, m in enumerate(model):
        if isinstance(m, torch.nn.Conv2d):
            b.conv2d(i, m)
        elif isinstance(m, torch.nn.Linear):
            b.linear(i, m)
        elif isinstance(m, torch.nn.Flatten):
            b.flat = True
        elif isinstance(m, SpikingLayer):
            b.spiking(i, m)
        elif isinstance(m, (SumPool2d, torch.nn.AvgPool2d)):
            b.pool(i, m)
        elif not isinstance(m, SKIPPED):
            raise UnsupportedModelError(
                f"module {i} ({type(m).__name__}): not supported; use Conv2d, Linear, Flatten, "
                "SpikingLayer, SumPool2d or AvgPool2d"
            )
    if b.conv is not None:
        raise UnsupportedModelError(f"module {b.conv[-1]}: the last weight layer needs a SpikingLayer after it")
    if not b.layers:
        raise UnsupportedModelError("model: no SpikingLayer, so no core layer")
    if b.pools[-1] != 1:
        raise UnsupportedModelError(
            "model: ends with pooling; the chip does not pool a network's output (monitored spikes are "
            "unpooled): remove it and pool the output raster afterwards"
        )
    if b.avg_scale != 1:
        raise UnsupportedModelError("model: an AvgPool2d has no weight layer after it to fold 1/k² into")
    n = len(b.layers)
    ids = _monitored(monitor, n)
    for lid, layer in enumerate(b.layers):
        layer.monitor = lid in ids
        if lid + 1 < n:
            layer.destinations = [Destination(lid + 1, b.pools[lid])]
    return IntegerNetwork(dict(enumerate(b.layers)), None, slow_clock_period_us).validate()


def _monitored(monitor, n: int) -> set[int]:
    if monitor == "output":
        return {n - 1}
    if monitor == "all":
        return set(range(n))
    if isinstance(monitor, (list, tuple, set)) and all(isinstance(i, int) and 0 <= i < n for i in monitor):
        return set(monitor)
    raise UnsupportedModelError(f"monitor={monitor!r}: expected 'output', 'all' or a list of layer ids in [0, {n})")
