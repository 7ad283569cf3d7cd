"""ChipConfig: the plain-data, versioned chip configuration that the backend flashes.

A :class:`ChipConfig` is what :func:`mapper.map_model` produces: one :class:`CoreConfig` per
used core (the fields of :class:`snnlib.CoreLayer`, destinations naming core ids, plus the
model layer names it came from and its quantization scale), an optional :class:`DVSConfig`,
and the slow-clock period. It is saved as canonical JSON (sorted keys, exact round trip) and
validated on load and before every flash by :meth:`ChipConfig.validate`: the network rules of
:meth:`snnlib.IntegerNetwork.problems` plus the chip spec's; a :class:`ConfigError` lists every
problem with its field path, e.g. ``cores[3].threshold_low``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snnlib import DVS_LAYER_ID, READOUT_LAYER_ID, CoreLayer, Destination, DVSInput, IntegerNetwork, Readout
from snnlib.network import Problem

from mapper.chips import ChipSpec, get_chip
from mapper.checks import check_core
from mapper.errors import ChipSpecError, ConfigError
from mapper.memory import MemoryNeed
from mapper.names import display_names

#: Format version of the JSON written by :meth:`ChipConfig.to_json`; checked on load.
CONFIG_VERSION = 1


@dataclass(eq=False)
class CoreConfig(CoreLayer):
    """One core: a :class:`snnlib.CoreLayer` whose destinations name core ids.

    ``layer_names``: the model layers merged into this core (conv, spiking, ...), the last
    one being the spiking layer whose spikes the core emits. ``scale``: the quantization
    factor (integer value = round(model value * scale); 1.0 when built from integers).
    """

    layer_names: list[str] = field(default_factory=list)
    scale: float = 1.0

    def to_core_layer(self) -> CoreLayer:
        """The plain :class:`snnlib.CoreLayer` (a copy without the mapper's extra fields)."""
        return CoreLayer(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CoreLayer)})


@dataclass(eq=False)
class DVSConfig(DVSInput):
    """The DVS pre-processing stage (:class:`snnlib.DVSInput`); destinations name core ids."""


@dataclass(eq=False)
class ChipConfig:
    """A whole chip configuration (see the module docstring). Equality = equal JSON.
    ``readout``: the readout layer (:class:`snnlib.Readout`, Speck 2e/2f), fed by the core
    with a destination :data:`snnlib.READOUT_LAYER_ID`; absent from files without one."""

    chip: str
    cores: dict[int, CoreConfig]
    dvs: DVSConfig | None = None
    slow_clock_period_us: int | None = None
    version: int = CONFIG_VERSION
    readout: Readout | None = None

    def __eq__(self, other) -> bool:
        return isinstance(other, ChipConfig) and self.to_json() == other.to_json()

    # --- conversions -------------------------------------------------------------------
    def to_network(self) -> IntegerNetwork:
        """The event-exact network description: layer ids = core ids, DVS under
        :data:`snnlib.DVS_LAYER_ID`."""
        dvs = None
        if self.dvs is not None:
            dvs = DVSInput(**{f.name: getattr(self.dvs, f.name) for f in dataclasses.fields(DVSInput)})
        layers = {cid: core.to_core_layer() for cid, core in sorted(self.cores.items())}
        readout = None if self.readout is None else Readout(**dataclasses.asdict(self.readout))
        return IntegerNetwork(layers, dvs, self.slow_clock_period_us, readout)

    @classmethod
    def from_network(cls, network: IntegerNetwork, chip: str | ChipSpec = "speck2f") -> "ChipConfig":
        """Wrap an :class:`snnlib.IntegerNetwork` whose layer ids are core ids of ``chip``;
        validated like a loaded file (raises :class:`ConfigError`)."""
        if not isinstance(network, IntegerNetwork):
            raise TypeError(f"from_network(network): expected an snnlib.IntegerNetwork, got "
                            f"{type(network).__name__}")
        spec = get_chip(chip)
        cores = {cid: CoreConfig(**{f.name: getattr(layer, f.name)
                                    for f in dataclasses.fields(CoreLayer)})
                 for cid, layer in network.layers.items()}
        dvs = None
        if network.dvs is not None:
            dvs = DVSConfig(**{f.name: getattr(network.dvs, f.name) for f in dataclasses.fields(DVSInput)})
        readout = None if network.readout is None else Readout(**dataclasses.asdict(network.readout))
        config = cls(spec.name, cores, dvs, network.slow_clock_period_us, readout=readout).validate(spec)
        return cls.from_json(config.to_json(), chip=spec)  # a copy, in the chip's integer widths

    def layer_display_names(self) -> dict[int, str]:
        """Core id -> the layer's display name (the model's conv / linear name, or a derived
        ``conv1``-style name, as in the fit report; :mod:`mapper.names`) for every core; the
        DVS stage, when configured, under :data:`snnlib.DVS_LAYER_ID` as ``"dvs"``."""
        names = display_names(dict(sorted(self.cores.items())))
        if self.dvs is not None:
            names[DVS_LAYER_ID] = "dvs"
        if self.readout is not None:
            names[READOUT_LAYER_ID] = "readout"
        return names

    def monitored_layer_names(self) -> dict[int, str]:
        """:meth:`layer_display_names` of the monitored cores (and the DVS stage if monitored)."""
        monitored = {cid for cid, core in self.cores.items() if core.monitor}
        if self.dvs is not None and self.dvs.monitor:
            monitored.add(DVS_LAYER_ID)
        if self.readout is not None:  # its events are always reported
            monitored.add(READOUT_LAYER_ID)
        return {lid: name for lid, name in self.layer_display_names().items() if lid in monitored}

    # --- validation ----------------------------------------------------------------------
    def problems(self, chip: str | ChipSpec | None = None) -> list[Problem]:
        """Every problem of this config, each with its field path (``cores[3].weights``,
        ``dvs.cut``): the network's (:meth:`snnlib.IntegerNetwork.problems`), then the rules
        of the chip spec (``chip``, default: :attr:`chip`) for the cores the network rules
        passed."""
        try:
            spec = get_chip(chip if chip is not None else self.chip)
        except ChipSpecError as exc:
            return [Problem("chip", str(exc))]
        found = self.to_network().problems("cores")
        paths = {p.path for p in found}
        broken = {cid for cid in self.cores
                  if any(p == f"cores[{cid}]" or p.startswith(f"cores[{cid}].") for p in paths)}
        return found + [p for p in chip_problems(self, spec, skip=broken) if p.path not in paths]

    def validate(self, chip: str | ChipSpec | None = None) -> "ChipConfig":
        """Return ``self`` if :meth:`problems` finds none; else raise :class:`ConfigError`
        listing them all. Every device's ``flash`` calls this before writing."""
        found = self.problems(chip)
        if found:
            raise ConfigError(found)
        return self

    # --- JSON ----------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON (sorted keys, compact); :meth:`from_json` reads it back exactly."""
        data = {
            "chip": self.chip,
            "version": self.version,
            "slow_clock_period_us": self.slow_clock_period_us,
            "cores": {str(cid): _core_to_dict(c) for cid, c in self.cores.items()},
            "dvs": None if self.dvs is None else _dvs_to_dict(self.dvs),
        }
        if self.readout is not None:
            data["readout"] = dataclasses.asdict(self.readout)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, chip: str | ChipSpec | None = None) -> "ChipConfig":
        """Parse and validate against the chip spec (``chip``, default: the file's own chip
        name). Raises :class:`ConfigError` naming the field path."""
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ConfigError("<json>", f"not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ConfigError("<json>", "nested too deeply; a configuration is a few levels deep") from exc
        r = _Reader(data, "")
        readout = data.pop("readout", None) if isinstance(data, dict) else None
        r.keys({"chip", "version", "slow_clock_period_us", "cores", "dvs"})
        version = r.int("version")
        if version != CONFIG_VERSION:
            raise ConfigError("version", f"{version}; this spikeflash reads format version "
                                         f"{CONFIG_VERSION} (re-map the model to regenerate it)")
        chip_name = r.str("chip")
        cores_data = r.get("cores")
        if not isinstance(cores_data, dict) or not all(key.isdigit() and key == str(int(key)) for key in cores_data):
            raise ConfigError("cores", "expected an object core id (a decimal string without leading "
                                       f"zeros) -> core; got keys {sorted(cores_data)[:8] if isinstance(cores_data, dict) else cores_data!r}")
        cores = {int(key): _core_from(_Reader(cores_data[key], f"cores[{key}]"))
                 for key in sorted(cores_data, key=lambda k: (len(k), k))}
        dvs = None if r.get("dvs") is None else _dvs_from(_Reader(r.get("dvs"), "dvs"))
        period = r.get("slow_clock_period_us")
        if period is not None:
            period = r.int("slow_clock_period_us")
        if readout is not None:
            rr = _Reader(readout, "readout")
            rr.keys({"threshold", "average", "channel_stride"})
            readout = Readout(rr.int("threshold"), rr.int("average"), rr.int("channel_stride"))
        config = cls(chip_name, cores, dvs, period, version, readout).validate(chip)
        for core in config.cores.values():  # in range now: store the chip's integer widths
            core.weights = core.weights.astype(np.int8)
            for name in ("bias", "initial_state"):
                if getattr(core, name) is not None:
                    setattr(core, name, getattr(core, name).astype(np.int16))
        return config

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``; a file the system refuses raises :class:`ConfigError`."""
        from snnlib.atomic_file import atomic_path

        try:
            with atomic_path(path) as temporary:  # complete or untouched, never truncated
                temporary.write_text(self.to_json(), encoding="utf-8")
        except OSError as exc:
            raise ConfigError("<file>", f"cannot write {path}: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> "ChipConfig":
        """Read and validate a file written by :meth:`save` (or by hand)."""
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError("<file>", f"cannot read {path}: {exc}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError("<file>", f"{path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                                        "a configuration is the JSON `spikeflash map` writes") from exc
        return cls.from_json(text)

    def digest(self) -> str:
        """sha256 hex digest of :meth:`to_json` (identifies what was flashed)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def core_name(cid: int, core: CoreConfig) -> str:
    """The model layer name a core reports its spikes as (``core<i>`` when unnamed)."""
    return core.layer_names[-1] if core.layer_names else f"core{cid}"


def chip_problems(config: ChipConfig, spec: ChipSpec, skip: set[int] = frozenset()) -> list[Problem]:
    """The rules of ``spec`` that a valid integer network can still break: core ids, the
    per-layer limits (:func:`mapper.checks.check_core`), memory, the DVS sensor. Cores in
    ``skip`` (invalid as a network) are not checked."""
    found = []
    for cid, core in config.cores.items():
        where = f"cores[{cid}]"
        if cid not in spec.cores:
            found.append(Problem(where, f"{spec.name} has no core {cid}; its cores are {sorted(spec.cores)}"))
            continue
        if cid in skip:
            continue
        found += [Problem(f"{where}.{v.field}", f"{v.rule} (got {v.value}); fix: {v.fix}")
                  for v in check_core(core_name(cid, core), core, spec.limits)]
        need = MemoryNeed.of(core.weights.shape, core.output_shape, core.bias is not None)
        if not need.fits(spec.cores[cid]):
            have = spec.cores[cid]
            found.append(Problem(where, (
                f"needs {need.kernel}/{need.neuron}/{need.bias} kernel/neuron/bias words but core {cid} "
                f"has {have.kernel_words}/{have.neuron_words}/{have.bias_words}; move it to a larger core")))
        if core.threshold_low == 0:
            found.append(Problem(f"{where}.threshold_low", "0 hits a hardware bug (docs/chip-model.md, limit 8); use -1"))
    if config.readout is not None and spec.readout_stride is None:
        found.append(Problem("readout", f"{spec.name} has no readout layer; remove it"))
    elif config.readout is not None and config.readout.channel_stride != spec.readout_stride:
        found.append(Problem("readout.channel_stride", (
            f"{config.readout.channel_stride}; {spec.name}'s readout reads class k from channel "
            f"{spec.readout_stride}(k-1): use {spec.readout_stride}")))
    dvs = config.dvs
    if dvs is not None and spec.dvs_size is None:
        found.append(Problem("dvs", f"{spec.name} has no DVS stage; remove it"))
    elif dvs is not None:
        _, h, w = dvs.input_shape
        if h > spec.dvs_size[0] or w > spec.dvs_size[1]:
            found.append(Problem("dvs.input_shape", f"{h}x{w} is larger than the {spec.dvs_size[0]}x"
                                                    f"{spec.dvs_size[1]} sensor of {spec.name}"))
        if any(p not in spec.limits.poolings for p in dvs.pooling):
            found.append(Problem("dvs.pooling", f"{tuple(dvs.pooling)}; each must be one of "
                                                f"{spec.limits.poolings}"))
        if len(dvs.destinations) > spec.limits.max_destinations:
            found.append(Problem("dvs.destinations", f"{len(dvs.destinations)} destinations; at most "
                                                     f"{spec.limits.max_destinations}"))
    return found


# --- (de)serialisation helpers ---------------------------------------------------------
def _dest_to_dict(d: Destination) -> dict:
    return {"layer": d.layer, "pooling": d.pooling, "feature_shift": d.feature_shift}


def _core_to_dict(c: CoreConfig) -> dict:
    return {
        "weights": np.asarray(c.weights).tolist(),
        "input_shape": list(c.input_shape),
        "threshold_high": int(c.threshold_high),
        "threshold_low": int(c.threshold_low),
        "stride": list(c.stride),
        "padding": list(c.padding),
        "reset": c.reset,
        "bias": None if c.bias is None else np.asarray(c.bias).tolist(),
        "leak_enable": bool(c.leak_enable),
        "initial_state": None if c.initial_state is None else np.asarray(c.initial_state).tolist(),
        "destinations": [_dest_to_dict(d) for d in c.destinations],
        "monitor": bool(c.monitor),
        "layer_names": list(c.layer_names),
        "scale": float(c.scale),
    }


def _dvs_to_dict(d: DVSConfig) -> dict:
    return {
        "input_shape": list(d.input_shape),
        "merge_polarities": d.merge_polarities,
        "on_channel": d.on_channel,
        "off_channel": d.off_channel,
        "pooling": list(d.pooling),
        "origin": list(d.origin),
        "cut": None if d.cut is None else list(d.cut),
        "mirror_x": d.mirror_x,
        "mirror_y": d.mirror_y,
        "mirror_diagonal": d.mirror_diagonal,
        "destinations": [_dest_to_dict(x) for x in d.destinations],
        "monitor": d.monitor,
    }


class _Reader:
    """Typed access to one JSON object, raising ConfigError with the field path. It checks
    only JSON types; value rules are :meth:`ChipConfig.problems`' (one validator)."""

    def __init__(self, data, path: str):
        if not isinstance(data, dict):
            raise ConfigError(path or "<root>", f"expected an object, got {type(data).__name__}")
        self.data, self.path = data, path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def keys(self, expected: set[str]) -> None:
        for k in self.data:
            if k not in expected:
                raise ConfigError(self.at(k), f"unknown field; expected fields: {sorted(expected)}")
        for k in sorted(expected - set(self.data)):
            raise ConfigError(self.at(k), "missing field")

    def get(self, key: str):
        return self.data[key]

    def int(self, key: str) -> int:
        return _as_int(self.data[key], self.at(key))

    def str(self, key: str) -> str:
        v = self.data[key]
        if not isinstance(v, str):
            raise ConfigError(self.at(key), f"{v!r}; expected a string")
        return v

    def bool(self, key: str) -> bool:
        v = self.data[key]
        if not isinstance(v, bool):
            raise ConfigError(self.at(key), f"{v!r}; expected true or false")
        return v

    def ints(self, key: str, n: int = 2) -> tuple[int, ...]:
        v = self.data[key]
        if not isinstance(v, list) or len(v) != n:
            raise ConfigError(self.at(key), f"{v!r}; expected a list of {n} integers")
        return tuple(_as_int(x, f"{self.at(key)}[{i}]") for i, x in enumerate(v))

    def array(self, key: str, ndim: int) -> np.ndarray:
        """A rectangular ``ndim``-d list of integers as int64 (ranges are checked later)."""
        v = self.data[key]
        try:
            a = np.array(v)
        except ValueError:
            a = None
        if a is None or a.ndim != ndim or (a.size and a.dtype.kind not in "iu"):
            raise ConfigError(self.at(key), f"expected a rectangular {ndim}-d list of integers")
        return a.astype(np.int64)

    def destinations(self, key: str) -> list[Destination]:
        v = self.data[key]
        if not isinstance(v, list):
            raise ConfigError(self.at(key), "expected a list of destinations")
        out = []
        for i, d in enumerate(v):
            r = _Reader(d, f"{self.at(key)}[{i}]")
            r.keys({"layer", "pooling", "feature_shift"})
            out.append(Destination(r.int("layer"), r.int("pooling"), r.int("feature_shift")))
        return out


def _as_int(v, path: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ConfigError(path, f"{v!r}; expected an integer")
    return v


def _core_from(r: _Reader) -> CoreConfig:
    r.keys({"weights", "input_shape", "threshold_high", "threshold_low", "stride", "padding",
            "reset", "bias", "leak_enable", "initial_state", "destinations", "monitor",
            "layer_names", "scale"})
    names = r.get("layer_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(r.at("layer_names"), f"{names!r}; expected a list of strings")
    scale = r.get("scale")
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
        raise ConfigError(r.at("scale"), f"{scale!r}; expected a positive number")
    return CoreConfig(
        weights=r.array("weights", 4),
        input_shape=r.ints("input_shape", 3),
        threshold_high=r.int("threshold_high"),
        threshold_low=r.int("threshold_low"),
        stride=r.ints("stride"),
        padding=r.ints("padding"),
        reset=r.str("reset"),
        bias=None if r.get("bias") is None else r.array("bias", 1),
        leak_enable=r.bool("leak_enable"),
        initial_state=None if r.get("initial_state") is None else r.array("initial_state", 3),
        destinations=r.destinations("destinations"),
        monitor=r.bool("monitor"),
        layer_names=list(names),
        scale=float(scale),
    )


def _dvs_from(r: _Reader) -> DVSConfig:
    r.keys({"input_shape", "merge_polarities", "on_channel", "off_channel", "pooling", "origin",
            "cut", "mirror_x", "mirror_y", "mirror_diagonal", "destinations", "monitor"})
    return DVSConfig(
        input_shape=r.ints("input_shape", 3),
        merge_polarities=r.bool("merge_polarities"),
        on_channel=r.bool("on_channel"),
        off_channel=r.bool("off_channel"),
        pooling=r.ints("pooling"),
        origin=r.ints("origin"),
        cut=None if r.get("cut") is None else r.ints("cut"),
        mirror_x=r.bool("mirror_x"),
        mirror_y=r.bool("mirror_y"),
        mirror_diagonal=r.bool("mirror_diagonal"),
        destinations=r.destinations("destinations"),
        monitor=r.bool("monitor"),
    )


def _no_constant(name: str):
    """JSON's non-standard ``NaN`` / ``Infinity``: no configuration value may be one."""
    raise ConfigError("<json>", f"{name} is not a finite number; every value must be finite")
