"""Compiled integrate-and-fire loops over a whole sequence (numba).

Arrays are ``(B, T, N)`` (batch, time step, neuron) and C-contiguous; the membrane ``v`` is
``(B, N)`` and is updated in place. Work is split over (batch, block of neurons) so that each
thread keeps its block of membranes in cache while it walks through time. All parameters are
scalars of the arrays' dtype so that float32 data is computed in float32.

Per step and neuron (the forward pass)::

    u = clip(v + x[t], sat_lo, sat_hi)     # sat_* = +-inf unless saturating to int16
    w = max(u, low)                        # low = -inf when unbounded
    s = spike count of w                   # floor(w / thr), or 1 if w >= thr (reset)
    v = w - s * subtract                   # or 0 where s > 0 (reset)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

BLOCK = 2048  # neurons per work item: 8-16 KiB of membrane, stays in L1/L2

# surrogate-gradient shape codes, in the order of functional.SURROGATE_SHAPES
STEP, BOX, TRIANGLE, FAST_SIGMOID, GAUSSIAN = range(5)


@njit(inline="always")
def spike_count(w, thr, inv_thr, reset, negative):
    """Spikes for membrane ``w``: exact ``floor(w / thr)`` for w >= thr (truncated towards zero
    with ``negative``), 1 for w >= thr with ``reset``, else 0. Branch-free and in the dtype of
    ``w`` so that the loops vectorize."""
    zero = w - w
    one = zero + 1
    if reset:
        return one if w >= thr else zero
    a = abs(w) if negative else w
    n = np.floor(a * inv_thr)
    n = n - one if n * thr > a else n  # the reciprocal product can be one off: make it exact
    n = n + one if (n + one) * thr <= a else n
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
def _forward_row(x, v, out, u_saved, save, thr, inv_thr, subtract, low, sat_lo, sat_hi, reset, negative):
    """One time step for a contiguous run of neurons (1-D arrays, so that LLVM vectorizes)."""
    for i in range(x.shape[0]):
        u = min(max(v[i] + x[i], sat_lo), sat_hi)
        if save:
            u_saved[i] = u
        w = max(u, low)
        s = spike_count(w, thr, inv_thr, reset, negative)
        out[i] = s
        v[i] = (w - w if s > 0 else w) if reset else w - s * subtract


@njit(inline="always")
def _work_item(job, n_blocks, n_neurons):
    """Batch index and neuron range ``[start, stop)`` of parallel work item ``job``."""
    start = (job % n_blocks) * BLOCK
    return job // n_blocks, start, min(start + BLOCK, n_neurons)


@njit(parallel=True, cache=True)
def iaf_forward(x, v, out, u_saved, save, thr, inv_thr, subtract, low, sat_lo, sat_hi, reset, negative):
    """Run all T steps; write spike counts to ``out`` and, if ``save``, the clipped
    pre-clamp membrane ``u`` to ``u_saved`` (else it may be a dummy) for the backward pass."""
    n_batch, n_steps, n_neurons = x.shape
    n_blocks = (n_neurons + BLOCK - 1) // BLOCK
    for job in prange(n_batch * n_blocks):
        b, start, stop = _work_item(job, n_blocks, n_neurons)
        v_block = v[b, start:stop]
        for t in range(n_steps):
            u_row = u_saved[b, t, start:stop] if save else u_saved[0, 0, :0]
            _forward_row(x[b, t, start:stop], v_block, out[b, t, start:stop], u_row, save,
                         thr, inv_thr, subtract, low, sat_lo, sat_hi, reset, negative)


@njit(inline="always")
def _backward_row(grad_out, u_saved, spikes, g_next, grad_x, thr, subtract, low, reset, negative,
                  code, width, height):
    """One reverse time step for a run of neurons; ``g_next`` is the gradient that reached the
    membrane input at the following step (zeros after the last step)."""
    for i in range(grad_out.shape[0]):
        u = u_saved[i]
        w = max(u, low)
        s = spikes[i]
        if reset:
            g_s = grad_out[i] - g_next[i] * w
            g_w = g_next[i] * (1 - s)
        else:
            g_s = grad_out[i] - g_next[i] * subtract
            g_w = g_next[i]
        g_w += g_s * surrogate(abs(w) if negative else w, thr, code, width, height)
        grad_x[i] = g_w if u >= low else g_w - g_w


@njit(parallel=True, cache=True)
def iaf_backward(grad_out, u_saved, spikes, grad_x, thr, subtract, low, reset, negative, code, width, height):
    """Backpropagate through all T steps in one reverse loop into ``grad_x``.

    With ``v' = w - subtract * s`` (or ``w * (1 - s)`` for reset), ``s = f(w)`` with the
    surrogate ``f'``, ``w = max(u, low)`` and ``u = v + x``: the gradient reaching ``u`` at
    step t is the gradient of x[t] and of the membrane carried out of step t-1.
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
