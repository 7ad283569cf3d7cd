"""The per-layer limits of ``docs/chip-model.md``, checked all at once.

Each rule that fails yields a :class:`Violation` with the layer name, the rule, the value and
a concrete fix. :func:`check_core` works on anything shaped like a core layer (``weights``
with ``.shape == (f, c, kh, kw)``, ``input_shape``, ``stride``, ``padding``,
``destinations`` with ``.pooling``), so both a legalized model layer and a loaded
``CoreConfig`` are checked by the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from mapper.chips import Limits


@dataclass(frozen=True)
class Violation:
    """One broken rule. ``field`` is the core field it concerns (for config paths)."""

    layer: str
    rule: str
    value: object
    fix: str
    field: str = ""

    def __str__(self) -> str:
        return f"{self.layer}: {self.rule} (got {self.value}); fix: {self.fix}"


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2*padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def check_core(name: str, core, limits: Limits) -> list[Violation]:
    """All per-layer limit violations of one core layer (kernel, stride, padding, channels, map sizes,
    destinations, pooling)."""
    f, c, kh, kw = core.weights.shape
    _, h, w = core.input_shape
    out: list[Violation] = []

    def bad(rule, value, fix, field):
        out.append(Violation(name, rule, value, fix, field))

    if kh != kw:
        bad("kernel must be square", f"{kh}x{kw}",
            f"use a {max(kh, kw)}x{max(kh, kw)} kernel (pad the weights with zeros)", "weights")
    if max(kh, kw) > limits.max_kernel_size:
        bad(f"kernel size must be <= {limits.max_kernel_size}", f"{kh}x{kw}",
            f"use a kernel <= {limits.max_kernel_size}, or add pooling before this layer to "
            "shrink its input map", "weights")
    for axis, s in zip("yx", core.stride):
        if s not in limits.strides:
            near = min(limits.strides, key=lambda v: (abs(v - s), v))
            bad(f"stride must be one of {limits.strides}", f"{s} ({axis})",
                f"use stride {near}" + (" or add 2x2 pooling before this layer" if s > 1 else ""),
                "stride")
    for axis, p in zip("yx", core.padding):
        if not 0 <= p <= limits.max_padding:
            bad(f"padding must be 0..{limits.max_padding}", f"{p} ({axis})",
                f"use padding <= {limits.max_padding} (a smaller kernel needs less)", "padding")
    if f > limits.max_channels:
        bad(f"at most {limits.max_channels} output channels", f,
            f"reduce out_channels to <= {limits.max_channels}", "weights")
    if c > limits.max_channels:
        bad(f"at most {limits.max_channels} input channels", c,
            f"reduce the channels feeding this layer to <= {limits.max_channels}", "input_shape")
    mh, mw = limits.max_input_size
    if h > mh or w > mw:
        bad(f"input map must be <= {mh}x{mw}", f"{h}x{w}",
            "add pooling (or a stride) before this layer, or crop the input", "input_shape")
    ho = conv_output_size(h, kh, core.stride[0], core.padding[0])
    wo = conv_output_size(w, kw, core.stride[1], core.padding[1])
    oh, ow = limits.max_output_size
    if ho > oh or wo > ow:
        need = max(-(-ho // oh), -(-wo // ow))
        stride = next((st for st in limits.strides
                       if conv_output_size(h, kh, st, core.padding[0]) <= oh
                       and conv_output_size(w, kw, st, core.padding[1]) <= ow), limits.strides[-1])
        bad(f"output map must be <= {oh}x{ow} before pooling", f"{ho}x{wo}",
            f"use stride {stride} or add {need}x{need} pooling before this layer", "weights")
    if ho < 1 or wo < 1:
        bad("kernel must fit the input map", f"kernel {kh}x{kw} on {h}x{w}",
            "use a smaller kernel or more padding", "weights")
    dests = core.destinations
    if len(dests) > limits.max_destinations:
        bad(f"at most {limits.max_destinations} destinations", len(dests),
            "send this layer's output to fewer layers (chain them instead)", "destinations")
    for i, d in enumerate(dests):
        if d.pooling not in limits.poolings:
            bad(f"pooling must be one of {limits.poolings}", d.pooling,
                f"use pooling {max(p for p in limits.poolings if p <= max(d.pooling, 1))} "
                "(chain two poolings of the allowed sizes, or add a stride)",
                f"destinations[{i}].pooling")
    return out
