"""Torch programs: snnlib models to and from TorchScript and ``torch.export`` files, which load
without running pickled Python code (unlike ``torch.save`` of a whole module).

Models are ``torch.nn.Sequential`` chains of ``Conv2d``, ``Linear``, ``Flatten``,
``AvgPool2d``, ``snnlib.ann.SumPool2d`` and ``snnlib.layers.SpikingLayer`` (as for NIR).
A ``SpikingLayer`` cannot be traced (its kernels run outside torch), so :func:`save_program`
writes each as one call of the operator ``spikeflash::spiking(x, threshold, threshold_low,
membrane_subtract, membrane_reset)``, registered when this module is imported; it returns
zeros: a program saved here describes a model for mapping, it does not run one.
:func:`load_program` rebuilds the chain from the program's operators and weights, and never
calls the program. ``.pt2``: ``torch.export`` (``torch.export.save`` / ``load``); any other
suffix: a TorchScript archive (``torch.jit.trace`` / ``torch.jit.save`` / ``torch.jit.load``).
"""

from __future__ import annotations

import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from mapper.errors import ProgramError
from snnlib.ann import SumPool2d
from snnlib.layers import SpikingLayer

#: the suffix of torch.export programs; other program files are TorchScript archives
EXPORT_SUFFIX = ".pt2"


@torch.library.custom_op("spikeflash::spiking", mutates_args=())
def _spiking(x: torch.Tensor, threshold: float, threshold_low: Optional[float],
             membrane_subtract: Optional[float], membrane_reset: bool) -> torch.Tensor:
    return torch.zeros_like(x)


@_spiking.register_fake
def _spiking_fake(x, threshold, threshold_low, membrane_subtract, membrane_reset):
    return torch.empty_like(x)


class _SpikingCall(nn.Module):
    """Stands for a SpikingLayer in a saved program: one ``spikeflash::spiking`` call."""

    def __init__(self, layer: SpikingLayer):
        super().__init__()
        self.settings = (float(layer.threshold_values()[0]),
                         None if layer.threshold_low is None else float(layer.threshold_low),
                         None if layer._membrane_subtract is None else float(layer._membrane_subtract),
                         bool(layer.membrane_reset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.spikeflash.spiking(x, *self.settings)


def save_program(model: nn.Sequential, input_shape, path) -> None:
    """Write ``model`` (a chain of the layers above) as a program to ``path``: ``.pt2`` with
    ``torch.export``, else TorchScript. ``input_shape``: ``(C, H, W)`` of one time step."""
    if not isinstance(model, nn.Sequential):
        raise ProgramError(f"save_program(model): expected a torch.nn.Sequential, got {type(model).__name__}")
    layers = []
    for name, module in model.named_children():
        if isinstance(module, SpikingLayer):
            if len(module.threshold_values()) != 1 or module.negative_spikes:
                raise ProgramError(f"save_program: layer {name} has one threshold per channel or negative "
                                   "spikes; a program holds one threshold and positive spikes per layer")
            module = _SpikingCall(module)
        elif not isinstance(module, _BUILDERS_BY_CLASS):
            raise ProgramError(f"save_program: layer {name} is a {type(module).__name__}; a program holds "
                               "Conv2d, Linear, Flatten, AvgPool2d, SumPool2d and SpikingLayer")
        layers.append((name, module))
    chain = nn.Sequential(OrderedDict(layers)).eval()
    example = torch.zeros(1, *input_shape)
    if Path(path).suffix == EXPORT_SUFFIX:
        torch.export.save(torch.export.export(chain, (example,)), path)
        return
    with warnings.catch_warnings():  # torch deprecates TorchScript in favour of torch.export
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.trace(chain, example), path)


def is_torchscript(path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip holding ``code/``), not a pickle."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_program(path) -> nn.Sequential:
    """The model a program file describes, as a ``Sequential`` of snnlib and torch layers
    (``.pt2``: torch.export; else TorchScript). Raises :class:`ProgramError` naming an
    operator or layer it cannot rebuild."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript in favour of torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            program = (torch.export.load(path) if path.suffix == EXPORT_SUFFIX
                       else torch.jit.load(path, map_location="cpu"))
    except Exception as exc:  # both loaders raise many types; name the file and the cause
        raise ProgramError(f"{path}: not a readable {'torch.export' if path.suffix == EXPORT_SUFFIX else 'TorchScript'} "
                           f"program ({type(exc).__name__}: {exc})") from exc
    calls = _export_calls(program, path) if path.suffix == EXPORT_SUFFIX else _script_calls(program, path)
    return nn.Sequential(*(_BUILDERS[op](args) for op, args in calls))


def _export_calls(program, path: Path) -> list[tuple[str, dict]]:
    """``(operator, arguments by name)`` of each call in the exported graph, which must be a chain."""
    signature = program.graph_signature
    tensors = {name: program.state_dict[target] for name, target in
               {**signature.inputs_to_parameters, **signature.inputs_to_buffers}.items()}
    calls, previous = [], None
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        op = str(node.target).replace(".default", "").replace(".using_ints", "").replace(".", "::", 1)
        x, *rest = node.args
        chained = x is previous if previous is not None else x.op == "placeholder" and x.name not in tensors
        if op not in _BUILDERS or not chained:
            raise _not_a_chain(path, op if op not in _BUILDERS else f"{op} that does not follow the previous layer")
        names = [a.name for a in node.target._schema.arguments][1:]
        args = {a.name: a.default_value for a in node.target._schema.arguments[1:] if a.has_default_value()}
        args.update(zip(names, rest))
        args.update(node.kwargs)
        calls.append((op, {k: tensors[v.name] if isinstance(v, torch.fx.Node) else v for k, v in args.items()}))
        previous = node
    return calls


def _script_calls(module, path: Path) -> list[tuple[str, dict]]:
    """``(operator, arguments by name)`` of each child of a traced Sequential, in order."""
    if module.original_name != "Sequential":
        raise ProgramError(f"{path}: the program is a {module.original_name}; programs hold a Sequential chain")
    calls = []
    for _, child in module.named_children():
        ops = [n for n in child.inlined_graph.nodes() if not n.kind().startswith("prim::")]
        if len(ops) != 1 or _SCRIPT_OPS.get(ops[0].kind()) is None:
            raise _not_a_chain(path, " and ".join(n.kind() for n in ops) or child.original_name)
        node, tensors = ops[0], dict(child.named_parameters())
        schema = torch._C.parse_schema(node.schema())
        args = {}
        for argument, value in zip(schema.arguments[1:], list(node.inputs())[1:]):
            owner = value.node()
            args[argument.name] = (tensors.get(owner.s("name")) if owner.kind() == "prim::GetAttr"
                                   else _constant(value))
        calls.append((_SCRIPT_OPS[node.kind()], args))
    return calls


def _constant(value):
    node = value.node()
    if node.kind() == "prim::ListConstruct":
        return [_constant(v) for v in node.inputs()]
    return value.toIValue()


def _not_a_chain(path: Path, what: str) -> ProgramError:
    return ProgramError(f"{path}: the program calls {what}; spikeflash rebuilds chains of Conv2d, "
                        "Linear, Flatten, AvgPool2d, SumPool2d and SpikingLayer",
                        hint="save the model with mapper.save_program, or export it to NIR")


def _conv(a: dict) -> nn.Conv2d:
    weight, groups = a["weight"], a["groups"]
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), a["stride"],
                     a["padding"], a["dilation"], groups, bias=a["bias"] is not None)
    _load(conv, a)
    return conv


def _linear(a: dict) -> nn.Linear:
    linear = nn.Linear(a["weight"].shape[1], a["weight"].shape[0], bias=a["bias"] is not None)
    _load(linear, a)
    return linear


def _load(module: nn.Module, a: dict) -> None:
    with torch.no_grad():
        module.weight.copy_(a["weight"])
        if a["bias"] is not None:
            module.bias.copy_(a["bias"])


def _pool(a: dict) -> nn.Module:
    stride = a["stride"] or None
    if a["divisor_override"] == 1 and not any(a["padding"]):
        return SumPool2d(tuple(a["kernel_size"]), None if stride is None else tuple(stride), a["ceil_mode"])
    return nn.AvgPool2d(a["kernel_size"], stride, a["padding"], a["ceil_mode"], a["count_include_pad"],
                        a["divisor_override"])


_BUILDERS = {
    "aten::conv2d": _conv,
    "aten::linear": _linear,
    "aten::avg_pool2d": _pool,
    "aten::flatten": lambda a: nn.Flatten(a["start_dim"], a["end_dim"]),
    "spikeflash::spiking": lambda a: SpikingLayer(a["threshold"], a["threshold_low"], a["membrane_subtract"],
                                                  membrane_reset=a["membrane_reset"]),
}
#: TorchScript names of the same operators (a traced Conv2d calls _convolution)
_SCRIPT_OPS = {"aten::_convolution": "aten::conv2d", **{op: op for op in _BUILDERS}}
_BUILDERS_BY_CLASS = (nn.Conv2d, nn.Linear, nn.Flatten, nn.AvgPool2d, SumPool2d)
