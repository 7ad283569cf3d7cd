"""Spiking layers: the integrate-and-fire ``SpikingLayer`` and the auxiliary cropping, spiking
max-pooling and input layers. All are ``torch.nn.Module``s whose inputs are time steps stacked on
the first axis: ``(T, C, H, W)``, or ``(B*T, ...)`` batch-major (row ``b*T + t``) where a
``batch_size`` is given."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from snnlib.functional import (
    HALF_DTYPES,
    IAFParameters,
    InputShapeError,
    InvalidParameterError,
    int_tuple,
    integrate_and_fire,
)


def _chw(input_shape) -> tuple[int, int, int]:
    return int_tuple("input_shape", input_shape, 3, 1)


def _check_image_input(x: torch.Tensor, layer: str) -> None:
    if x.ndim != 4:
        raise InputShapeError(f"{layer} input: got shape {tuple(x.shape)}; expected (T, channels, height, width)")


class SpikingLayer(torch.nn.Module):
    """Integrate-and-fire neurons with multi-spike output and surrogate-gradient learning.

    threshold: spike threshold (> 0): a number, or a tensor / ``nn.Parameter`` (trainable), 0-dim
    or one value per channel (the input's first neuron axis); per-channel thresholds run one pass
    per distinct value, and a tensor's values are read (``.tolist()``) at each call.
    threshold_low: lower bound of the membrane (None: none). membrane_subtract: removed per
    spike (None: the threshold, following it as it is trained; ignored with membrane_reset).
    batch_size: B when the input is ``(B*T, ...)``, batch-major; or num_timesteps: T, so that
    any B passes (the state then follows the batch size). membrane_reset: one spike at
    most per step and the membrane reset to 0. negative_spikes: a linear transfer through
    negative spikes, ``trunc(v / threshold)`` (ignored with membrane_reset; the membrane is still
    clamped at threshold_low, so pass threshold_low=None for a symmetric transfer). layer_name: a name.
    saturate_int16: clip the membrane to the chip's [-32768, 32767] after each input.
    surrogate / surrogate_window: the surrogate gradient shape (functional.SURROGATE_SHAPES) and
    its width in units of threshold (1.0, as in sinabs v0.2).

    Spike counts and gradients follow sinabs v0.2.1 where the seed page is silent (exact floor
    of membrane / threshold; the reset mask a constant in the backward pass; no gradient at
    membrane == threshold_low); docs/seed-compatibility.md lists each case and the exceptions.

    ``state`` and ``activations`` have the shape of one time step (``(B, ...)`` with a batch
    size) and persist across calls until ``reset_states``; an input of another shape starts from
    zeros. As in sinabs v0.2, ``state`` is the membrane after the last step's input and clamp,
    and ``activations`` that step's spikes, which leave the membrane at the start of the next
    call (the spike trains equal subtracting at once: ``[0.4, 0.9]`` leaves state 1.3 and
    activations 1). Inputs on any device, in float32, float64, float16 or bfloat16 (also under
    ``torch.autocast``): ``functional.integrate_and_fire`` says which implementation runs where
    and how exact each dtype is.
    """

    def __init__(self, threshold: float = 1.0, threshold_low: float | None = -1.0,
                 membrane_subtract: float | None = None, batch_size: int | None = None,
                 membrane_reset=False, *, negative_spikes: bool = False, layer_name: str = "spiking",
                 saturate_int16: bool = False, surrogate: str = "step", surrogate_window: float = 1.0,
                 num_timesteps: int | None = None):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("num_timesteps", num_timesteps)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise InvalidParameterError(f"{name}={value!r}: expected None or a positive int")
        if batch_size is not None and num_timesteps is not None:
            raise InvalidParameterError(
                f"batch_size={batch_size} and num_timesteps={num_timesteps}: give one of them "
                "(num_timesteps lets every batch size through)"
            )
        self.threshold = threshold
        self.threshold_low = threshold_low
        self.membrane_subtract = membrane_subtract
        self.membrane_reset = bool(membrane_reset)
        self.negative_spikes = bool(negative_spikes)
        self.batch_size = batch_size
        self.num_timesteps = num_timesteps
        self.layer_name = layer_name
        self.saturate_int16 = bool(saturate_int16)
        self.surrogate = surrogate
        self.surrogate_window = surrogate_window
        for value in self.threshold_values():
            self.neuron_parameters(value)
        self.register_buffer("state", torch.zeros(0), persistent=False)
        self.register_buffer("activations", torch.zeros(0), persistent=False)

    @property
    def membrane_subtract(self):
        """The amount removed per spike: the one given, or the threshold (following it as it is
        trained) when None was given."""
        return self.threshold if self._membrane_subtract is None else self._membrane_subtract

    @membrane_subtract.setter
    def membrane_subtract(self, value) -> None:
        self._membrane_subtract = value

    def threshold_values(self) -> list[float]:
        """The threshold as floats: one, or one per channel for a 1-D tensor of several values."""
        threshold = self.threshold
        if not isinstance(threshold, torch.Tensor):
            return [threshold]
        if threshold.is_complex() or threshold.dtype == torch.bool or threshold.ndim > 1:
            raise InvalidParameterError(
                f"threshold: a {threshold.dtype} tensor of shape {tuple(threshold.shape)}; expected a "
                "number, or a real 0-dim or 1-D (one per channel) tensor"
            )
        return threshold.detach().flatten().tolist()

    def neuron_parameters(self, threshold: float | None = None) -> IAFParameters:
        """The neuron parameters as an ``IAFParameters`` at ``threshold`` (default: the layer's
        threshold, which must then be one value); raises InvalidParameterError if bad."""
        if threshold is None:
            values = self.threshold_values()
            if len(values) != 1:
                raise InvalidParameterError(f"threshold: {len(values)} values (one per channel); pass one of them")
            threshold = values[0]
        return IAFParameters(threshold, self.threshold_low, self._membrane_subtract, self.membrane_reset,
                             self.negative_spikes, self.saturate_int16, self.surrogate, self.surrogate_window)

    def synaptic_output(self, input_spikes: torch.Tensor) -> torch.Tensor:
        """The synaptic current caused by ``input_spikes``; subclasses override it (e.g. with a
        convolution). The default passes the input through."""
        return input_spikes

    def get_output_shape(self, in_shape: tuple) -> tuple:
        """The output shape for input shape ``in_shape``: the same (pass-through)."""
        return tuple(in_shape)

    def reset_states(self, shape=None, randomize: bool = False) -> None:
        """Set ``state`` to zeros, or with ``randomize`` to uniform values in [0, 1) (as sinabs
        v0.2), and ``activations`` to zeros, with the given ``shape`` (default: the current
        state's shape)."""
        if shape is None:
            shape = tuple(self.state.shape)
        else:
            shape = int_tuple("shape", shape, 1 if isinstance(shape, int) else len(shape), 1)
        like = dict(dtype=self.state.dtype, device=self.state.device)
        self.state = torch.rand(shape, **like) if randomize else torch.zeros(shape, **like)
        self.activations = torch.zeros(shape, **like)

    def _batch(self, rows: int) -> int:
        """B of a ``(B*T, ...)`` input of ``rows`` rows (1 without batch_size / num_timesteps)."""
        if self.num_timesteps:
            if rows % self.num_timesteps:
                raise InputShapeError(
                    f"{self.layer_name} input: {rows} rows do not split into num_timesteps={self.num_timesteps}; "
                    "expected (B*T, ...) with rows = batch size * num_timesteps, batch-major"
                )
            return rows // self.num_timesteps
        batch = self.batch_size or 1
        if rows % batch:
            raise InputShapeError(
                f"{self.layer_name} input: {rows} rows do not split into batch_size={batch}; "
                "expected (B*T, ...) with rows = batch_size * time steps, batch-major"
            )
        return batch

    def _groups(self, neuron_shape: tuple, device) -> list[tuple[float, torch.Tensor | None]]:
        """(threshold, indices of its neurons, None for all) for each distinct threshold value."""
        values = self.threshold_values()
        if len(values) == 1:
            return [(values[0], None)]
        if not neuron_shape or neuron_shape[0] != len(values):
            raise InputShapeError(
                f"{self.layer_name} input: neuron shape {neuron_shape}; expected {len(values)} channels on its "
                f"first axis, one per threshold"
            )
        per_channel = math.prod(neuron_shape[1:])
        groups: dict[float, list[int]] = {}
        for channel, value in enumerate(values):
            groups.setdefault(value, []).append(channel)
        if len(groups) == 1:
            return [(values[0], None)]
        offsets = torch.arange(per_channel, device=device)
        return [(value, (torch.tensor(channels, device=device)[:, None] * per_channel + offsets).flatten())
                for value, channels in groups.items()]

    def _threshold_tensor(self, neurons: int, index: torch.Tensor | None, device) -> torch.Tensor | None:
        """The threshold of the neurons ``index`` (all if None), per neuron where it is one per
        channel, for integrate_and_fire to differentiate; None if it needs no gradient."""
        threshold = self.threshold
        if not (isinstance(threshold, torch.Tensor) and threshold.requires_grad and torch.is_grad_enabled()):
            return None
        threshold = threshold.to(device)
        if threshold.numel() == 1:
            return threshold.reshape(())
        per_neuron = threshold.repeat_interleave(neurons // threshold.numel())
        return per_neuron if index is None else per_neuron.index_select(0, index)

    def forward(self, input_spikes: torch.Tensor) -> torch.Tensor:
        """Spike counts, same shape and dtype as the synaptic output of ``input_spikes``
        ``(T, ...)`` or ``(B*T, ...)`` (float64 stays float64; sinabs v0.2 returns float32)."""
        current = self.synaptic_output(input_spikes)
        if current.ndim < 1 or current.shape[0] == 0:
            raise InputShapeError(f"{self.layer_name} input: got shape {tuple(current.shape)}; expected (T, ...) with T >= 1")
        if not current.is_floating_point():
            current = current.to(torch.get_default_dtype())
        rows, neuron_shape = current.shape[0], tuple(current.shape[1:])
        batch = self._batch(rows)
        groups = self._groups(neuron_shape, current.device)
        state_shape = (batch, *neuron_shape) if self.batch_size or self.num_timesteps else neuron_shape
        if tuple(self.state.shape) != state_shape:
            self.state = torch.zeros(state_shape, dtype=current.dtype, device=current.device)
        if self.activations.shape != self.state.shape:
            self.activations = torch.zeros_like(self.state)
        neurons = current[0].numel()
        x = current.reshape(batch, rows // batch, neurons)
        like = dict(device=current.device, dtype=current.dtype)
        state = self.state.to(**like).reshape(batch, neurons)
        pending = self.activations.to(**like).reshape(batch, neurons)
        spikes, last, order = [], [], []
        for value, index in groups:
            params = self.neuron_parameters(value)
            pick = (lambda t: t) if index is None else (lambda t: t.index_select(-1, index))
            w, s = pick(state), pick(pending)
            # the spikes pending from the previous call leave the membrane first (sinabs v0.2's order)
            membrane = torch.where(s != 0, 0.0, w) if params.membrane_reset else w - s * params.subtract
            last.append(torch.empty_like(membrane))
            spikes.append(integrate_and_fire(pick(x).contiguous(), membrane.contiguous(), params, membrane=last[-1],
                                             threshold=self._threshold_tensor(neurons, index, current.device)))
            order.append(index)
        if len(groups) > 1:
            inverse = torch.argsort(torch.cat(order))
            spikes, last = [torch.cat(parts, -1).index_select(-1, inverse) for parts in (spikes, last)]
        else:
            spikes, last = spikes[0], last[0]
        self.state = last.view(state_shape)
        self.activations = spikes.detach()[:, -1].reshape(state_shape).clone()
        return spikes.reshape(current.shape)

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, threshold_low={self.threshold_low}, "
                f"membrane_subtract={self.membrane_subtract}, membrane_reset={self.membrane_reset}, "
                f"batch_size={self.batch_size}, layer_name={self.layer_name!r}")


class Cropping2dLayer(torch.nn.Module):
    """Crop ``(T, C, H, W)`` inputs by ``cropping = ((top, bottom), (left, right))`` pixels."""

    def __init__(self, cropping: Sequence = ((0, 0), (0, 0))):
        super().__init__()
        try:
            (top, bottom), (left, right) = cropping
        except (TypeError, ValueError):
            raise InvalidParameterError(f"cropping={cropping!r}: expected ((top, bottom), (left, right))") from None
        self.top, self.bottom, self.left, self.right = int_tuple("cropping", (top, bottom, left, right), 4, 0)

    def get_output_shape(self, input_shape: tuple) -> tuple:
        """(channels, height, width) after cropping ``input_shape`` (channels, height, width)."""
        c, h, w = _chw(input_shape)
        out = (c, h - self.top - self.bottom, w - self.left - self.right)
        if min(out) < 1:
            raise InputShapeError(f"input_shape={input_shape!r}: cropping {self.top, self.bottom, self.left, self.right} leaves nothing")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_input(x, "Cropping2dLayer")
        _, h, w = self.get_output_shape(tuple(x.shape[1:]))
        return x[:, :, self.top:self.top + h, self.left:self.left + w]


class SpikingMaxPooling2dLayer(torch.nn.Module):
    """Spiking max pooling of ``(T, C, H, W)`` spike counts, as sinabs v0.2: in each window, the
    output at step t is the window's largest input at t if a neuron with the window's highest
    spike count so far (steps 0..t) spikes at t, else 0. With 0/1 spikes: the spikes of the most
    active neurons pass, all of them on a tie. Any device and floating dtype; the counts are kept
    in float32 for float16/bfloat16 inputs (exact to 2**24).

    pool_size: (height, width) or an int. strides: default pool_size. padding: zero padding
    (left, right, top, bottom), as torch.nn.ZeroPad2d. carry_counts: count from the first call
    after ``reset_states`` rather than from each call's first step (False, as sinabs v0.2), so
    that a stream given chunk by chunk is pooled as in one call. The gradient is that of
    ``max_pool2d`` of the input at t where the output passes.
    """

    def __init__(self, pool_size, strides=None, padding=(0, 0, 0, 0), *, carry_counts: bool = False):
        super().__init__()
        self.pool_size = int_tuple("pool_size", pool_size, 2, 1)
        self.strides = self.pool_size if strides is None else int_tuple("strides", strides, 2, 1)
        self.padding = int_tuple("padding", padding, 4, 0)
        self.carry_counts = bool(carry_counts)
        self.register_buffer("state", torch.zeros(0), persistent=False)

    def reset_states(self) -> None:
        """Forget the spike counts carried so far (with ``carry_counts``)."""
        self.state = torch.zeros(0)

    def get_output_shape(self, input_shape: tuple) -> tuple:
        """(channels, height_out, width_out) for ``input_shape`` (channels, height, width)."""
        c, h, w = _chw(input_shape)
        left, right, top, bottom = self.padding
        out_h = (h + top + bottom - self.pool_size[0]) // self.strides[0] + 1
        out_w = (w + left + right - self.pool_size[1]) // self.strides[1] + 1
        if out_h < 1 or out_w < 1:
            raise InputShapeError(f"input_shape={input_shape!r}: smaller than pool_size={self.pool_size} after padding")
        return c, out_h, out_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image_input(x, "SpikingMaxPooling2dLayer")
        self.get_output_shape(tuple(x.shape[1:]))
        padded = F.pad(x, self.padding)
        count_dtype = torch.float32 if x.dtype in HALF_DTYPES else x.dtype  # exact counts past 256
        counts = torch.cumsum(padded.detach(), dim=0, dtype=count_dtype)
        if self.carry_counts:
            if self.state.shape != padded.shape[1:] or self.state.device != x.device:
                self.state = torch.zeros(padded.shape[1:], dtype=count_dtype, device=x.device)
            counts = counts + self.state.to(count_dtype)
            self.state = counts[-1].clone()
        highest = F.max_pool2d(counts, self.pool_size, self.strides)
        highest_spiking = F.max_pool2d(counts * (padded.detach() > 0), self.pool_size, self.strides)
        return F.max_pool2d(padded, self.pool_size, self.strides) * (highest_spiking >= highest)


class InputLayer(torch.nn.Module):
    """Pass-through marking the network input of shape ``input_shape`` (channels, height, width);
    checks that inputs ``(T, *input_shape)`` have it."""

    def __init__(self, input_shape, layer_name: str = "input"):
        super().__init__()
        self.input_shape = _chw(input_shape)
        self.layer_name = layer_name

    def get_output_shape(self, input_shape: tuple) -> tuple:
        """(channels, height, width): the layer's ``input_shape``, whatever is passed (as sinabs
        v0.2: the input layer defines the network's shape)."""
        return self.input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputShapeError(
                f"{self.layer_name} input: got shape {tuple(x.shape)}; expected (T, {', '.join(map(str, self.input_shape))})"
            )
        return x
