"""Compiled integrate-and-fire loops over a whole sequence (numba).

Arrays are ``(B, T, N)`` (batch, time step, neuron) and C-contiguous; the membrane ``v`` is
``(B, N)`` and is updated in place; ``w_last`` ``(B, N)`` receives the last step's ``w`` (the
membrane before its spikes leave, sinabs v0.2's ``state``). Work is split over (batch, block of neurons) so that each
thread keeps its block of membranes in cache while it walks through time. All parameters are
scalars of the arrays' dtype so that float32 data is computed in float32: the forward pass
rounds every operation below to the data's dtype, and only the exactness check of the spike
count runs in float64. The backward pass computes each step in float64 and stores the
gradient in the data's dtype.

Per step and neuron (the forward pass)::

    u = clip(v + x[t], sat_lo, sat_hi)     # sat_* = +-inf unless saturating to int16
    w = max(u, low)                        # low = -inf when unbounded
    s = spike count of w                   # floor(w / thr), or 1 if w >= thr (reset)
    v = w - s * subtract                   # or 0 where s > 0 (reset)

The spike count is the floor of the exact quotient ``w / thr`` of the two floating-point
values, as ``torch.div(w, thr, rounding_mode="floor")`` gives it: a membrane of exactly k x thr
(k = 0, 1, 2, ...) emits k spikes, and float32 ``1.0`` at ``thr = 0.1`` emits 9, because
float32 0.1 is slightly above 1/10. Exact for counts below ``EXACT_COUNT_LIMIT`` per step.

The backward pass (``iaf_backward``) treats the reset mask ``(1 - s)`` as a constant, passes
no gradient where the membrane was clamped at or below ``low``, and bounds the factor that
carries the gradient from one step's membrane to the previous one to [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

BLOCK = 2048  # neurons per work item: 8-16 KiB of membrane, stays in L1/L2
EXACT_COUNT_LIMIT = 2**26  # n * thr is exact in float64 below it (26-bit n times 26-bit halves)
VELTKAMP = 2.0**27 + 1  # splits a float64 into two halves of at most 26 significant bits

# surrogate-gradient shape codes, in the order of functional.SURROGATE_SHAPES
STEP, BOX, TRIANGLE, FAST_SIGMOID, GAUSSIAN = range(5)


@njit(inline="always")
def split_threshold(thr):
    """``thr`` as float64 ``(hi, lo)`` with ``hi + lo == thr`` exactly and at most 26 significant
    bits each (Veltkamp's split), so that ``n * hi`` and ``n * lo`` are exact for n < 2**26."""
    thr = np.float64(thr)
    c = VELTKAMP * thr
    hi = c - (c - thr)
    return hi, thr - hi


@njit(inline="always")
def _above(n, thr_hi, thr_lo, a):
    """Whether ``n * thr > a`` holds exactly (float64 n < EXACT_COUNT_LIMIT, a >= 0 float64).
    Both products are exact; ``n * thr_hi - a`` is exact when the two are within a factor of two
    (Sterbenz), and otherwise so far from zero that the rounding cannot change the sign."""
    return (n * thr_hi - a) + n * thr_lo > 0.0


@njit(inline="always")
def spike_count(w, inv_thr, thr_hi, thr_lo, reset, negative):
    """Spikes for membrane ``w``: ``floor(w / thr)`` of the exact quotient for w >= thr (with
    ``negative``, truncated towards zero), 1 for w >= thr with ``reset``, else 0, in the dtype
    of ``w``. ``inv_thr = 1 / thr`` in that dtype; ``thr = thr_hi + thr_lo`` in float64
    (``split_threshold``). Branch-free so that the loops vectorize."""
    zero = w - w
    one = zero + np.float32(1)  # a float32 1 keeps float32 data in float32 (an int would widen it)
    a = abs(w) if negative else w
    a64 = np.float64(a)
    if reset:
        return zero if _above(1.0, thr_hi, thr_lo, a64) else one
    n = np.floor(a * inv_thr)  # the rounded quotient can be one off either way: correct it
    n = n - one if _above(np.float64(n), thr_hi, thr_lo, a64) else n
    n = n + one if not _above(np.float64(n + one), thr_hi, thr_lo, a64) else n
    n = max(n, zero)
    return -n if w < zero else n


@njit(inline="always")
def surrogate(w, thr, code, width, height):
    """d(spikes)/d(membrane) of the chosen shape at membrane ``w`` (see functional.py)."""
    if code == STEP:
        return height if w >= thr - width else 0.0
    d = abs(w - thr) / width
    if code == BOX:
        return height if d <= 1.0 else 0.0
    if code == TRIANGLE:
        return height * max(0.0, 1.0 - d)
    if code == FAST_SIGMOID:
        return height / ((1.0 + d) * (1.0 + d))
    return height * math.exp(-0.5 * d * d)


@njit(inline="always")
def _forward_row(x, v, out, u_saved, save, w_last, last, inv_thr, thr_hi, thr_lo, subtract, low, sat_lo, sat_hi,
                 reset, negative):
    """One time step for a contiguous run of neurons (1-D arrays, so that LLVM vectorizes)."""
    for i in range(x.shape[0]):
        u = min(max(v[i] + x[i], sat_lo), sat_hi)
        if save:
            u_saved[i] = u
        w = max(u, low)
        if last:
            w_last[i] = w
        s = spike_count(w, inv_thr, thr_hi, thr_lo, reset, negative)
        out[i] = s
        v[i] = (w - w if s > 0 else w) if reset else w - s * subtract


@njit(inline="always")
def _work_item(job, n_blocks, n_neurons):
    """Batch index and neuron range ``[start, stop)`` of parallel work item ``job``."""
    start = (job % n_blocks) * BLOCK
    return job // n_blocks, start, min(start + BLOCK, n_neurons)


@njit(parallel=True, cache=True)
def iaf_forward(x, v, out, u_saved, save, w_last, thr, inv_thr, subtract, low, sat_lo, sat_hi, reset, negative):
    """Run all T steps; write spike counts to ``out``, the last step's ``w`` to ``w_last`` and,
    if ``save``, the clipped pre-clamp membrane ``u`` to ``u_saved`` (else it may be a dummy)
    for the backward pass."""
    thr_hi, thr_lo = split_threshold(thr)
    n_batch, n_steps, n_neurons = x.shape
    n_blocks = (n_neurons + BLOCK - 1) // BLOCK
    for job in prange(n_batch * n_blocks):
        b, start, stop = _work_item(job, n_blocks, n_neurons)
        v_block = v[b, start:stop]
        for t in range(n_steps):
            u_row = u_saved[b, t, start:stop] if save else u_saved[0, 0, :0]
            _forward_row(x[b, t, start:stop], v_block, out[b, t, start:stop], u_row, save,
                         w_last[b, start:stop], t == n_steps - 1, inv_thr, thr_hi, thr_lo, subtract, low,
                         sat_lo, sat_hi, reset, negative)


@njit(inline="always")
def _backward_row(grad_out, u_saved, spikes, g_next, grad_x, thr, subtract, low, reset, negative,
                  code, width, height):
    """One reverse time step for a run of neurons; ``g_next`` is the gradient that reached the
    membrane input at the following step (zeros after the last step)."""
    for i in range(grad_out.shape[0]):
        u = u_saved[i]
        w = max(u, low)
        s = spikes[i]
        ds = surrogate(abs(w) if negative else w, thr, code, width, height)
        if reset:  # v' = w * (1 - s), the mask a constant: no gradient through s into v'
            carry = 1 - s
        else:  # v' = w - subtract * s: dv'/dw = 1 - subtract * ds, in [-1, 1] for subtract <= 2 thr
            carry = min(max(1 - subtract * ds, -1.0), 1.0)
        g_w = g_next[i] * carry + grad_out[i] * ds
        grad_x[i] = g_w if u > low else g_w - g_w


@njit(parallel=True, cache=True)
def iaf_backward(grad_out, u_saved, spikes, grad_x, thr, subtract, low, reset, negative, code, width, height):
    """Backpropagate through all T steps in one reverse loop into ``grad_x``.

    With ``v' = w - subtract * s`` (or ``w * (1 - s)`` for reset), ``s = f(w)`` with the
    surrogate ``f'``, ``w = max(u, low)`` and ``u = v + x``: the gradient reaching ``u`` at
    step t is the gradient of x[t] and of the membrane carried out of step t-1. Three choices
    keep it as sinabs v0.2 computes it and bounded over long sequences:

    - reset: the mask ``1 - s`` is a constant (the term ``-w * f'(w)`` would multiply the
      gradient by about ``-thr`` per step and explode for thresholds above 1);
    - ``w = max(u, low)`` passes the gradient only where ``u > low`` (none at ``u == low``);
    - subtract: ``dv'/dw = 1 - subtract * f'(w)`` is clipped to [-1, 1]. Since ``f' <= 1/thr``
      the clip acts only for ``subtract > 2 * thr``, where the factor would grow geometrically.

    So ``|grad_x[t]| <= sum over t' >= t of |grad_out[t']| * max f'``: linear in T, never
    exponential.
    """
    n_batch, n_steps, n_neurons = grad_out.shape
    n_blocks = (n_neurons + BLOCK - 1) // BLOCK
    for job in prange(n_batch * n_blocks):
        b, start, stop = _work_item(job, n_blocks, n_neurons)
        g_next = np.zeros(stop - start, grad_x.dtype)
        for t in range(n_steps - 1, -1, -1):
            if t + 1 < n_steps:
                g_next = grad_x[b, t + 1, start:stop]
            _backward_row(grad_out[b, t, start:stop], u_saved[b, t, start:stop], spikes[b, t, start:stop],
                          g_next, grad_x[b, t, start:stop], thr, subtract, low, reset, negative,
                          code, width, height)


@njit(cache=True)
def surrogate_array(w, thr, code, width, height):
    """The surrogate derivative elementwise over a 1-D array ``w``."""
    out = np.empty_like(w)
    for i in range(w.size):
        out[i] = surrogate(w[i], thr, code, width, height)
    return out


def forward(x, state, out, k, save, membrane):
    """The compiled forward pass behind the common interface of ``_iaf_torch.forward``: CPU,
    contiguous, float32/float64 tensors, ``k`` an ``_iaf_torch.Scalars``."""
    scalar = x.numpy().dtype.type
    u_saved = np.empty(x.shape, x.numpy().dtype) if save else np.empty((1, 1, 1), x.numpy().dtype)
    iaf_forward(x.numpy(), state.numpy(), out.numpy(), u_saved, save, membrane.numpy(), scalar(k.thr),
                scalar(k.inv_thr), scalar(k.subtract), scalar(k.low), scalar(k.sat_lo), scalar(k.sat_hi),
                k.reset, k.negative)
    return torch.from_numpy(u_saved) if save else None


def backward(grad_out, u_saved, spikes, k):
    """The compiled backward pass behind the interface of ``_iaf_torch.backward``."""
    scalar = u_saved.numpy().dtype.type
    grad_out = grad_out.to(u_saved.dtype).contiguous()
    grad_x = torch.empty_like(u_saved)
    iaf_backward(grad_out.numpy(), u_saved.numpy(), spikes.numpy(), grad_x.numpy(), scalar(k.thr),
                 scalar(k.subtract), scalar(k.low), k.reset, k.negative, k.shape, scalar(k.width),
                 scalar(k.height))
    return grad_x
