"""Analogue (ANN) layers for training networks that will run as spiking networks: a quantizing
ReLU that counts its activity, a floor layer and sum pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from snnlib.functional import InvalidParameterError, int_tuple, quantize, round_nearest, stochastic_rounding


class NeuromorphicReLU(torch.nn.Module):
    """ReLU whose output is quantized like a spike count.

    quantize: floor the output (straight-through gradient). fanout: synapses each output unit
    drives; ``activity`` = output summed over units, averaged over the first (batch) axis, times
    fanout, i.e. the SynOps per sample. stochastic_rounding: round instead of flooring,
    stochastically in training mode and to the nearest integer in evaluation mode (as sinabs
    v0.2: the mean of the stochastic rounding is x, which round keeps and floor lowers by 1/2;
    the seed page says "floored"). Every rounding passes the gradient straight through.
    """

    def __init__(self, quantize=True, fanout=1, stochastic_rounding=False):
        super().__init__()
        if not isinstance(fanout, (int, float)) or fanout < 0:
            raise InvalidParameterError(f"fanout={fanout!r}: expected a number >= 0")
        self.quantize = quantize
        self.fanout = fanout
        self.stochastic_rounding = stochastic_rounding
        self.activity = torch.tensor(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(x)
        if self.quantize and self.stochastic_rounding:
            out = stochastic_rounding(out) if self.training else round_nearest(out)
        elif self.quantize:
            out = quantize(out)
        self.activity = out.sum() / max(len(out), 1) * self.fanout
        return out


class QuantizeLayer(torch.nn.Module):
    """``floor(input)`` with a straight-through gradient; the identity when ``quantize`` is False."""

    def __init__(self, quantize=True):
        super().__init__()
        self.quantize = quantize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x) if self.quantize else x


class SumPool2d(torch.nn.LPPool2d):
    """Sum over ``kernel_size`` windows (stride default kernel_size): torch.nn.LPPool2d with
    p=1, computed as an exact sum (integer inputs give exact integers). With ``ceil_mode`` a
    window that runs past the edge gives, as LPPool2d and sinabs v0.2, the mean of the elements
    it covers times the window's size (ones(3, 3) pooled by 2 gives 4 everywhere)."""

    def __init__(self, kernel_size, stride=None, ceil_mode=False):
        int_tuple("kernel_size", kernel_size, 2, 1)
        if stride is not None:
            int_tuple("stride", stride, 2, 1)
        super().__init__(1, kernel_size, stride, ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sums = F.avg_pool2d(x, self.kernel_size, self.stride, 0, self.ceil_mode, True, divisor_override=1)
        if not self.ceil_mode:
            return sums
        kh, kw = int_tuple("kernel_size", self.kernel_size, 2, 1)
        covered = F.avg_pool2d(x.new_ones((1, *x.shape[-2:])), self.kernel_size, self.stride, 0, True, True,
                               divisor_override=1)
        return sums * (kh * kw / covered)
