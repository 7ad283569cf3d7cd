"""Fused integrate-and-fire kernels for GPUs (Triton): the whole sequence in one launch each way.

Each program owns ``BLOCK`` neurons of one batch row, keeps their membranes in registers and
walks through the T steps (forward) or back through them (backward): O(T) time, one state per
neuron, no Python per time step. The arithmetic is ``_iaf_torch``'s, operation for operation
(the spike count's exactness check by Dekker's product in the data's dtype, the backward pass in
float64), compiled without fused multiply-adds and with IEEE division, so that the results equal
the CPU kernel's bit for bit. With ``TRITON_INTERPRET=1`` in the environment the kernels run in
Triton's interpreter, on CPU tensors too: that is how the tests check them without a GPU.

Importable without triton (``available()`` is then False); the kernels are built on first use.
"""

from __future__ import annotations

import os

import torch

from snnlib._iaf_torch import Scalars

try:
    import triton
    import triton.language as tl
except ImportError:  # a CPU-only install: the other implementations serve
    triton = tl = None

BLOCK = 256  # neurons per program: one warp group's registers, enough programs for every SM
_const = int if tl is None else tl.constexpr  # kernels read globals only as constexpr
# indices into Scalars.as_tensor(), and the surrogate shapes (_iaf_torch.STEP, ...)
THR, INV_THR, SUBTRACT, LOW, SAT_LO, SAT_HI, THR_HI, THR_LO, SPLIT, WIDTH, HEIGHT = map(_const, range(11))
STEP, BOX, TRIANGLE, FAST_SIGMOID = map(_const, range(4))


def available() -> bool:
    """Whether triton is installed."""
    return triton is not None


def interpreting() -> bool:
    """Whether the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _forward_kernel(x_ptr, v_ptr, out_ptr, u_ptr, m_ptr, k_ptr, n_steps, n_neurons,
                    SAVE: tl.constexpr, RESET: tl.constexpr, NEGATIVE: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_neurons
    row = tl.program_id(1).to(tl.int64)
    thr, inv_thr, subtract = tl.load(k_ptr + THR), tl.load(k_ptr + INV_THR), tl.load(k_ptr + SUBTRACT)
    low, sat_lo, sat_hi = tl.load(k_ptr + LOW), tl.load(k_ptr + SAT_LO), tl.load(k_ptr + SAT_HI)
    thr_hi, thr_lo, split = tl.load(k_ptr + THR_HI), tl.load(k_ptr + THR_LO), tl.load(k_ptr + SPLIT)
    v = tl.load(v_ptr + row * n_neurons + cols, mask=mask, other=0.0)
    zero = v - v
    w = v
    for t in range(n_steps):
        offsets = (row * n_steps + t) * n_neurons + cols
        u = tl.minimum(tl.maximum(v + tl.load(x_ptr + offsets, mask=mask, other=0.0), sat_lo), sat_hi)
        if SAVE:
            tl.store(u_ptr + offsets, u, mask=mask)
        w = tl.maximum(u, low)
        a = tl.abs(w) if NEGATIVE else w
        if RESET:
            s = tl.where(a >= thr, zero + 1.0, zero)
            v = tl.where(s > 0, zero, w)
        else:
            n = tl.floor(a * inv_thr)  # one off at most either way: corrected by exact products
            c = n * split  # above = n * thr > a, by Dekker's product (see _iaf_torch._above)
            n_hi = c - (c - n)
            n_lo = n - n_hi
            p = n * thr
            above = (p - a) + (((n_hi * thr_hi - p) + n_hi * thr_lo + n_lo * thr_hi) + n_lo * thr_lo) > 0
            n = tl.where(above, n - 1.0, n)
            m = n + 1.0  # above = (n + 1) * thr > a
            c = m * split
            m_hi = c - (c - m)
            m_lo = m - m_hi
            p = m * thr
            above = (p - a) + (((m_hi * thr_hi - p) + m_hi * thr_lo + m_lo * thr_hi) + m_lo * thr_lo) > 0
            n = tl.where(above, n, m)
            n = tl.maximum(n, zero)
            s = tl.where(w < 0, -n, n)
            v = w - s * subtract
        tl.store(out_ptr + offsets, s, mask=mask)
    tl.store(v_ptr + row * n_neurons + cols, v, mask=mask)
    tl.store(m_ptr + row * n_neurons + cols, w, mask=mask)


def _backward_kernel(g_ptr, u_ptr, s_ptr, gx_ptr, k_ptr, n_steps, n_neurons,
                     RESET: tl.constexpr, NEGATIVE: tl.constexpr, SHAPE: tl.constexpr, BLOCK: tl.constexpr):
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_neurons
    row = tl.program_id(1).to(tl.int64)
    thr, low, width = tl.load(k_ptr + THR), tl.load(k_ptr + LOW), tl.load(k_ptr + WIDTH)
    height = tl.load(k_ptr + HEIGHT).to(tl.float64)
    subtract = tl.load(k_ptr + SUBTRACT).to(tl.float64)
    g_next = tl.full([BLOCK], 0.0, tl.float64)
    for i in range(n_steps):
        offsets = (row * n_steps + (n_steps - 1 - i)) * n_neurons + cols
        u = tl.load(u_ptr + offsets, mask=mask, other=0.0)
        w = tl.maximum(u, low)
        w = tl.abs(w) if NEGATIVE else w
        if SHAPE == STEP:  # as _iaf_torch.surrogate
            ds = tl.where(w >= thr - width, height, 0.0)
        else:
            if w.dtype == tl.float32:  # float32 "/" may be approximate on GPUs: ask for IEEE
                d = tl.math.fdiv(tl.abs(w - thr), width, ieee_rounding=True)
            else:  # float64 "/" is IEEE
                d = tl.abs(w - thr) / width
            if SHAPE == BOX:
                ds = tl.where(d <= 1.0, height, 0.0)
            elif SHAPE == TRIANGLE:
                ds = height * tl.maximum(1.0 - d.to(tl.float64), 0.0)
            elif SHAPE == FAST_SIGMOID:
                d = 1.0 + d.to(tl.float64)
                ds = height / (d * d)  # float64: IEEE
            else:  # GAUSSIAN
                d = d.to(tl.float64)
                ds = height * tl.exp(-0.5 * d * d)
        if RESET:
            carry = 1.0 - tl.load(s_ptr + offsets, mask=mask, other=0.0).to(tl.float64)
        else:
            carry = tl.minimum(tl.maximum(1.0 - subtract * ds, -1.0), 1.0)
        g_w = g_next * carry + tl.load(g_ptr + offsets, mask=mask, other=0.0).to(tl.float64) * ds
        g_x = tl.where(u > low, g_w, 0.0).to(u.dtype)
        tl.store(gx_ptr + offsets, g_x, mask=mask)
        g_next = g_x.to(tl.float64)


_KERNELS: dict[bool, tuple] = {}


def _kernels() -> tuple:
    """(forward, backward), compiled or interpreted as the environment says, built once each."""
    interpret = interpreting()
    if interpret not in _KERNELS:
        if triton is None:
            from snnlib.errors import MissingDependency

            raise MissingDependency("the GPU kernels need triton: pip install triton (it ships with CUDA torch)")
        if interpret:
            from triton.runtime.interpreter import InterpretedFunction as wrap
        else:
            wrap = triton.JITFunction
        _KERNELS[interpret] = (wrap(_forward_kernel), wrap(_backward_kernel))
    return _KERNELS[interpret]


def _grid(x: torch.Tensor) -> tuple[int, int]:
    return triton.cdiv(x.shape[2], BLOCK), x.shape[0]


def forward(x: torch.Tensor, state: torch.Tensor, out: torch.Tensor, k: Scalars, save: bool,
            membrane: torch.Tensor):
    """As ``_iaf_torch.forward``: contiguous ``x``/``out`` ``(B, T, N)``, ``state``/``membrane`` ``(B, N)``."""
    u_saved = torch.empty_like(x) if save else x
    forward_kernel, _ = _kernels()
    forward_kernel[_grid(x)](x, state, out, u_saved, membrane, k.as_tensor(x.dtype, x.device), x.shape[1], x.shape[2],
                             SAVE=save, RESET=k.reset, NEGATIVE=k.negative, BLOCK=BLOCK,
                             enable_fp_fusion=False)
    return u_saved if save else None


def backward(grad_out: torch.Tensor, u_saved: torch.Tensor, spikes: torch.Tensor, k: Scalars) -> torch.Tensor:
    """As ``_iaf_torch.backward``."""
    grad_out = grad_out.to(u_saved.dtype).contiguous()
    grad_x = torch.empty_like(u_saved)
    _, backward_kernel = _kernels()
    backward_kernel[_grid(u_saved)](grad_out, u_saved, spikes, grad_x, k.as_tensor(u_saved.dtype, u_saved.device),
                                    u_saved.shape[1], u_saved.shape[2], RESET=k.reset, NEGATIVE=k.negative,
                                    SHAPE=k.shape, BLOCK=BLOCK, enable_fp_fusion=False)
    return grad_x

