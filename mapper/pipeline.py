"""map_model: extract -> legalize -> check -> allocate -> quantize -> emit, one named pass
after the other, every problem of every pass collected into one :class:`FitReport`."""

from __future__ import annotations

from dataclasses import dataclass, replace

from torch import nn

import numpy as np

from snnlib import DVS_LAYER_ID, READOUT_LAYER_ID, Destination, Readout
from snnlib.readout import READOUT_CLASSES

from mapper.allocate import allocate
from mapper.checks import Violation, check_core
from mapper.chips import ChipSpec, get_chip
from mapper.config import ChipConfig, CoreConfig, DVSConfig
from mapper.errors import MappingError
from mapper.graph import extract_graph
from mapper.legalize import DVSPlan, LegalNetwork, legalize
from mapper.memory import MemoryNeed
from mapper.names import display_names
from mapper.quantize import quantize_core
from mapper.sinabs_models import convert_sinabs
from mapper.report import CoreUsage, FitReport, Note


@dataclass
class MappingResult:
    """``config``: the validated chip configuration; ``report``: what was done and the memory
    and quantization tables; ``input_cores``: the cores that model input events enter when
    there is no DVS stage (empty with a DVS stage)."""

    config: ChipConfig
    report: FitReport
    input_cores: list[int]

    @property
    def input(self) -> int:
        """The layer id model input events are addressed to, whatever the model: the DVS stage
        (:data:`snnlib.DVS_LAYER_ID`, channel = polarity) or the one core the input enters.
        Raises :class:`MappingError` when the input enters several cores without a DVS stage."""
        if self.config.dvs is not None:
            return DVS_LAYER_ID
        if len(self.input_cores) != 1:
            raise MappingError(FitReport(self.report.chip, violations=[Violation(
                "input", "the model input enters several cores; each event must be sent to each",
                self.input_cores, "send every input event once per core in input_cores, or map with "
                "dvs=True so that the DVS stage fans it out")]))
        return self.input_cores[0]

    def describe_input(self) -> str:
        """Where input events go, in words (for the command line)."""
        if self.config.dvs is not None:
            _, h, w = self.config.dvs.input_shape
            return (f"the DVS stage (layer {DVS_LAYER_ID}; x < {w}, y < {h}, channel = polarity "
                    "0 OFF / 1 ON)")
        return f"core(s) {self.input_cores}"


def map_model(model: nn.Module, input_shape, chip: str | ChipSpec = "speck2f", *,
              monitor=None, layer2core: dict[str, int] | None = None,
              dvs: bool | DVSConfig = False, slow_clock_period_us: int | None = None,
              readout: bool | Readout = False) -> MappingResult:
    """Map a torch model onto ``chip`` (layers from torch, snnlib, or sinabs: see
    :mod:`mapper.sinabs_models`).

    ``input_shape``: ``(c, h, w)`` of the model input. ``monitor``: model layer names whose
    core's spikes are read out (None: the output layers; ``"all"``: every core).
    ``layer2core``: model layer name (any layer merged into a core, or its display name such as
    ``conv1``, see :mod:`mapper.names`) -> core id, checked.
    ``dvs``: True when the input comes from the DVS stage, which then also does the model's
    input pooling and cropping; or a :class:`DVSConfig` template whose ``input_shape`` is the
    sensor size, ``origin`` the window's top-left (post-pooling pixels), and whose polarity
    select (``on_channel`` / ``off_channel``), mirror and ``monitor`` fields are used (``cut``,
    ``pooling``, ``merge_polarities`` and ``destinations`` follow from the model: one input
    channel merges the polarities). ``slow_clock_period_us``: leak tick period (µs) for layers
    with a bias; a bias without it is a problem in the report. ``readout``: True or a
    :class:`snnlib.Readout` (threshold, moving-average length) to send the output layer's
    spikes to the readout layer of Speck 2e/2f too: the output layer must be 1x1 with at most 15
    classes; on those chips class k is read from channel 4(k-1) (an erratum), so its channels
    are spread out to 0, 4, 8, ... (noted in the report).
    Raises :class:`MappingError` whose ``report`` lists every problem found.
    """
    spec = get_chip(chip)
    shape = _check_shape(input_shape)
    if monitor is not None and monitor != "all" and (
            isinstance(monitor, str) or not all(isinstance(m, str) for m in monitor)):
        raise TypeError(f"monitor={monitor!r}: expected None, 'all' or a list of model layer names")
    if layer2core is not None and not isinstance(layer2core, dict):
        raise TypeError(f"layer2core={layer2core!r}: expected a dict model layer name -> core id")
    if not isinstance(dvs, (bool, DVSConfig)):
        raise TypeError(f"dvs={dvs!r}: expected True/False or a mapper.DVSConfig template")
    if not isinstance(readout, (bool, Readout)):
        raise TypeError(f"readout={readout!r}: expected True/False or an snnlib.Readout")
    if slow_clock_period_us is not None and (
            isinstance(slow_clock_period_us, bool) or not isinstance(slow_clock_period_us, int)
            or slow_clock_period_us < 1):
        raise ValueError(f"slow_clock_period_us={slow_clock_period_us!r}: expected None or a positive "
                         "int (µs between leak ticks, usually the time step)")

    model, converted, refused = convert_sinabs(model)
    legal = legalize(extract_graph(model, shape), dvs=dvs is not False)
    report = FitReport(spec.name, converted + legal.notes, refused + legal.violations)
    for plan in legal.cores.values():
        report.violations += check_core(plan.name, plan, spec.limits)
        if plan.bias is not None and slow_clock_period_us is None:
            report.violations.append(Violation(
                plan.name, "a bias is added on slow-clock ticks; without the slow clock it does nothing",
                "slow_clock_period_us=None", "pass slow_clock_period_us=<time step in µs> (CLI: "
                "--slow-clock-us), or train without bias (bias=False, no BatchNorm)"))
    if legal.dvs is not None:
        report.violations += _check_dvs(legal.dvs, spec, dvs if isinstance(dvs, DVSConfig) else None)
    readout_core = None
    if readout is not False:
        readout_core, problems = _readout_source(legal, spec, slow_clock_period_us, report)
        report.violations += problems
    names = display_names(legal.cores)
    report.layers = {names[key]: list(plan.layer_names) for key, plan in legal.cores.items()}
    core_of_name = {n: key for key, plan in legal.cores.items() for n in plan.layer_names}
    core_of_name.update({name: key for key, name in names.items() if name not in core_of_name})
    pinned = _resolve(layer2core or {}, core_of_name, "layer2core", report)
    monitored = _monitored(monitor, legal, core_of_name, report)
    infos = {k: (MemoryNeed.of(p.weights.shape, p.output_shape, p.bias is not None),
                 p.weights.shape, p.output_shape, p.bias is not None) for k, p in legal.cores.items()}
    assignment, problems = allocate(infos, spec, pinned)
    report.violations += problems
    if report.violations:
        raise MappingError(report)

    cores = {}
    for key, plan in legal.cores.items():
        q = quantize_core(plan)
        report.quantization.append(replace(q.row, layer=names[key]))
        report.transformations += q.notes
        cid = assignment[key]
        cores[cid] = CoreConfig(
            weights=q.weights, input_shape=plan.input_shape, threshold_high=q.threshold_high,
            threshold_low=q.threshold_low, stride=plan.stride, padding=plan.padding, reset=plan.reset,
            bias=q.bias, leak_enable=q.bias is not None,
            destinations=[Destination(assignment[r.layer], r.pooling) for r in plan.destinations]
            + ([Destination(READOUT_LAYER_ID)] if key == readout_core else []),
            monitor=key in monitored, layer_names=plan.layer_names, scale=q.row.scale)
        report.memory.append(CoreUsage(cid, names[key], infos[key][0], spec.cores[cid]))
    report.memory.sort(key=lambda u: u.core)
    config = ChipConfig(spec.name, dict(sorted(cores.items())),
                        _dvs_config(legal.dvs, dvs, assignment), slow_clock_period_us,
                        readout=_readout_config(readout, spec))
    config = ChipConfig.from_json(config.to_json(), chip=spec)  # verify what we emit
    return MappingResult(config, report, [assignment[r.layer] for r in legal.entries])


def _readout_source(legal: LegalNetwork, spec: ChipSpec, period, report: FitReport):
    """The key of the core that feeds the readout and the problems found; spreads its
    channels to the chip's readout stride (the erratum), with a note."""
    exits = [key for key, plan in legal.cores.items() if plan.exit]
    if spec.readout_stride is None:
        return None, [Violation("readout", f"{spec.name} has no readout layer", "readout=True",
                                "map with readout=False (speck2e and speck2f have one)")]
    if len(exits) != 1:
        return None, [Violation("readout", "one output layer feeds the readout", f"{len(exits)} output layers",
                                "map with readout=False, or give the model one output layer")]
    plan, problems = legal.cores[exits[0]], []
    f, h, w = plan.output_shape
    if (h, w) != (1, 1) or f > READOUT_CLASSES:
        problems.append(Violation(plan.name, f"the readout takes a 1x1 output of at most {READOUT_CLASSES} classes",
                                  f"{f}x{h}x{w}", "end the model with a Linear layer of <= 15 outputs"))
    if period is None:
        problems.append(Violation("readout", "the readout's moving average ticks with the slow clock",
                                  "slow_clock_period_us=None", "pass slow_clock_period_us (CLI: --slow-clock-us)"))
    stride = spec.readout_stride
    if not problems and stride != 1:
        spread = np.zeros((stride * (f - 1) + 1, *plan.weights.shape[1:]))
        spread[::stride] = plan.weights
        plan.weights = spread
        if plan.bias is not None:
            bias = np.zeros(len(spread))
            bias[::stride] = plan.bias
            plan.bias = bias
        report.transformations.append(Note(plan.name, f"readout erratum of {spec.name}: output channel k-1 moved "
                                                      f"to channel {stride}(k-1), read as class k"))
    return exits[0], problems


def _readout_config(readout, spec: ChipSpec) -> Readout | None:
    if readout is False:
        return None
    base = readout if isinstance(readout, Readout) else Readout()
    return Readout(base.threshold, base.average, spec.readout_stride)


def _check_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape != tuple(input_shape):
        raise ValueError(f"input_shape={input_shape!r}: expected (channels, height, width), 3 positive ints")
    return shape


def _resolve(names: dict, core_of_name: dict, arg: str, report: FitReport) -> dict[str, int]:
    out = {}
    for name, core in names.items():
        if name not in core_of_name:
            report.violations.append(Violation(str(name), f"{arg} names no layer of the model", name,
                                               f"use one of {sorted(core_of_name)}"))
        elif not isinstance(core, int) or isinstance(core, bool):
            report.violations.append(Violation(name, f"{arg} values must be core ids", core, "use an int"))
        else:
            out[core_of_name[name]] = core
    return out


def _monitored(monitor, legal: LegalNetwork, core_of_name: dict, report: FitReport) -> set[str]:
    if monitor is None:
        return {k for k, p in legal.cores.items() if p.exit}
    if monitor == "all":
        return set(legal.cores)
    return set(_resolve({m: 0 for m in monitor}, core_of_name, "monitor", report))


def _check_dvs(dvs: DVSPlan, spec: ChipSpec, template: DVSConfig | None) -> list[Violation]:
    out = []
    c, h, w = dvs.input_shape
    if spec.dvs_size is None:
        return [Violation("input", f"{spec.name} has no DVS stage", "dvs=True", "map with dvs=False")]
    if c not in (1, 2):
        out.append(Violation("input", "DVS input has 1 or 2 polarity channels", c, "use 1 or 2 input channels"))
    sh, sw = _sensor_size(dvs, template)
    if sh > spec.dvs_size[0] or sw > spec.dvs_size[1]:
        out.append(Violation("input", f"DVS input must be <= {spec.dvs_size[0]}x{spec.dvs_size[1]}",
                             f"{sh}x{sw}", "crop the events to the sensor size"))
    if template is not None:
        (oy, ox), (cy, cx) = _window(dvs, template)
        py, px = dvs.pooling
        if (cy + 1) * py > sh or (cx + 1) * px > sw:
            out.append(Violation("input", f"the model's input window must lie on the {sh}x{sw} sensor",
                                 f"origin ({oy}, {ox}) + {h}x{w} input",
                                 "lower the DVS origin or use a smaller model input"))
        if template.mirror_diagonal and cy - oy != cx - ox:
            out.append(Violation("input", "mirror_diagonal swaps height and width of the DVS window",
                                 f"{cy - oy + 1}x{cx - ox + 1} window", "use a square input window"))
    for p in dvs.pooling:
        if p not in spec.limits.poolings:
            out.append(Violation("input", f"DVS pooling must be one of {spec.limits.poolings}", dvs.pooling,
                                 "use input pooling 1, 2 or 4 per axis"))
            break
    if len(dvs.destinations) > spec.limits.max_destinations:
        out.append(Violation("input", f"the DVS stage feeds at most {spec.limits.max_destinations} cores",
                             len(dvs.destinations), "feed fewer layers from the input"))
    return out


def _sensor_size(plan: DVSPlan, template: DVSConfig | None) -> tuple[int, int]:
    """``(h, w)`` of the sensor: the template's input size, else the model input's."""
    return tuple((template.input_shape if template is not None else plan.input_shape)[1:])


def _window(plan: DVSPlan, template: DVSConfig | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(origin, cut)`` of the model's input window in post-pooling sensor pixels: the
    template's origin plus the model's crop, as large as the model's pooled, cropped input."""
    _, h, w = plan.input_shape
    top, bottom, left, right = plan.crop
    oy, ox = template.origin if template is not None else (0, 0)
    origin = (oy + top, ox + left)
    return origin, (origin[0] + h // plan.pooling[0] - top - bottom - 1,
                    origin[1] + w // plan.pooling[1] - left - right - 1)


def _dvs_config(plan: DVSPlan | None, template, assignment: dict[str, int]) -> DVSConfig | None:
    if plan is None:
        return None
    template = template if isinstance(template, DVSConfig) else None
    base = template or DVSConfig()
    origin, cut = _window(plan, template)
    return DVSConfig(
        input_shape=(2, *_sensor_size(plan, template)), merge_polarities=plan.input_shape[0] == 1,
        on_channel=base.on_channel, off_channel=base.off_channel, pooling=plan.pooling,
        origin=origin, cut=cut, mirror_x=base.mirror_x, mirror_y=base.mirror_y,
        mirror_diagonal=base.mirror_diagonal,
        destinations=[Destination(assignment[r.layer]) for r in plan.destinations],
        monitor=base.monitor)
