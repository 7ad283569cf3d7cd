"""Models built from ``sinabs.layers`` map unchanged: before extraction, each sinabs layer with a
chip equivalent is replaced (in a copy, under the same name) by the snnlib layer the mapper
reads, with a note saying what became what; sinabs layers without one get a fix naming the
spikeflash equivalent.

sinabs is never imported here (importing it may import samna): its layers are recognised by
their class and module names and read through the attributes sinabs 3.x gives them
(``spike_threshold``, ``min_v_mem``, ``reset_fn``, ``spike_fn``, ``tau_syn``; ``kernel_size`` /
``stride`` of ``SumPool2d``; ``top_crop`` ... of ``Cropping2dLayer``), as sinabs' own
DYNAP-CNN conversion reads them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from snnlib import Cropping2dLayer, SpikingLayer, SumPool2d

from mapper.checks import Violation
from mapper.report import Note

_IAF = ("IAF", "IAFSqueeze")
_RESETS = {"MembraneSubtract": "subtract", "MembraneReset": "zero"}
#: sinabs layer -> what to use instead, for sinabs layers the chip has no equivalent of
NO_EQUIVALENT = {
    **dict.fromkeys(("LIF", "LIFSqueeze", "LIFRecurrent", "ExpLeak", "ExpLeakSqueeze", "ALIF", "ALIFRecurrent"),
                    "the chip's neurons integrate and fire without decay: use sinabs.layers.IAF / IAFSqueeze "
                    "or snnlib.SpikingLayer (a constant leak is a conv bias with slow_clock_period_us)"),
    "IAFRecurrent": "recurrent connections are not supported: use sinabs.layers.IAF or snnlib.SpikingLayer",
    "SpikingMaxPooling2dLayer": "use sinabs.layers.SumPool2d or snnlib.SumPool2d (sum pooling)",
    "NeuromorphicReLU": "train with snnlib.SpikingLayer, or convert the ANN with snnlib.from_torch",
    "Merge": "add the branches with + in forward (a residual sum merges into the next core)",
    "ChannelShift": "concatenate by channel in the next conv's weights (destinations shift features)",
    "Img2SpikeLayer": "encode inputs on the host (snnlib.encoders) and send the events",
    "Sig2SpikeLayer": "encode inputs on the host (snnlib.encoders) and send the events",
    "QuantizeLayer": "remove it: map_model quantizes the whole model",
    "Repeat": "repeat the input on the host before sending it",
}


def is_sinabs(module: nn.Module) -> bool:
    """True for a layer class defined by the sinabs package."""
    return type(module).__module__.split(".")[0] == "sinabs"


def unsupported_fix(module: nn.Module | None) -> str | None:
    """The fix for a sinabs layer without a chip equivalent (None for anything else)."""
    if module is None or not is_sinabs(module):
        return None
    return NO_EQUIVALENT.get(type(module).__name__)


def convert_sinabs(model: nn.Module) -> tuple[nn.Module, list[Note], list[Violation]]:
    """``model`` with its sinabs IAF / IAFSqueeze / SumPool2d / Cropping2dLayer / FlattenTime /
    UnflattenTime layers replaced by their snnlib equivalents (a copy; ``model`` itself when it
    has none), a note per replacement, and the problems that stop a replacement."""
    found = [(name, m) for name, m in model.named_modules() if name and is_sinabs(m)
             and type(m).__name__ not in NO_EQUIVALENT]
    if not found:
        return model, [], []
    model = copy.deepcopy(model)
    notes, problems = [], []
    for name, module in found:
        kind = type(module).__name__
        if kind in _IAF:
            new, text = _iaf(name, module, problems)
        elif kind == "SumPool2d":
            new, text = _sumpool(name, module, problems)
        elif kind == "Cropping2dLayer":
            crop = ((module.top_crop, module.bottom_crop), (module.left_crop, module.right_crop))
            new, text = Cropping2dLayer(crop), f"Cropping2dLayer{crop}"
        elif kind in ("FlattenTime", "UnflattenTime"):
            new, text = nn.Identity(), "removed (spikeflash runs (T, C, H, W) events; no batch/time reshape)"
        else:
            continue  # a sinabs base class or helper without parameters: extraction reports it
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        if text:
            notes.append(Note(name, f"sinabs {kind} -> {text}"))
    return model, notes, problems


def _scalar(name: str, what: str, value, problems: list[Violation]) -> float:
    t = torch.as_tensor(value).detach().double().flatten()
    if t.numel() != 1:
        problems.append(Violation(name, "one threshold pair per core", f"{what} with {t.numel()} values",
                                  f"use one scalar {what} for the whole layer"))
    return float(t[0])


def _iaf(name: str, m: nn.Module, problems: list[Violation]):
    """The SpikingLayer for a sinabs IAF and the note text ('' when refused: the problems say why)."""
    before = len(problems)
    if getattr(m, "tau_syn", None) is not None:
        problems.append(Violation(name, "synaptic currents (tau_syn) have no chip equivalent",
                                  f"tau_syn={_scalar(name, 'tau_syn', m.tau_syn, [])}", "use tau_syn=None"))
    reset = _RESETS.get(type(m.reset_fn).__name__)
    if reset is None:
        problems.append(Violation(name, "the chip resets by subtracting the threshold or to zero",
                                  f"reset_fn={m.reset_fn!r}", "use MembraneSubtract() or MembraneReset()"))
    threshold = _scalar(name, "spike_threshold", m.spike_threshold, problems)
    low = None if m.min_v_mem is None else _scalar(name, "min_v_mem", m.min_v_mem, problems)
    subtract = getattr(m.reset_fn, "subtract_value", None)
    new = SpikingLayer(threshold, low, membrane_subtract=subtract, membrane_reset=reset == "zero")
    if len(problems) > before:
        return new, ""
    spike_fn = getattr(m.spike_fn, "__name__", type(m.spike_fn).__name__)
    return new, (f"SpikingLayer(threshold={threshold} from spike_threshold, threshold_low={low} from "
                 f"min_v_mem{' (unbounded: -32768 on chip)' if low is None else ''}, reset {reset!r} from "
                 f"{type(m.reset_fn).__name__}); {spike_fn}: the chip emits one spike per synaptic update")


def _sumpool(name: str, m: nn.Module, problems: list[Violation]):
    kernel, stride = m.kernel_size, m.stride if m.stride is not None else m.kernel_size
    if getattr(m, "ceil_mode", False):
        problems.append(Violation(name, "pooling drops partial windows on the chip", "ceil_mode=True",
                                  "use ceil_mode=False"))
        return SumPool2d(kernel, stride), ""
    return SumPool2d(kernel, stride), f"SumPool2d(kernel_size={kernel}, stride={stride})"
