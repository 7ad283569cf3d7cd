"""Memory needs of one core layer, with the formulas of ``docs/chip-model.md``, "Memory formulas" (in words)."""

from __future__ import annotations

from dataclasses import dataclass

from mapper.chips import CoreSpec


def ceil_log2(n: int) -> int:
    """Smallest e with 2**e >= n (n >= 1)."""
    return (int(n) - 1).bit_length()


def kernel_words(weight_shape: tuple[int, int, int, int]) -> int:
    """``c * 2**(ceil(log2(kh*kw)) + ceil(log2(f)))`` for weights ``(f, c, kh, kw)``."""
    f, c, kh, kw = weight_shape
    return c * 2 ** (ceil_log2(kh * kw) + ceil_log2(f))


def neuron_words(output_shape: tuple[int, int, int]) -> int:
    """``f * 2**(ceil(log2(H)) + ceil(log2(W)))`` for the conv output ``(f, H, W)`` (before pooling)."""
    f, h, w = output_shape
    return f * 2 ** (ceil_log2(h) + ceil_log2(w))


@dataclass(frozen=True)
class MemoryNeed:
    """Words of kernel, neuron and bias memory that one core layer needs."""

    kernel: int
    neuron: int
    bias: int

    @classmethod
    def of(cls, weight_shape, output_shape, has_bias: bool) -> "MemoryNeed":
        return cls(kernel_words(weight_shape), neuron_words(output_shape),
                   weight_shape[0] if has_bias else 0)

    def fits(self, core: CoreSpec) -> bool:
        return (self.kernel <= core.kernel_words and self.neuron <= core.neuron_words
                and self.bias <= core.bias_words)


def max_out_channels(weight_shape, output_shape, has_bias: bool, core: CoreSpec) -> int:
    """Largest output-channel count with which a layer of this shape fits ``core`` (0: none)."""
    _, c, kh, kw = weight_shape
    _, h, w = output_shape
    by_kernel = core.kernel_words // (c * 2 ** ceil_log2(kh * kw))
    f_kernel = 2 ** (by_kernel.bit_length() - 1) if by_kernel else 0
    f_neuron = core.neuron_words // 2 ** (ceil_log2(h) + ceil_log2(w))
    f_bias = core.bias_words if has_bias else f_neuron
    return min(f_kernel, f_neuron, f_bias)
