"""Integrate-and-fire in plain torch operations, for every device without a compiled kernel
(MPS, ``meta``, XPU, ...), and the scalar parameters that every implementation shares.

The semantics are those of ``_iaf_kernels`` (its docstring has the per-step equations), operation
for operation in the data's dtype (float32 or float64), so that the results are equal bit for
bit. One difference of method, not of result: the spike count's exactness check uses Dekker's
exact product in the data's dtype (``n * thr == p + e`` exactly, with both factors split in
halves) instead of float64, so that it also runs where float64 does not (MPS). The backward
pass computes in float64, or float32 on a device without float64 (then to rounding).

``torch.compile`` can fuse it: the loop over time steps runs whole-tensor operations only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# surrogate-gradient shape codes, in the order of functional.SURROGATE_SHAPES
STEP, BOX, TRIANGLE, FAST_SIGMOID, GAUSSIAN = range(5)
INT16_MIN, INT16_MAX = -32768.0, 32767.0  # the chip's membrane range (saturate_int16)
SPLITTERS = {torch.float32: 2.0**12 + 1, torch.float64: 2.0**27 + 1}  # Dekker: halves of 12 / 26 bits


@dataclass(frozen=True)
class Scalars:
    """An ``IAFParameters`` as the kernels use it: each value rounded to the data's dtype (and
    stored as a Python float, which holds it exactly), ``inv_thr = dtype(1 / threshold)``,
    ``thr = thr_hi + thr_lo`` split for Dekker's product, ``width``/``height`` of the surrogate
    (``height`` 1 for reset, else dtype(1 / thr)), ``shape`` its index in SURROGATE_SHAPES."""

    thr: float
    inv_thr: float
    subtract: float
    low: float
    sat_lo: float
    sat_hi: float
    thr_hi: float
    thr_lo: float
    split: float
    width: float
    height: float
    reset: bool
    negative: bool
    shape: int

    def as_tensor(self, dtype: torch.dtype, device) -> torch.Tensor:
        """The numeric fields, in declaration order, as a 1-D tensor (for kernels to load)."""
        values = [self.thr, self.inv_thr, self.subtract, self.low, self.sat_lo, self.sat_hi, self.thr_hi,
                  self.thr_lo, self.split, self.width, self.height]
        return torch.tensor(values, dtype=dtype, device=device)


_CACHE: dict = {}  # (parameters, dtype) -> Scalars: a layer's parameters rarely change


def scalars(p, dtype: torch.dtype, shapes: tuple[str, ...]) -> Scalars:
    """The ``Scalars`` of IAFParameters ``p`` for data of ``dtype`` (float32 or float64);
    ``shapes`` is functional.SURROGATE_SHAPES. Cached (a plain dict, which torch.compile traces)."""
    key = (p, dtype)
    if key not in _CACHE:
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = _scalars(p, dtype, shapes)
    return _CACHE[key]


def _scalars(p, dtype: torch.dtype, shapes: tuple[str, ...]) -> Scalars:
    real = np.float32 if dtype == torch.float32 else np.float64
    thr = real(p.threshold)
    c = real(SPLITTERS[dtype]) * thr
    thr_hi = c - (c - thr)
    width = real(p.surrogate_window * p.threshold)
    low = -np.inf if p.threshold_low is None else p.threshold_low
    saturate = (INT16_MIN, INT16_MAX) if p.saturate_int16 else (-np.inf, np.inf)
    return Scalars(
        float(thr), float(real(1.0 / p.threshold)), float(real(p.subtract)), float(real(low)),
        *saturate, float(thr_hi), float(thr - thr_hi), SPLITTERS[dtype], float(width),
        float(real(1.0 if p.membrane_reset else 1.0 / p.threshold)),
        p.membrane_reset, p.negative_spikes and not p.membrane_reset, shapes.index(p.surrogate),
    )


def _above(n: torch.Tensor, k: Scalars, a: torch.Tensor) -> torch.Tensor:
    """Whether ``n * thr > a`` holds exactly: ``n * thr = p + e`` (Dekker), and ``p - a`` is
    exact where it is small (Sterbenz), else too large for ``e`` to change its sign."""
    c = n * k.split
    n_hi = c - (c - n)
    n_lo = n - n_hi
    p = n * k.thr
    e = ((n_hi * k.thr_hi - p) + n_hi * k.thr_lo + n_lo * k.thr_hi) + n_lo * k.thr_lo
    return (p - a) + e > 0


def spike_count(w: torch.Tensor, k: Scalars) -> torch.Tensor:
    """Spikes at membrane ``w``: the floor of the exact quotient ``w / thr`` for ``w >= thr``
    (truncated towards zero with ``negative``), 1 for ``w >= thr`` with ``reset``, else 0."""
    a = w.abs() if k.negative else w
    if k.reset:
        return (a >= k.thr).to(w.dtype)
    n = torch.floor(a * k.inv_thr)  # one off at most either way: corrected exactly
    n = torch.where(_above(n, k, a), n - 1, n)
    n = torch.where(_above(n + 1, k, a), n, n + 1).clamp(min=0)
    return torch.where(w < 0, -n, n)


def surrogate(w: torch.Tensor, thr: float, shape: int, width: float, height: float,
              compute: torch.dtype) -> torch.Tensor:
    """The surrogate derivative of ``shape`` (an index into SURROGATE_SHAPES) at membrane ``w``
    in dtype ``compute``, with the operations, and so the roundings, of ``_iaf_kernels.surrogate``:
    ``thr`` and ``width`` (numbers that ``w``'s dtype holds) combine with ``w`` in its dtype."""
    thr = w.new_tensor(thr)
    if shape == STEP:
        return (w >= thr - width).to(compute) * height
    # a division by a tensor: torch may divide by a Python number as a product with its inverse
    d = torch.div((w - thr).abs(), w.new_tensor(width))
    if shape == BOX:
        return (d <= 1.0).to(compute) * height
    d = d.to(compute)
    if shape == TRIANGLE:
        return height * (1.0 - d).clamp(min=0.0)
    if shape == FAST_SIGMOID:
        return torch.div(d.new_tensor(height), (1.0 + d) * (1.0 + d))
    return height * torch.exp(-0.5 * d * d)


def compute_dtype(device: torch.device) -> torch.dtype:
    """float64, or float32 on a device without float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def forward(x: torch.Tensor, state: torch.Tensor, out: torch.Tensor, k: Scalars, save: bool,
            membrane: torch.Tensor):
    """All T steps of ``x`` ``(B, T, N)`` from membrane ``state`` ``(B, N)`` (updated in place);
    spike counts into ``out``, the last step's clamped membrane ``w`` into ``membrane`` ``(B, N)``.
    Returns the clipped pre-clamp membranes ``(B, T, N)`` if ``save``."""
    u_saved = torch.empty_like(x) if save else None
    v = state
    for t in range(x.shape[1]):
        u = (v + x[:, t]).clamp(k.sat_lo, k.sat_hi)
        if save:
            u_saved[:, t] = u
        w = u.clamp(min=k.low)
        s = spike_count(w, k)
        out[:, t] = s
        v = torch.where(s > 0, 0.0, w) if k.reset else w - s * k.subtract
        if t == x.shape[1] - 1:
            membrane.copy_(w)
    state.copy_(v)
    return u_saved


def backward(grad_out: torch.Tensor, u_saved: torch.Tensor, spikes: torch.Tensor, k: Scalars) -> torch.Tensor:
    """The gradient of the input, as ``_iaf_kernels.iaf_backward`` computes it."""
    compute = compute_dtype(u_saved.device)
    grad_x = torch.empty_like(u_saved)
    g_next = torch.zeros_like(u_saved[:, 0])
    for t in range(u_saved.shape[1] - 1, -1, -1):
        u = u_saved[:, t]
        w = u.clamp(min=k.low)
        ds = surrogate(w.abs() if k.negative else w, k.thr, k.shape, k.width, k.height, compute)
        if k.reset:
            carry = 1.0 - spikes[:, t].to(compute)
        else:
            carry = (1.0 - k.subtract * ds).clamp(-1.0, 1.0)
        g_w = g_next.to(compute) * carry + grad_out[:, t].to(compute) * ds
        grad_x[:, t] = torch.where(u > k.low, g_w, 0.0)
        g_next = grad_x[:, t]
    return grad_x


def threshold_gradient(grad_out: torch.Tensor, u_saved: torch.Tensor, spikes: torch.Tensor, grad_x: torch.Tensor,
                       k: Scalars, tied: bool) -> torch.Tensor:
    """The gradient of the threshold, per neuron ``(N,)``, summed over batch and time steps.

    The spike count depends on the membrane and the threshold only through ``w / thr``, so its
    surrogate derivative in the threshold is ``-(w / thr)`` times the one in the membrane, ``f'``.
    That term reaches the loss directly (``grad_out``) and through the membrane the spikes leave
    (the carry of ``iaf_backward``, ``clip(1 - subtract * f') - 1``; none with reset, whose mask
    is a constant); with ``tied`` (``membrane_subtract`` follows the threshold) the subtraction
    ``-thr * s`` adds ``-s`` times the gradient that reached the next step's membrane,
    ``grad_x[t + 1]`` (0 after the last step). Computed in float64 (float32 on MPS)."""
    compute = compute_dtype(u_saved.device)
    w = u_saved.clamp(min=k.low)
    ds = surrogate(w.abs() if k.negative else w, k.thr, k.shape, k.width, k.height, compute)
    g_next = torch.zeros_like(grad_x, dtype=compute)
    g_next[:, :-1] = grad_x[:, 1:]
    through = grad_out.to(compute) * ds
    if not k.reset:
        through = through + g_next * ((1.0 - k.subtract * ds).clamp(-1.0, 1.0) - 1.0)
    grad = -(w.to(compute) / k.thr) * through
    if tied and not k.reset:
        grad = grad - g_next * spikes.to(compute)
    return grad.sum((0, 1))
