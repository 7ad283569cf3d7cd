"""The fit report: what legalization changed, every broken rule, the per-core memory table
and the per-layer quantization, as data with a readable ``str``."""

from __future__ import annotations

from dataclasses import dataclass, field

from mapper.checks import Violation
from mapper.chips import CoreSpec
from mapper.memory import MemoryNeed


@dataclass(frozen=True)
class Note:
    """A transformation that changed numbers or dropped something, on model layer ``layer``."""

    layer: str
    action: str

    def __str__(self) -> str:
        return f"{self.layer}: {self.action}"


@dataclass(frozen=True)
class CoreUsage:
    """One row of the memory table: ``layer`` placed on ``core`` with its need vs what it has."""

    core: int
    layer: str
    need: MemoryNeed
    have: CoreSpec

    def __str__(self) -> str:
        cells = [_cell(self.need.kernel, self.have.kernel_words),
                 _cell(self.need.neuron, self.have.neuron_words),
                 _cell(self.need.bias, self.have.bias_words)]
        return f"{self.core:>4}  {self.layer:<20} " + "  ".join(f"{c:>24}" for c in cells)


def _cell(need: int, have: int) -> str:
    pct = 100.0 * need / have if have else (0.0 if need == 0 else float("inf"))
    return f"{need}/{have} ({pct:.1f}%)"


@dataclass(frozen=True)
class QuantRow:
    """Quantization of one core layer: ``scale`` (integer = round(value * scale), half to
    even) and the worst-case rounding error in model units (weights, bias, thresholds)."""

    layer: str
    scale: float
    max_error: float

    def __str__(self) -> str:
        return f"{self.layer:<20} scale {self.scale:<12.6g} worst rounding error {self.max_error:.3g}"


@dataclass
class FitReport:
    """Everything the mapper found for one model on one chip."""

    chip: str
    transformations: list[Note] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    memory: list[CoreUsage] = field(default_factory=list)
    quantization: list[QuantRow] = field(default_factory=list)
    #: display name -> the model layers merged into that core (``mapper.names``)
    layers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def __str__(self) -> str:
        parts = []
        if self.violations:
            parts.append("problems:\n" + "\n".join(f"  - {v}" for v in self.violations))
        if self.transformations:
            parts.append("transformations:\n" + "\n".join(f"  - {n}" for n in self.transformations))
        derived = {name: merged for name, merged in self.layers.items() if name not in merged}
        if derived:
            parts.append("layer names:\n" + "\n".join(f"  {name:<20} model layers {', '.join(merged)}"
                                                      for name, merged in derived.items()))
        if self.memory:
            head = f"core  {'layer':<20} " + "  ".join(f"{h:>24}" for h in ("kernel words", "neuron words", "bias words"))
            parts.append("memory (needed/available):\n  " + "\n  ".join([head, *map(str, self.memory)]))
        if self.quantization:
            parts.append("quantization:\n" + "\n".join(f"  {q}" for q in self.quantization))
        return "\n".join(parts) if parts else "empty report"
