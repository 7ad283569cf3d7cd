"""Hybrid layers that turn analogue data into spike trains: images by Poisson rate coding,
signals by per-sample Bernoulli spikes. Both are seedable (``seed``) for repeatable runs: the
random stream is drawn on the CPU, so a seed gives the same spikes on every device. Any device
and floating dtype (float16/bfloat16 probabilities are compared in float32)."""

from __future__ import annotations

import torch

from snnlib.functional import InputShapeError, InvalidParameterError, int_tuple


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidParameterError(f"{name}={value!r}: expected a positive number")


def _draws(generator: torch.Generator, shape: tuple, like: torch.Tensor) -> torch.Tensor:
    """Uniform draws in [0, 1) from the CPU ``generator`` (so a seed gives the same spikes on
    every device), in ``like``'s dtype (float32 for float16/bfloat16) on its device."""
    dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
    return torch.rand(shape, generator=generator, dtype=dtype).to(like.device)


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


class Img2SpikeLayer(torch.nn.Module):
    """Rate-code an image into ``tw`` time steps of 1 ms.

    A pixel of value ``norm`` fires at ``max_rate`` Hz, i.e. with probability
    ``|pixel| / norm * max_rate / 1000`` per step (at most 1). Output ``(tw, *image.shape)``
    of 0/1 spikes, or -1 for negative pixels with ``negative_spikes`` (else they are silent).
    image_shape: the image shape expected, kept as an attribute; as in sinabs v0.2 an image of
    any shape is encoded. squeeze: remove singleton axes of the input first (e.g. a
    ``(1, C, H, W)`` batch of one). seed: the random stream's seed (None: random).
    """

    def __init__(self, image_shape, tw: int = 100, max_rate: float = 1000, norm: float = 255.0,
                 squeeze: bool = False, negative_spikes: bool = False, *, layer_name: str = "img2spike",
                 seed: int | None = None):
        super().__init__()
        dims = 1 if isinstance(image_shape, int) else len(image_shape)
        self.image_shape = int_tuple("image_shape", image_shape, dims, 1)
        self.tw = int_tuple("tw", tw, 1, 1)[0]
        _positive("max_rate", max_rate)
        _positive("norm", norm)
        self.max_rate, self.norm = max_rate, norm
        self.squeeze, self.negative_spikes, self.layer_name = squeeze, negative_spikes, layer_name
        self.generator = _generator(seed)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.squeeze:
            image = image.squeeze()
        image = image.to(torch.get_default_dtype()) if not image.is_floating_point() else image
        rate = (image.abs() / self.norm * (self.max_rate / 1000.0)).clamp(max=1.0)
        draws = _draws(self.generator, (self.tw, *image.shape), image)
        spikes = (draws < rate.to(draws.dtype)).to(image.dtype)
        return spikes * torch.sign(image) if self.negative_spikes else spikes * (image > 0)


class Sig2SpikeLayer(torch.nn.Module):
    """Turn an analogue signal ``(channels_in, T)`` into ``(T * tw, channels_in)`` spikes, as
    sinabs v0.2 (note the transpose).

    Each sample is repeated for ``tw`` steps; with ``spk_out`` each step spikes with probability
    ``sample / norm_level`` (clipped to [0, 1]), else the up-sampled signal is returned as it
    is (unscaled, as in sinabs v0.2). seed: the random stream's seed (None: random).
    """

    def __init__(self, channels_in, tw: int = 1, norm_level: float = 1, spk_out: bool = True, *,
                 layer_name: str = "sig2spike", seed: int | None = None):
        super().__init__()
        self.channels_in = int_tuple("channels_in", channels_in, 1, 1)[0]
        self.tw = int_tuple("tw", tw, 1, 1)[0]
        _positive("norm_level", norm_level)
        self.norm_level, self.spk_out, self.layer_name = norm_level, spk_out, layer_name
        self.generator = _generator(seed)

    def get_output_shape(self, input_shape: tuple) -> tuple:
        """(T * tw, channels) for a signal of ``input_shape`` (channels, T)."""
        channels, steps = int_tuple("input_shape", input_shape, 2, 1)
        return steps * self.tw, channels

    def forward(self, signal: torch.Tensor) -> torch.Tensor:
        if signal.ndim != 2 or signal.shape[0] != self.channels_in:
            hint = " (a (T, channels) signal: transpose it)" if signal.ndim == 2 and signal.shape[1] == self.channels_in else ""
            raise InputShapeError(
                f"{self.layer_name} signal: got shape {tuple(signal.shape)}; expected ({self.channels_in}, T){hint}"
            )
        signal = signal.to(torch.get_default_dtype()) if not signal.is_floating_point() else signal
        upsampled = torch.repeat_interleave(signal.t(), self.tw, dim=0)
        if not self.spk_out:
            return upsampled
        draws = _draws(self.generator, tuple(upsampled.shape), upsampled)
        return (draws < (upsampled / self.norm_level).clamp(0.0, 1.0).to(draws.dtype)).to(upsampled.dtype)
