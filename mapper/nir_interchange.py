"""NIR interchange: snnlib models to and from NIR graphs (the ``nir`` package, extra ``nir``).

Models are ``torch.nn.Sequential`` chains of ``Conv2d``, ``Linear``, ``Flatten``,
``AvgPool2d``, ``snnlib.ann.SumPool2d`` and ``snnlib.layers.SpikingLayer``, fed with time steps
on the first axis: ``(T, C, H, W)``. NIR shapes leave that axis out.

- :func:`export_nir` writes ``SpikingLayer`` as ``nir.IF``. NIR's IF has no lower bound, reset
  to zero or separate subtract amount, so those are kept in the node's ``metadata`` under
  ``"spikeflash.<attribute>"`` (an absent ``threshold_low`` means no lower bound);
  :func:`import_nir` restores them, other tools ignore them.
- :func:`import_nir` reads IF, LIF, Conv2d, Linear, Affine, SumPool2d, AvgPool2d and Flatten
  chains and returns the model together with a :class:`LegalizationReport`. Nothing changes
  silently: every change that alters what the model computes (per-neuron thresholds collapsed
  to one per layer, LIF leak dropped) is a ``"lossy"`` note and a
  :class:`LegalizationWarning` (``strict=True`` refuses instead); what the model keeps but the
  chip needs help with (biases, which the chip adds only on leak ticks; dilation; groups;
  pooling other than 1, 2, 4 with stride = kernel) is a ``"chip"`` note; exact rewrites are
  ``"info"`` notes.

Neuron input gain: NIR's ``r`` scales the input. An IF node adds ``r * I`` per time step, so
its threshold becomes ``v_threshold / r``. A LIF node adds ``dt * r / tau * I`` per step with
the step ``dt`` in seconds (default 1e-4 s, snnTorch's export convention), so its threshold
becomes ``v_threshold * tau / (dt * r)``.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from snnlib.ann import SumPool2d
from snnlib.errors import MissingDependency, SpikeflashError
from snnlib.layers import SpikingLayer

#: Node-metadata key prefix under which export keeps SpikingLayer attributes NIR's IF lacks.
METADATA_PREFIX = "spikeflash."
SPIKING_ATTRIBUTES = (
    "threshold_low", "membrane_subtract", "membrane_reset", "negative_spikes", "saturate_int16",
    "layer_name",
)
#: Time step (s) assumed for LIF nodes when none is given (snnTorch exports with 1e-4 s).
DEFAULT_LIF_DT = 1e-4
CHIP_POOL_SIZES = (1, 2, 4)
SEVERITIES = ("info", "lossy", "chip")


class NIRExportError(SpikeflashError, ValueError):
    """A model holds something NIR cannot represent; the message lists every such layer.

    Example scenarios:
      - a Conv2d with ``padding_mode="reflect"`` or a pooling layer with ``ceil_mode=True``
    """


class NIRImportError(SpikeflashError, ValueError):
    """A NIR graph holds nodes or a structure that cannot become an snnlib model.

    Example scenarios:
      - a graph with branches or a cycle, or a node type with no snnlib counterpart (e.g. LI)
      - a file that is missing or is not a NIR file
    """


class LossyImportError(NIRImportError):
    """``strict=True`` and the import would change what the model computes.

    Example scenarios:
      - per-neuron thresholds that would be collapsed to their mean
      - a LIF node that would be imported as integrate-and-fire
    """


class LegalizationWarning(UserWarning):
    """The imported model differs from the NIR graph (see its :class:`LegalizationReport`)."""


@dataclass(frozen=True)
class LegalizationNote:
    """One finding about node ``node``; ``severity`` is "info", "lossy" or "chip"."""

    node: str
    severity: str
    message: str


@dataclass
class LegalizationReport:
    """Everything :func:`import_nir` rewrote, dropped, or left for the chip mapping to solve."""

    notes: list[LegalizationNote] = field(default_factory=list)

    def add(self, node: str, severity: str, message: str) -> None:
        """Record a finding about ``node``; ``severity`` is one of :data:`SEVERITIES`."""
        if severity not in SEVERITIES:
            raise ValueError(f"severity={severity!r}: expected one of {SEVERITIES}")
        self.notes.append(LegalizationNote(node, severity, message))

    def of(self, severity: str) -> list[LegalizationNote]:
        """The notes with ``severity`` ("info", "lossy" or "chip")."""
        return [n for n in self.notes if n.severity == severity]

    @property
    def lossless(self) -> bool:
        """True when the model computes exactly what the graph says (no "lossy" note)."""
        return not self.of("lossy")

    def __str__(self) -> str:
        if not self.notes:
            return "NIR import: exact, nothing to report"
        width = max(len(n.node) for n in self.notes)
        return "\n".join(f"{n.severity:<5}  {n.node:<{width}}  {n.message}" for n in self.notes)


class NIRImport(NamedTuple):
    """What :func:`import_nir` returns: the model and its legalization report."""

    model: torch.nn.Sequential
    report: LegalizationReport


class _Unsupported(SpikeflashError):
    """Internal: one node or module that cannot be converted (collected, then raised together)."""


def export_nir(model: torch.nn.Sequential, input_shape) -> "nir.NIRGraph":  # noqa: F821
    """The NIR graph of ``model`` for one time step of shape ``input_shape`` (``(C, H, W)`` or
    ``(N,)``). Nodes are named after the model's children; edges run input -> ... -> output.

    Raises :class:`NIRExportError` listing every layer NIR cannot represent.
    """
    nir = _nir()
    if not isinstance(model, torch.nn.Sequential) or len(model) == 0:
        raise NIRExportError(
            f"model: got {type(model).__name__}; expected a non-empty torch.nn.Sequential of "
            "Conv2d / Linear / Flatten / AvgPool2d / SumPool2d / SpikingLayer"
        )
    shape = _shape("input_shape", input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    problems = []
    for name, module in model.named_children():
        try:
            if name in ("input", "output"):
                raise _Unsupported("the names 'input' and 'output' mark NIR's graph ends; rename the layer")
            nodes[name] = _export_module(nir, module, shape)
        except _Unsupported as exc:
            problems.append(f"{name} ({type(module).__name__}): {exc}")
        shape = _output_shape(name, module, shape)
    if problems:
        raise NIRExportError("cannot export to NIR:\n  - " + "\n  - ".join(problems))
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))


def import_nir(graph, *, dt: float = DEFAULT_LIF_DT, strict: bool = False) -> NIRImport:
    """A ``torch.nn.Sequential`` of snnlib / torch layers computing the NIR ``graph``.

    ``graph``: a ``nir.NIRGraph`` or the path of a NIR (HDF5) file; it must be one chain from
    its input to its output. ``dt``: the time step in seconds used for LIF nodes (see the
    module docstring). ``strict``: raise :class:`LossyImportError` instead of making lossy
    changes. Lossy changes are also issued as :class:`LegalizationWarning`.
    Raises :class:`NIRImportError` listing every node that cannot be imported.
    """
    nir = _nir()
    if isinstance(graph, (str, Path)):
        graph = _read(nir, Path(graph))
    if not isinstance(graph, nir.NIRGraph):
        raise NIRImportError(
            f"graph: got {type(graph).__name__}; expected a nir.NIRGraph or a path to a .nir file"
        )
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0):
        raise NIRImportError(f"dt={dt!r}: expected a positive time step in seconds, e.g. 1e-3")
    report = LegalizationReport()
    layers, problems = [], []
    for name in _chain(nir, graph):
        node = graph.nodes[name]
        try:
            layers.append((name.replace(".", "_"), _import_node(nir, node, name, dt, report)))
        except _Unsupported as exc:
            problems.append(f"{name} ({type(node).__name__}): {exc}")
    if problems:
        raise NIRImportError("cannot import the NIR graph:\n  - " + "\n  - ".join(problems))
    lossy = report.of("lossy")
    if strict and lossy:
        raise LossyImportError(
            "strict import refused these lossy changes:\n  - "
            + "\n  - ".join(f"{n.node}: {n.message}" for n in lossy)
        )
    for note in lossy:
        warnings.warn(f"{note.node}: {note.message}", LegalizationWarning, stacklevel=2)
    return NIRImport(torch.nn.Sequential(OrderedDict(layers)), report)


# ---------------------------------------------------------------- export helpers


def _export_module(nir, module: torch.nn.Module, shape: tuple[int, ...]):
    if isinstance(module, SpikingLayer):
        metadata = {
            METADATA_PREFIX + attr: getattr(module, attr)
            for attr in SPIKING_ATTRIBUTES
            if getattr(module, attr) is not None
        }
        return nir.IF(
            r=np.ones(shape), v_threshold=np.full(shape, float(module.threshold)), metadata=metadata
        )
    if isinstance(module, torch.nn.Conv2d):
        if module.padding_mode != "zeros":
            raise _Unsupported(f"padding_mode={module.padding_mode!r}; NIR knows zero padding only")
        weight = _numpy(module.weight)
        bias = _numpy(module.bias) if module.bias is not None else np.zeros(weight.shape[0])
        return nir.Conv2d(
            input_shape=tuple(shape[1:]), weight=weight, stride=module.stride, padding=module.padding,
            dilation=module.dilation, groups=module.groups, bias=bias,
        )
    if isinstance(module, torch.nn.Linear):
        if module.bias is None:
            return nir.Linear(weight=_numpy(module.weight))
        return nir.Affine(weight=_numpy(module.weight), bias=_numpy(module.bias))
    if isinstance(module, torch.nn.Flatten):
        if module.start_dim == 0:
            raise _Unsupported("start_dim=0 flattens the time axis; use start_dim >= 1")
        end = module.end_dim - 1 if module.end_dim > 0 else module.end_dim
        return nir.Flatten(
            input_type={"input": np.array(shape)}, start_dim=module.start_dim - 1, end_dim=end
        )
    if isinstance(module, (SumPool2d, torch.nn.AvgPool2d)):
        if module.ceil_mode:
            raise _Unsupported("ceil_mode=True; NIR pooling has no ceil mode")
        kernel = _pair(module.kernel_size)
        stride = kernel if module.stride is None else _pair(module.stride)
        if isinstance(module, SumPool2d):
            return nir.SumPool2d(
                kernel_size=np.array(kernel), stride=np.array(stride), padding=np.zeros(2, int)
            )
        if not module.count_include_pad and np.any(_pair(module.padding)):
            raise _Unsupported("count_include_pad=False with padding; NIR averages over the full window")
        return nir.AvgPool2d(
            kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(_pair(module.padding))
        )
    raise _Unsupported(
        "no NIR form; supported: Conv2d, Linear, Flatten, AvgPool2d, snnlib SumPool2d, SpikingLayer"
    )


def _output_shape(name: str, module: torch.nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape one time step has after ``module``, from torch's own shape rules."""
    if isinstance(module, SpikingLayer):
        return shape
    try:
        with torch.no_grad():
            return tuple(module(torch.zeros((1, *shape))).shape[1:])
    except (RuntimeError, ValueError) as exc:
        raise NIRExportError(
            f"layer {name} ({type(module).__name__}) cannot take input of shape {shape}: {exc}; "
            "check input_shape"
        ) from exc


# ---------------------------------------------------------------- import helpers


def _read(nir, path: Path):
    if not path.is_file():
        raise NIRImportError(f"graph={str(path)!r}: no such file")
    try:
        return nir.read(path)
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise NIRImportError(f"graph={str(path)!r}: not a readable NIR file ({exc!r})") from exc


def declared_input_shape(graph) -> tuple[int, ...] | None:
    """The shape of one input frame that a NIR graph (or .nir file) declares in its Input node,
    e.g. ``(2, 8, 8)``; None when it declares none (or has no single Input node)."""
    nir = _nir()
    if isinstance(graph, (str, Path)):
        graph = _read(nir, Path(graph))
    inputs = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        return None
    shapes = [np.asarray(v) for v in (inputs[0].input_type or {}).values()]
    if len(shapes) != 1 or shapes[0].ndim != 1 or not shapes[0].size or np.any(shapes[0] < 1):
        return None
    return tuple(int(v) for v in shapes[0])


def _chain(nir, graph) -> list[str]:
    """Node names from the graph's single input to its output (both excluded)."""
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRImportError(f"graph: has {len(inputs)} Input nodes {inputs}; expected exactly one")
    successors: dict[str, list[str]] = {}
    predecessors: dict[str, list[str]] = {}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                raise NIRImportError(f"graph: edge ({a!r}, {b!r}) names {end!r}, which is not a node")
        successors.setdefault(a, []).append(b)
        predecessors.setdefault(b, []).append(a)
    for name in graph.nodes:
        if len(successors.get(name, [])) > 1 or len(predecessors.get(name, [])) > 1:
            raise NIRImportError(
                f"graph: node {name!r} has {len(predecessors.get(name, []))} inputs and "
                f"{len(successors.get(name, []))} outputs; only chains (one in, one out) import "
                "as a Sequential"
            )
    chain, name = [], inputs[0]
    while not isinstance(graph.nodes[name], nir.Output):
        following = successors.get(name)
        if not following:
            raise NIRImportError(f"graph: node {name!r} leads nowhere; expected a path to an Output node")
        name = following[0]
        if name in chain:
            raise NIRImportError(f"graph: node {name!r} is part of a cycle; recurrent graphs do not import")
        chain.append(name)
    unreached = set(graph.nodes) - set(chain) - {inputs[0]}
    if unreached:
        raise NIRImportError(f"graph: nodes {sorted(unreached)} are not on the path from input to output")
    return chain[:-1]


def _import_node(nir, node, name: str, dt: float, report: LegalizationReport) -> torch.nn.Module:
    if isinstance(node, nir.IF):
        gain = _numpy(node.r)
        threshold = _one_threshold(name, _numpy(node.v_threshold) / gain, report)
        return _spiking_layer(node, name, threshold, report)
    if isinstance(node, nir.LIF):
        tau, r = _numpy(node.tau), _numpy(node.r)
        threshold = _one_threshold(name, _numpy(node.v_threshold) * tau / (dt * r), report)
        decay = 1.0 - dt / tau
        leak = f"the leak (tau {_span(tau)} s, i.e. x{_span(decay)} per {dt:g} s step"
        if np.any(_numpy(node.v_leak) != 0):
            leak += f", v_leak {_span(_numpy(node.v_leak))}"
        report.add(
            name, "lossy", f"LIF imported as IF: {leak}) is dropped; the chip's neurons do not decay"
        )
        return _spiking_layer(node, name, threshold, report)
    if isinstance(node, nir.Conv2d):
        return _conv2d(node, name, report)
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = _numpy(node.weight)
        if weight.ndim != 2:
            raise _Unsupported(f"weight shape {weight.shape}; expected (out_features, in_features)")
        bias = _kept_bias(name, _numpy(node.bias) if isinstance(node, nir.Affine) else None, report)
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        _set(linear, weight, bias)
        return linear
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return torch.nn.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
    if isinstance(node, nir.SumPool2d):
        kernel, stride, padding = (_pair(_numpy(v)) for v in (node.kernel_size, node.stride, node.padding))
        if any(padding):
            raise _Unsupported(f"padding {padding}; snnlib SumPool2d and the chip pool without padding")
        _note_chip_pooling(name, kernel, stride, report)
        return SumPool2d(kernel, stride)
    if isinstance(node, nir.AvgPool2d):
        kernel, stride, padding = (_pair(_numpy(v)) for v in (node.kernel_size, node.stride, node.padding))
        _note_chip_pooling(name, kernel, stride, report)
        report.add(
            name, "info",
            f"AvgPool2d kept; the chip sums, so mapping divides the next weights by {kernel[0] * kernel[1]}",
        )
        return torch.nn.AvgPool2d(kernel, stride, padding)
    raise _Unsupported(
        "no snnlib equivalent; supported: IF, LIF, Conv2d, Linear, Affine, SumPool2d, AvgPool2d, Flatten"
    )


def _conv2d(node, name: str, report: LegalizationReport) -> torch.nn.Conv2d:
    weight = _numpy(node.weight)
    if weight.ndim != 4:
        raise _Unsupported(f"weight shape {weight.shape}; expected (out, in / groups, kh, kw)")
    groups, dilation, stride = int(node.groups), _pair(_numpy(node.dilation)), _pair(_numpy(node.stride))
    padding = node.padding if isinstance(node.padding, str) else _pair(_numpy(node.padding))
    if groups != 1:
        report.add(
            name, "chip", f"groups={groups}; the chip convolves all input channels (expand the weights)"
        )
    if dilation != (1, 1):
        report.add(name, "chip", f"dilation {dilation}; the chip has no dilated kernels")
    bias = _kept_bias(name, _numpy(node.bias), report)
    conv = torch.nn.Conv2d(
        weight.shape[1] * groups, weight.shape[0], weight.shape[2:], stride=stride, padding=padding,
        dilation=dilation, groups=groups, bias=bias is not None,
    )
    _set(conv, weight, bias)
    return conv


def _spiking_layer(node, name: str, threshold: float, report: LegalizationReport) -> SpikingLayer:
    saved = {
        key[len(METADATA_PREFIX):]: _plain(value)
        for key, value in (node.metadata or {}).items()
        if key.startswith(METADATA_PREFIX) and key[len(METADATA_PREFIX):] in SPIKING_ATTRIBUTES
    }
    if not saved:
        report.add(
            name, "info",
            "NIR spikes once per step when v > threshold; imported with the chip's rule: "
            "floor(v / threshold) spikes per step from v >= threshold, subtract reset, no lower bound",
        )
        saved = {"layer_name": name}
    return SpikingLayer(threshold=threshold, **{"threshold_low": None, **saved})  # absent: no bound


def _one_threshold(name: str, thresholds: np.ndarray, report: LegalizationReport) -> float:
    """One threshold for the layer; per-neuron values are collapsed to their mean, reported."""
    if thresholds.size == 0 or not np.all(np.isfinite(thresholds)) or np.any(thresholds <= 0):
        raise _Unsupported(f"thresholds {_span(thresholds)}; expected finite values > 0")
    low, high = float(thresholds.min()), float(thresholds.max())
    if high - low <= 1e-9 * high:
        return high
    mean = float(thresholds.mean())
    report.add(
        name, "lossy",
        f"per-neuron thresholds in [{low:g}, {high:g}] collapsed to their mean {mean:g}; "
        "the chip has one threshold per layer",
    )
    return mean


def _kept_bias(name: str, bias, report: LegalizationReport):
    """``bias`` if any entry is non-zero (then noted for the chip), else None."""
    if bias is None or not np.any(bias):
        return None
    report.add(
        name, "chip",
        f"bias {_span(bias)} kept; the chip adds biases only on leak ticks, so map it with the "
        "slow clock period equal to the time step, or retrain without bias",
    )
    return bias


def _note_chip_pooling(name: str, kernel, stride, report: LegalizationReport) -> None:
    if kernel != stride or kernel[0] != kernel[1] or kernel[0] not in CHIP_POOL_SIZES:
        report.add(
            name, "chip",
            f"pooling kernel {kernel} stride {stride}; the chip pools square windows of "
            f"{CHIP_POOL_SIZES} with stride = kernel",
        )


# ---------------------------------------------------------------- small utilities


def _nir():
    try:
        import nir
    except ImportError as exc:
        raise MissingDependency("NIR support needs the nir package: pip install 'spikeflash[nir]'") from exc
    return nir


def _numpy(value) -> np.ndarray:
    """A float64 numpy array from a numpy array, a torch tensor (as sinabs stores) or a number."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _pair(value) -> tuple[int, int]:
    items = np.atleast_1d(np.asarray(value)).astype(int).ravel()
    return (int(items[0]), int(items[0])) if items.size == 1 else (int(items[0]), int(items[1]))


def _plain(value):
    """A numpy scalar or bytes (as read back from HDF5) as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def _span(values: np.ndarray) -> str:
    values = np.asarray(values)
    low, high = float(values.min()), float(values.max())
    return f"{low:g}" if low == high else f"{low:g}..{high:g}"


def _shape(name: str, value) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise NIRExportError(f"{name}={value!r}: expected the shape of one time step, e.g. (2, 16, 16)")
    return shape


def _set(module: torch.nn.Module, weight: np.ndarray, bias) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weight, dtype=module.weight.dtype))
        if bias is not None:
            module.bias.copy_(torch.as_tensor(bias, dtype=module.bias.dtype))
