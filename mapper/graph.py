"""Graph extraction: a torch model (Sequential or a DAG traced with torch.fx) becomes a
``networkx.DiGraph`` of layers annotated with shapes.

Every node has ``kind`` (one of :data:`KINDS`), ``module`` (the torch module or None),
``shape`` (its output map ``(c, h, w)``; a Linear output is ``(n, 1, 1)``) and ``flat``
(True after a Flatten). Node names are the modules' qualified names (``"0"``,
``"block.conv"``); ``"input"`` is the model input and ``"output"`` the model output.
Nodes the chip cannot express get kind ``"unsupported"`` and a ``detail`` text; they are
reported by legalization together with every other problem.
"""

from __future__ import annotations

import operator

import networkx as nx
import torch
from torch import fx, nn

from snnlib import Cropping2dLayer, InputLayer, SpikingLayer, SumPool2d

from mapper.checks import conv_output_size
from mapper.sinabs_models import is_sinabs

KINDS = ("input", "output", "conv", "linear", "spiking", "sumpool", "avgpool", "flatten",
         "batchnorm", "passthrough", "crop", "add", "unsupported")

_MODULE_KINDS = [
    (nn.Conv2d, "conv"), (nn.Linear, "linear"), (SpikingLayer, "spiking"),
    (SumPool2d, "sumpool"), (nn.AvgPool2d, "avgpool"), (nn.Flatten, "flatten"),
    (nn.BatchNorm1d, "batchnorm"), (nn.BatchNorm2d, "batchnorm"),
    (nn.Dropout, "passthrough"), (nn.Dropout2d, "passthrough"), (nn.Identity, "passthrough"),
    (InputLayer, "passthrough"), (Cropping2dLayer, "crop"),
]


class _LeafTracer(fx.Tracer):
    """Traces through containers only: every module that has no children (or is a layer of
    snnlib, torch or sinabs that the mapper knows by kind) is one node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return not list(m.children()) or isinstance(m, tuple(t for t, _ in _MODULE_KINDS)) or is_sinabs(m)


def module_kind(module: nn.Module) -> str:
    """The graph kind of a torch module ("unsupported" when the chip cannot express it)."""
    for cls, kind in _MODULE_KINDS:
        if isinstance(module, cls):
            return kind
    return "unsupported"


def extract_graph(model: nn.Module, input_shape: tuple[int, int, int]) -> nx.DiGraph:
    """Trace ``model`` with torch.fx and return its layer graph (see module docstring).

    ``input_shape``: ``(c, h, w)`` of one input frame. Raises ``TypeError`` when ``model``
    is not an ``nn.Module`` and ``ValueError`` when it cannot be traced.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    try:
        traced = _LeafTracer().trace(model)
    except Exception as exc:  # fx raises many types; name the cause and the fix
        raise ValueError(f"model: torch.fx cannot trace {type(model).__name__} ({exc}); use an "
                         "nn.Sequential or a forward without data-dependent control flow") from exc
    modules = dict(model.named_modules())
    g = nx.DiGraph()
    name_of: dict[fx.Node, str] = {}
    for node in traced.nodes:
        args = [a for a in node.all_input_nodes]
        preds = [name_of[a] for a in args]
        if node.op == "placeholder":
            name, attrs = "input", dict(kind="input", module=None, shape=tuple(input_shape), flat=False)
        elif node.op == "output":
            name, attrs = "output", dict(kind="output", module=None, shape=_first_shape(g, preds), flat=False)
        elif node.op == "call_module":
            name, module = str(node.target), modules[str(node.target)]
            attrs = _module_attrs(module, g.nodes[preds[0]] if preds else None)
        else:
            name, attrs = node.name, _function_attrs(node, [g.nodes[p] for p in preds])
        g.add_node(name, **attrs)
        name_of[node] = name
        for p in preds:
            g.add_edge(p, name)
    return g


def _first_shape(g, preds):
    return g.nodes[preds[0]]["shape"] if preds else (0, 0, 0)


def _module_attrs(module: nn.Module, src: dict | None) -> dict:
    kind = module_kind(module)
    shape, flat = (src["shape"], src["flat"]) if src else ((0, 0, 0), False)
    attrs = dict(kind=kind, module=module, shape=shape, flat=flat)
    c, h, w = shape
    if kind == "conv":
        k, s, p = module.kernel_size, module.stride, module.padding
        if isinstance(p, str):
            p = (0, 0) if p == "valid" else tuple(kk // 2 for kk in k)
        attrs["shape"] = (module.out_channels, conv_output_size(h, k[0], s[0], p[0]),
                          conv_output_size(w, k[1], s[1], p[1]))
    elif kind == "linear":
        attrs.update(shape=(module.out_features, 1, 1), flat=True)
    elif kind in ("sumpool", "avgpool"):
        k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        attrs["shape"] = (c, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1)
    elif kind == "flatten":
        attrs["flat"] = True
    elif kind == "crop":
        attrs["shape"] = (c, h - module.top - module.bottom, w - module.left - module.right)
    elif kind == "unsupported":
        attrs["detail"] = type(module).__name__
    return attrs


def _function_attrs(node: fx.Node, srcs: list[dict]) -> dict:
    shape = srcs[0]["shape"] if srcs else (0, 0, 0)
    flat = bool(srcs) and srcs[0]["flat"]
    if node.target in (operator.add, torch.add) or node.target == "add":
        return dict(kind="add", module=None, shape=shape, flat=flat,
                    input_shapes=[s["shape"] for s in srcs])
    if node.target in (torch.flatten, "flatten"):
        return dict(kind="flatten", module=None, shape=shape, flat=True)
    return dict(kind="unsupported", module=None, shape=shape, flat=flat,
                detail=f"{node.op} {getattr(node.target, '__name__', node.target)}")


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)
