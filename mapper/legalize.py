"""Legalization: turn the layer graph into chip-shaped core layers with float parameters.

Folds BatchNorm into the preceding weights, turns Linear into a conv whose kernel covers the
input map, AvgPool into sum pooling with the next weights scaled by 1/k², drops Dropout /
Identity / InputLayer, groups conv -> spiking -> pooling into one core layer, and turns a
residual sum into a merge at the destination core. Input pooling and cropping go into the
DVS stage when there is one. Every change of numbers and every dropped layer becomes a
:class:`~mapper.report.Note`; everything the chip cannot express becomes a
:class:`~mapper.checks.Violation`, all of them collected in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import torch

from mapper.checks import Violation, conv_output_size
from mapper.report import Note
from mapper.sinabs_models import unsupported_fix


@dataclass
class Route:
    """Spikes of one layer sent to core layer ``layer`` with sum pooling ``pooling``."""

    layer: str
    pooling: int = 1
    feature_shift: int = 0


@dataclass
class CorePlan:
    """One core layer before quantization (float parameters, model units).

    ``name``: its conv/linear layer; ``layer_names``: every model layer merged into it, the
    spiking layer last. ``weights``: ``(f, c, kh, kw)``; ``bias``: ``(f,)`` or None.
    ``threshold_low``: None = unbounded. ``exit``: its spikes are a model output.
    """

    name: str
    layer_names: list[str]
    weights: np.ndarray
    bias: np.ndarray | None
    input_shape: tuple[int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    threshold: float = 1.0
    threshold_low: float | None = None
    reset: str = "subtract"
    destinations: list[Route] = field(default_factory=list)
    exit: bool = False

    @property
    def output_shape(self) -> tuple[int, int, int]:
        f, _, kh, kw = self.weights.shape
        _, h, w = self.input_shape
        return (f, conv_output_size(h, kh, self.stride[0], self.padding[0]),
                conv_output_size(w, kw, self.stride[1], self.padding[1]))


@dataclass
class DVSPlan:
    """The DVS stage: model input ``(c, h, w)``, ``pooling`` ``(py, px)``, ``crop``
    ``(top, bottom, left, right)`` in post-pooling pixels, and its destinations."""

    input_shape: tuple[int, int, int]
    pooling: tuple[int, int] = (1, 1)
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    destinations: list[Route] = field(default_factory=list)


@dataclass
class LegalNetwork:
    """Result of :func:`legalize`: core layers in topological order, where the model input
    goes (``entries``, or ``dvs``), and what legalization noted or refused."""

    cores: dict[str, CorePlan]
    entries: list[Route]
    dvs: DVSPlan | None
    notes: list[Note]
    violations: list[Violation]


@dataclass
class _Reach:
    """A path from a spike source through pooling/flatten/add to a conv (or the output)."""

    target: str
    pooling: tuple[int, int] = (1, 1)
    scale: float = 1.0
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    via: tuple[str, ...] = ()


class _Legalizer:
    def __init__(self, g: nx.DiGraph, dvs: bool):
        self.g, self.use_dvs = g, dvs
        self.notes: list[Note] = []
        self.violations: list[Violation] = []

    def bad(self, layer, rule, value, fix):
        v = Violation(layer, rule, value, fix)
        if v not in self.violations:
            self.violations.append(v)

    def note(self, layer, action):
        n = Note(layer, action)
        if n not in self.notes:
            self.notes.append(n)

    def run(self) -> LegalNetwork:
        g = self.g
        for n, d in g.nodes(data=True):
            if d["kind"] == "unsupported":
                self.bad(n, "unsupported layer type", d["detail"], unsupported_fix(d["module"]) or
                         "use Conv2d/Linear -> SpikingLayer -> SumPool2d/AvgPool2d blocks "
                         "(ReLU: convert with snnlib.from_torch; MaxPool: use SumPool2d)")
            elif d["kind"] == "passthrough":
                self.note(n, f"{type(d['module']).__name__} removed")
        cores: dict[str, CorePlan] = {}
        reaches: dict[str, list[_Reach]] = {}
        for n, d in g.nodes(data=True):
            if d["kind"] in ("conv", "linear"):
                plan = self.core_plan(n)
                if plan is not None:
                    cores[n] = plan
        for name, plan in cores.items():
            if self.g.nodes[plan.layer_names[-1]]["kind"] != "spiking":
                continue
            paths, plan.exit = self.reach(plan.layer_names[-1])
            for r in paths:
                reaches.setdefault(r.target, []).append(r)
            plan.destinations = [self.route(plan.layer_names[-1], r) for r in paths]
        entry_paths, _ = self.reach("input")
        for r in entry_paths:
            reaches.setdefault(r.target, []).append(r)
        self.rescale(cores, reaches)
        dvs, entries = self.input_stage(entry_paths)
        return LegalNetwork({k: v for k, v in cores.items()}, entries, dvs, self.notes, self.violations)

    def core_plan(self, n: str) -> CorePlan | None:
        g, d = self.g, self.g.nodes[n]
        m = d["module"]
        src = g.nodes[next(iter(g.predecessors(n)))]
        in_shape = src["shape"]
        w = m.weight.detach().double().numpy().copy()
        bias = None if m.bias is None else m.bias.detach().double().numpy().copy()
        if d["kind"] == "conv":
            if m.in_channels != in_shape[0]:
                self.bad(n, "Conv2d in_channels must match its input", f"{m.in_channels} vs {in_shape[0]}",
                         f"use in_channels={in_shape[0]}")
                return None
            if m.groups != 1:
                self.bad(n, "grouped convolution is not supported", f"groups={m.groups}", "use groups=1")
            if tuple(m.dilation) != (1, 1):
                self.bad(n, "dilated convolution is not supported", f"dilation={tuple(m.dilation)}",
                         "use dilation=1 (a larger kernel with zeros, or pooling)")
            if m.padding_mode != "zeros":
                self.bad(n, "only zero padding is supported", f"padding_mode={m.padding_mode!r}",
                         "use padding_mode='zeros'")
            if isinstance(m.padding, str):
                pad = (0, 0) if m.padding == "valid" else tuple(k // 2 for k in m.kernel_size)
                self.note(n, f"padding={m.padding!r} written as {pad}")
            else:
                pad = tuple(m.padding)
            stride = tuple(m.stride)
        else:
            c, h, wd = in_shape
            if w.shape[1] != c * h * wd:
                self.bad(n, "Linear in_features must match its input", f"{w.shape[1]} vs {c}x{h}x{wd}",
                         f"use in_features={c * h * wd}")
                return None
            if not src["flat"] and h * wd > 1:
                self.bad(n, "Linear needs a flattened input", f"input map {c}x{h}x{wd}",
                         f"add nn.Flatten() before {n}")
            w = w.reshape(w.shape[0], c, h, wd)
            stride, pad = (1, 1), (0, 0)
            self.note(n, f"Linear -> Conv2d with a {h}x{wd} kernel over the {c}x{h}x{wd} input map")
        names = [n]
        cur = n
        while True:
            succ = list(g.successors(cur))
            if len(succ) != 1:
                self.bad(cur, "a Conv2d/Linear must feed exactly one SpikingLayer", f"{len(succ)} consumers",
                         f"insert a SpikingLayer after {n} and branch after it")
                return None
            cur = succ[0]
            kind = g.nodes[cur]["kind"]
            if kind == "batchnorm":
                w, bias = self.fold_batchnorm(cur, g.nodes[cur]["module"], w, bias)
                names.append(cur)
            elif kind == "passthrough":
                names.append(cur)
            else:
                break
        plan = CorePlan(n, names, w, bias, tuple(in_shape), stride, pad)
        if kind != "spiking":  # still returned, so that its shape rules are checked too
            if kind != "unsupported":
                self.bad(n, "a Conv2d/Linear must be followed by a SpikingLayer", f"followed by {kind} {cur}",
                         f"insert a SpikingLayer after {n}")
            return plan
        names.append(cur)
        if bias is not None and np.any(bias != 0):
            self.note(n, "bias becomes a leak added on every slow-clock tick (set slow_clock_period_us "
                         "to the time step)")
        elif bias is not None:
            bias = None
        plan.bias = bias
        self.spiking_params(cur, g.nodes[cur]["module"], plan)
        return plan

    def fold_batchnorm(self, n, bn, w, bias):
        gamma = bn.weight.detach().double().numpy() if bn.affine else np.ones(bn.num_features)
        beta = bn.bias.detach().double().numpy() if bn.affine else np.zeros(bn.num_features)
        mean = bn.running_mean.double().numpy()
        factor = gamma / np.sqrt(bn.running_var.double().numpy() + bn.eps)
        self.note(n, "BatchNorm folded into the preceding weights and bias")
        b = np.zeros(w.shape[0]) if bias is None else bias
        return w * factor[:, None, None, None], (b - mean) * factor + beta

    def spiking_params(self, n, s, plan: CorePlan) -> None:
        def scalar(name, value):
            t = torch.as_tensor(value, dtype=torch.float64).detach()
            if t.numel() != 1:
                self.bad(n, "one threshold pair per core", f"{name} with {t.numel()} values",
                         f"use one scalar {name} for the whole layer")
                return float(t.flatten()[0])
            return float(t)

        plan.threshold = scalar("threshold", s.threshold)
        plan.threshold_low = None if s.threshold_low is None else scalar("threshold_low", s.threshold_low)
        if plan.threshold <= 0:
            self.bad(n, "threshold must be positive", plan.threshold, "use threshold > 0")
        if plan.threshold_low is not None and plan.threshold_low >= plan.threshold:
            self.bad(n, "threshold_low must be below threshold", plan.threshold_low,
                     f"use threshold_low < {plan.threshold} (or None)")
        if s.membrane_reset:
            plan.reset = "zero"
        elif scalar("membrane_subtract", s.membrane_subtract) != plan.threshold:
            self.bad(n, "the chip subtracts exactly the threshold on a spike",
                     f"membrane_subtract={s.membrane_subtract}", "use membrane_subtract=None (= threshold)")
        if getattr(s, "negative_spikes", False):
            self.bad(n, "negative spikes are not supported", "negative_spikes=True", "use negative_spikes=False")

    def reach(self, src: str) -> tuple[list[_Reach], bool]:
        """Paths from ``src`` to the convs its spikes feed; True when it reaches the output."""
        g, out, exits = self.g, [], False
        stack = [_Reach(s) for s in reversed(list(g.successors(src)))]
        while stack:
            r = stack.pop()
            n, d = r.target, g.nodes[r.target]
            kind = d["kind"]
            if kind in ("conv", "linear"):
                out.append(r)
                continue
            if kind == "output":
                exits = True
                if r.pooling != (1, 1):
                    self.note(src, f"pooling {r.pooling} after the last layer is not applied on chip "
                                   "(monitored spikes are unpooled)")
                continue
            pooling, scale, crop = r.pooling, r.scale, r.crop
            if kind in ("sumpool", "avgpool"):
                k, s = _pair(d["module"].kernel_size), _pair(d["module"].stride or d["module"].kernel_size)
                if k != s:
                    self.bad(n, "pooling stride must equal its kernel size", f"kernel {k}, stride {s}",
                             f"use stride {k[0]}")
                if getattr(d["module"], "padding", 0) not in (0, (0, 0)):
                    self.bad(n, "pooling cannot pad", f"padding={d['module'].padding}", "use padding=0")
                if crop != (0, 0, 0, 0):
                    self.bad(n, "the DVS stage crops after pooling", "crop before pooling",
                             "move the Cropping2dLayer after the pooling layer")
                pooling = (pooling[0] * k[0], pooling[1] * k[1])
                if kind == "avgpool":
                    scale /= k[0] * k[1]
                    self.note(n, f"AvgPool2d -> sum pooling; the next layer's weights are scaled by 1/{k[0] * k[1]}")
            elif kind == "crop":
                if src != "input":
                    self.bad(n, "cropping is only possible on the input (DVS stage)", "crop between layers",
                             "remove the Cropping2dLayer or move it to the model input")
                m = d["module"]
                crop = (crop[0] + m.top, crop[1] + m.bottom, crop[2] + m.left, crop[3] + m.right)
            elif kind == "spiking":
                self.bad(n, "two spiking layers in a row", f"after {src}", "put a Conv2d or Linear between them")
                continue
            elif kind == "batchnorm":
                self.bad(n, "BatchNorm must directly follow a Conv2d or Linear", f"after {src}",
                         "move the BatchNorm before the SpikingLayer")
                continue
            elif kind == "unsupported":
                continue
            elif kind == "add":
                shapes = d["input_shapes"]
                if len(set(shapes)) > 1:
                    self.bad(n, "summed inputs must have the same shape", " + ".join(map(str, shapes)),
                             "pool or pad the branches to one shape")
            for s in reversed(list(g.successors(n))):
                stack.append(_Reach(s, pooling, scale, crop, r.via + (n,)))
        return out, exits

    def route(self, src: str, r: _Reach) -> Route:
        py, px = r.pooling
        if py != px:
            self.bad(src, "pooling between cores must be square", f"{py}x{px}", f"use {py}x{py} pooling")
        if any(self.g.nodes[v]["kind"] == "add" for v in r.via):
            self.note(r.target, f"residual sum: events of {src} merge into this core")
        return Route(r.target, py)

    def rescale(self, cores, reaches) -> None:
        for target, rs in reaches.items():
            scales = sorted({r.scale for r in rs})
            if len(scales) > 1:
                self.bad(target, "inputs arrive with different AvgPool scales", scales,
                         "use SumPool2d on the branches (or the same AvgPool size)")
            elif scales[0] != 1.0 and target in cores:
                cores[target].weights = cores[target].weights * scales[0]

    def input_stage(self, paths: list[_Reach]) -> tuple[DVSPlan | None, list[Route]]:
        shape = self.g.nodes["input"]["shape"]
        needs_dvs = any(r.pooling != (1, 1) or r.crop != (0, 0, 0, 0) for r in paths)
        if not (self.use_dvs or needs_dvs):
            return None, [Route(r.target) for r in paths]
        if not self.use_dvs:
            self.bad("input", "pooling or cropping the input needs the DVS stage",
                     "pooling/crop before the first layer", "pass dvs=True, or pool/crop the events before sending them")
            return None, [Route(r.target) for r in paths]
        if len({(r.pooling, r.crop) for r in paths}) > 1:
            self.bad("input", "one DVS pooling and crop for all input branches",
                     sorted({(r.pooling, r.crop) for r in paths}), "pool and crop the input once, before branching")
        first = paths[0] if paths else _Reach("")
        return DVSPlan(tuple(shape), first.pooling, first.crop, [Route(r.target) for r in paths]), []


def legalize(g: nx.DiGraph, dvs: bool = False) -> LegalNetwork:
    """Legalize an extracted layer graph (see the module docstring). ``dvs``: the model input
    comes from the DVS stage, which may pool and crop it."""
    return _Legalizer(g, dvs).run()


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)
