"""Differentiable spiking functions: quantization, thresholding, surrogate-gradient shapes and
the whole-sequence integrate-and-fire operator, plus the errors that snnlib raises for bad
parameters and bad inputs.

Surrogate gradients (d spikes / d membrane ``v``, for threshold ``thr`` and width ``wd``):

- ``"step"`` (the seed's): ``h`` where ``v >= thr - wd``, else 0;
- ``"box"``: ``h`` where ``|v - thr| <= wd``;
- ``"triangle"``: ``h * max(0, 1 - |v - thr| / wd)``;
- ``"fast_sigmoid"``: ``h / (1 + |v - thr| / wd)**2``;
- ``"gaussian"``: ``h * exp(-(v - thr)**2 / (2 wd**2))``;

with height ``h = 1 / thr`` for multi-spike (subtract) neurons, whose spike count grows by one
per ``thr`` of membrane, and ``h = 1`` for single-spike (reset) neurons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from snnlib import _iaf_kernels as kernels
from snnlib import _iaf_torch, _iaf_triton
from snnlib.errors import SpikeflashError

SURROGATE_SHAPES = ("step", "box", "triangle", "fast_sigmoid", "gaussian")


class InvalidParameterError(SpikeflashError, ValueError):
    """A layer or function argument has a value outside its allowed range or form.

    Example scenarios:
      - ``SpikingLayer(threshold=0)``, or ``batch_size=0``
      - a cropping that is not ``((top, bottom), (left, right))``
    """


class TensorTypeError(SpikeflashError, TypeError):
    """A tensor is on a device or of a dtype that the operation does not take, or differs in
    device or dtype from a tensor it must match.

    Example scenarios:
      - an int64 or complex tensor given to ``integrate_and_fire``
      - the membrane ``state`` on the CPU while the input is on a GPU
    """


class InputShapeError(SpikeflashError, ValueError):
    """A tensor given to a layer has the wrong shape or dtype for it.

    Example scenarios:
      - a tensor without the time axis given to a layer that expects ``(T, ...)``
      - a cropping or pooling that leaves nothing of the input
    """


def _check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise InvalidParameterError(f"{name}={value!r}: expected a positive number")
    return float(value)


def int_tuple(name: str, value, length: int, minimum: int) -> tuple[int, ...]:
    """``value`` (an int or a sequence) as a tuple of ``length`` ints >= ``minimum``."""
    items = (value,) * length if isinstance(value, (int, np.integer)) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if len(items) != length or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in items
    ):
        raise InvalidParameterError(f"{name}={value!r}: expected an int or {length} ints, each >= {minimum}")
    return tuple(int(v) for v in items)


def _surrogate_derivative(v: torch.Tensor, threshold: float, shape: str, width: float, height: float) -> torch.Tensor:
    """The surrogate at ``v`` computed in float64 (float32 on MPS), returned in ``v``'s dtype."""
    if v.device.type != "cpu":
        compute = _iaf_torch.compute_dtype(v.device)
        return _iaf_torch.surrogate(v.detach().to(compute), threshold, SURROGATE_SHAPES.index(shape), width, height,
                                    compute).to(v.dtype)
    flat = v.detach().to(torch.float64).contiguous().numpy().ravel()
    out = kernels.surrogate_array(flat, float(threshold), SURROGATE_SHAPES.index(shape), float(width), float(height))
    return torch.from_numpy(out).to(v.dtype).reshape(v.shape)


def surrogate_gradient(v: torch.Tensor, threshold: float = 1.0, shape: str = "step", window: float = 0.5,
                       height: float = 1.0) -> torch.Tensor:
    """The surrogate derivative of ``shape`` (one of SURROGATE_SHAPES, see the module docstring)
    at membrane values ``v`` (any shape), with width ``window`` and peak ``height``."""
    if shape not in SURROGATE_SHAPES:
        raise InvalidParameterError(f"shape={shape!r}: expected one of {SURROGATE_SHAPES}")
    _check_positive("threshold", threshold)
    _check_positive("window", window)
    return _surrogate_derivative(v, threshold, shape, window, height)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, rounding):
        return rounding(x)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _round_stochastically(x: torch.Tensor) -> torch.Tensor:
    low = torch.floor(x)
    return low + (torch.rand_like(x) < (x - low)).to(x.dtype)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)``, with the gradient of the identity (straight-through) in the backward pass."""
    return _StraightThrough.apply(x, torch.floor)


def stochastic_rounding(x: torch.Tensor) -> torch.Tensor:
    """``ceil(x)`` with probability ``x - floor(x)``, else ``floor(x)`` (unbiased: the mean is x);
    the gradient of the identity in the backward pass. Uses torch's global RNG."""
    return _StraightThrough.apply(x, _round_stochastically)


def round_nearest(x: torch.Tensor) -> torch.Tensor:
    """``torch.round(x)`` (to the nearest integer, halves to even), with the gradient of the
    identity in the backward pass."""
    return _StraightThrough.apply(x, torch.round)


class _Threshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, data, threshold, window, reset):
        ctx.save_for_backward(data)
        ctx.params = (threshold, window, 1.0 if reset else 1.0 / threshold)
        if reset:
            return (data >= threshold).to(data.dtype)
        return (data >= threshold) * torch.div(data, threshold, rounding_mode="floor")

    @staticmethod
    def backward(ctx, grad):
        (data,) = ctx.saved_tensors
        threshold, window, height = ctx.params
        return grad * _surrogate_derivative(data, threshold, "step", window, height), None, None, None


def threshold_subtract(data: torch.Tensor, threshold: float = 1, window: float = 0.5) -> torch.Tensor:
    """Number of spikes a "threshold subtracting" neuron emits at membrane ``data``: the exact
    integer division ``floor(data / threshold)`` where ``data >= threshold``, else 0.

    Backward: the gradient is passed through, divided by ``threshold``, where the membrane is
    at least ``threshold - window``, and is zero below. (The seed page states the opposite,
    which would stop learning wherever a neuron is active; this is the working convention.)
    """
    return _Threshold.apply(data, _check_positive("threshold", threshold), _check_positive("window", window), False)


def threshold_reset(data: torch.Tensor, threshold: float = 1, window: float = 0.5) -> torch.Tensor:
    """As ``threshold_subtract`` for a neuron that resets to 0: at most one spike, 1 where
    ``data >= threshold``. Backward: the gradient passes (undivided) where the membrane is at
    least ``threshold - window``, zero below."""
    return _Threshold.apply(data, _check_positive("threshold", threshold), _check_positive("window", window), True)


@dataclass(frozen=True)
class IAFParameters:
    """Integrate-and-fire neuron parameters, validated on construction.

    threshold: spike threshold (> 0). threshold_low: lower bound of the membrane, None for
    none (< threshold). membrane_subtract: subtracted per spike, None = threshold (> 0).
    membrane_reset: at most one spike per step and reset to 0. negative_spikes: also emit
    ``trunc(v / threshold)`` negative spikes below -threshold (ignored with membrane_reset).
    saturate_int16: clip the membrane to [-32768, 32767] after each input, as the chip does.
    surrogate: one of SURROGATE_SHAPES; surrogate_window: its width in units of threshold
    (1.0, as sinabs v0.2's layer: the "step" gradient starts at membrane 0).
    """

    threshold: float = 1.0
    threshold_low: float | None = -1.0
    membrane_subtract: float | None = None
    membrane_reset: bool = False
    negative_spikes: bool = False
    saturate_int16: bool = False
    surrogate: str = "step"
    surrogate_window: float = 1.0

    def __post_init__(self):
        _check_positive("threshold", self.threshold)
        if self.threshold_low is not None and not (
            isinstance(self.threshold_low, (int, float)) and self.threshold_low < self.threshold
        ):
            raise InvalidParameterError(
                f"threshold_low={self.threshold_low!r}: expected None or a number below "
                f"threshold={self.threshold!r} (the chip's datasheet recommends -1)"
            )
        if self.membrane_subtract is not None:
            _check_positive("membrane_subtract", self.membrane_subtract)
        if self.surrogate not in SURROGATE_SHAPES:
            raise InvalidParameterError(f"surrogate={self.surrogate!r}: expected one of {SURROGATE_SHAPES}")
        _check_positive("surrogate_window", self.surrogate_window)

    @property
    def subtract(self) -> float:
        """The resolved amount subtracted per spike."""
        return self.threshold if self.membrane_subtract is None else float(self.membrane_subtract)


HALF_DTYPES = (torch.float16, torch.bfloat16)  # computed in float32, returned in their dtype


def implementation(device: torch.device):
    """The integrate-and-fire implementation for tensors on ``device``: the compiled kernels
    (``_iaf_kernels``) on the CPU, the fused Triton kernels (``_iaf_triton``) on CUDA/ROCm where
    triton is installed, plain torch operations (``_iaf_torch``) on every other device. Each has
    ``forward(x, state, out, scalars, save, membrane)`` and ``backward(grad_out, u_saved, spikes, scalars)``."""
    if device.type == "cpu":
        return kernels
    if device.type == "cuda" and _iaf_triton.available():
        return _iaf_triton
    return _iaf_torch


class _IntegrateAndFire(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, threshold, p: IAFParameters, buffers):
        state, out, membrane = buffers  # a tuple: autograd does not track the in-place updated buffers
        impl, k = implementation(x.device), _iaf_torch.scalars(p, x.dtype, SURROGATE_SHAPES)
        save = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        u_saved = impl.forward(x.detach(), state, out, k, save, membrane)
        if save:
            ctx.save_for_backward(u_saved, out)
            ctx.impl, ctx.scalars, ctx.tied = impl, k, p.membrane_subtract is None
            ctx.threshold_like = None if threshold is None else (threshold.shape, threshold.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_saved, spikes = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = ctx.impl.backward(grad_out, u_saved, spikes, ctx.scalars)
        grad_threshold = None
        if ctx.needs_input_grad[1]:
            per_neuron = _iaf_torch.threshold_gradient(grad_out, u_saved, spikes, grad_x, ctx.scalars, ctx.tied)
            shape, dtype = ctx.threshold_like
            grad_threshold = (per_neuron if len(shape) else per_neuron.sum()).to(dtype)
        return grad_x, grad_threshold, None, None


def _check_tensor(name: str, tensor: torch.Tensor, dtype: torch.dtype, device: torch.device, shape: tuple) -> None:
    if tensor.device != device:
        raise TensorTypeError(f"{name}: on device {tensor.device}; expected device {device}, the device of x")
    if tensor.dtype != dtype:
        raise TensorTypeError(f"{name}: dtype {tensor.dtype}; expected dtype {dtype}, the dtype of x")
    if tuple(tensor.shape) != shape or not tensor.is_contiguous():
        raise InputShapeError(f"{name}: got shape {tuple(tensor.shape)}; expected a contiguous {shape} tensor")


def _check_threshold(threshold, value: float, device: torch.device, neurons: int) -> None:
    if not isinstance(threshold, torch.Tensor) or not threshold.is_floating_point():
        raise TensorTypeError(f"threshold: {type(threshold).__name__} {getattr(threshold, 'dtype', '')}; "
                              "expected a floating-point tensor")
    if threshold.device != device:
        raise TensorTypeError(f"threshold: on device {threshold.device}; expected device {device}, the device of x")
    if tuple(threshold.shape) not in ((), (neurons,)):
        raise InputShapeError(f"threshold: got shape {tuple(threshold.shape)}; expected () or ({neurons},)")
    if threshold.device.type != "meta" and not bool((threshold.detach() == value).all()):
        raise InvalidParameterError(f"threshold: holds values other than params.threshold={value!r}")


def integrate_and_fire(x: torch.Tensor, state: torch.Tensor, params: IAFParameters = IAFParameters(),
                       out: torch.Tensor | None = None, membrane: torch.Tensor | None = None,
                       threshold: torch.Tensor | None = None) -> torch.Tensor:
    """Integrate-and-fire over a whole sequence in one pass; differentiable in ``x`` and, if
    given, in ``threshold``.

    x: input current ``(B, T, N)`` (batch, time step, neuron), on any device, of dtype float32,
    float64, float16 or bfloat16. state: membrane ``(B, N)``, same device and dtype; updated in
    place to the state after step T-1. out: optional ``(B, T, N)`` buffer to reuse for the
    result, for inference only (x must not require grad: a reused buffer would overwrite what
    the backward pass needs). membrane: optional ``(B, N)`` buffer like ``state``; receives the
    last step's membrane after its input and clamp, before its spikes leave (what sinabs v0.2's
    layer reports as its state; unspecified for T = 0). threshold: optional tensor, 0-dim or
    ``(N,)`` (one per neuron), each value equal to ``params.threshold``, through which the
    spikes are differentiated with respect to the threshold (trainable thresholds; see
    ``_iaf_torch.threshold_gradient``). Returns the spike counts ``(B, T, N)``.

    Per step: ``v += x[t]`` (clipped to int16 if ``params.saturate_int16``),
    ``v = max(v, threshold_low)``, then the spikes ``floor(v / threshold)`` leave and
    ``membrane_subtract`` is removed per spike (or one spike and ``v = 0`` with
    ``membrane_reset``). The count is the floor of the exact quotient, as ``threshold_subtract``
    gives it: a membrane of exactly k x threshold emits k spikes, float32 1.0 at threshold 0.1
    emits 9.

    Implementations (``implementation``): compiled loops on the CPU, a fused Triton kernel on
    CUDA, torch operations elsewhere (MPS, meta); all compute the same operations in the same
    order, so their results are equal bit for bit (the gaussian surrogate's ``exp`` to rounding;
    the torch operations on MPS compute the backward pass in float32, to rounding).

    Exactness: float32/float64 run in their dtype; integer inputs and parameters give exact
    integers while |membrane| < 2**24 in float32 (2**53 in float64); saturate_int16 keeps it
    there. float16/bfloat16 run in float32 and round the results to their dtype: spike counts
    are exact integers up to 2048 (float16) and 256 (bfloat16) per step, the membrane carried in
    ``state`` between calls is rounded to the dtype (exact for integers up to those bounds), and
    the gradient is the float32 one rounded.

    Backward (``_iaf_kernels.iaf_backward``): the reset mask is a constant, no gradient passes
    where the membrane is at or below ``threshold_low``, and the gradient stays bounded by the
    sum of the later incoming gradients times the surrogate's peak, for any T and threshold.
    """
    if not isinstance(params, IAFParameters):
        raise InvalidParameterError(f"params={params!r}: expected an IAFParameters")
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.float32, torch.float64, *HALF_DTYPES):
        raise TensorTypeError(
            f"x: dtype {getattr(x, 'dtype', type(x).__name__)}; expected a tensor of dtype float32, "
            "float64, float16 or bfloat16 (convert with x.float())"
        )
    if x.ndim != 3:
        raise InputShapeError(f"x: got shape {tuple(x.shape)}; expected a (B, T, N) tensor")
    batch, _, neurons = x.shape
    _check_tensor("state", state, x.dtype, x.device, (batch, neurons))
    if out is not None:
        _check_tensor("out", out, x.dtype, x.device, tuple(x.shape))
        if out.requires_grad:
            raise InputShapeError("out: requires grad; expected a plain buffer")
        if x.requires_grad and torch.is_grad_enabled():
            raise InvalidParameterError("out: given while x requires grad; pass out=None when training")
    if membrane is not None:
        _check_tensor("membrane", membrane, x.dtype, x.device, (batch, neurons))
    if threshold is not None:
        _check_threshold(threshold, params.threshold, x.device, neurons)
    if x.dtype in HALF_DTYPES:
        state32, membrane32 = state.float(), torch.empty_like(state, dtype=torch.float32)
        spikes = integrate_and_fire(x.float(), state32, params, membrane=membrane32, threshold=threshold)
        state.copy_(state32)
        if membrane is not None:
            membrane.copy_(membrane32)
        return spikes.to(x.dtype) if out is None else out.copy_(spikes)
    if out is None:
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if membrane is None:
        membrane = torch.empty_like(state)
    return _IntegrateAndFire.apply(x.contiguous(), threshold, params, (state.detach(), out, membrane.detach()))
