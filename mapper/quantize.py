"""Quantization (``docs/chip-model.md``, "Quantization"): one scale per core layer so that weights fit int8
and thresholds, bias and state fit int16.

For a tensor ``x`` and ``n`` bits, ``scale(x, n)`` is the largest factor with ``x * scale``
inside ``[-2**(n-1), 2**(n-1) - 1]``; the layer scale is the minimum over weights (8 bit),
bias (16 bit) and the threshold pair (16 bit). Every value becomes ``round(x * scale)``
with numpy's round-half-to-even. A ``threshold_low`` that would round to 0 (a hardware bug)
becomes -1; an unbounded ``threshold_low`` (None) becomes -32768.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mapper.legalize import CorePlan
from mapper.report import Note, QuantRow


def tensor_scale(x: np.ndarray, bits: int) -> float:
    """Largest factor with ``x * factor`` in the signed ``bits`` range (inf for all zeros)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    x = np.asarray(x, dtype=np.float64)
    mx, mn = (float(x.max()), float(x.min())) if x.size else (0.0, 0.0)
    if mx <= 0 and mn >= 0:
        return float("inf")
    if abs(mn) <= abs(mx) * abs(lo / hi):
        return abs(hi / mx)
    return abs(lo / mn)


@dataclass
class QuantizedCore:
    """Integer parameters of one core layer and how they were obtained."""

    weights: np.ndarray  # int8 (f, c, kh, kw)
    bias: np.ndarray | None  # int16 (f,)
    threshold_high: int
    threshold_low: int
    row: QuantRow
    notes: list[Note]


def quantize_core(plan: CorePlan) -> QuantizedCore:
    """Quantize one legalized core layer (see module docstring)."""
    pair = [plan.threshold] + ([] if plan.threshold_low is None else [plan.threshold_low])
    scale = min(tensor_scale(plan.weights, 8), tensor_scale(pair, 16),
                 tensor_scale(plan.bias, 16) if plan.bias is not None else float("inf"))
    if not np.isfinite(scale):
        scale = 1.0
    notes = []
    w = np.round(plan.weights * scale)
    errors = [np.abs(w / scale - plan.weights).max(initial=0.0)]
    high = int(np.round(plan.threshold * scale))
    errors.append(abs(high / scale - plan.threshold))
    if high < 1:
        notes.append(Note(plan.layer_names[-1], f"threshold rounds to {high}; raised to 1"))
        high = 1
    if plan.threshold_low is None:
        low = -32768
    else:
        low = int(np.round(plan.threshold_low * scale))
        errors.append(abs(low / scale - plan.threshold_low))
        if low == 0:
            notes.append(Note(plan.layer_names[-1], "threshold_low rounds to 0 (a hardware bug); using -1"))
            low = -1
    bias = None
    if plan.bias is not None:
        b = np.round(plan.bias * scale)
        errors.append(np.abs(b / scale - plan.bias).max())
        bias = b.astype(np.int16)
    return QuantizedCore(w.astype(np.int8), bias, high, low,
                         QuantRow(plan.name, float(scale), float(max(errors))), notes)
