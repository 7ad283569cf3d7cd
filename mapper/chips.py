"""Chip specs as data: cores with their memories, and the per-layer hardware limits.

Built-in: ``speck2e`` and ``speck2f`` (``docs/chip-model.md``: "Cores and memory", "Per-layer limits"). Other boards
that speak the spikeflash wire protocol are described by a JSON file (see
:func:`load_chip_spec`) and passed to :func:`get_chip` by path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from snnlib import DVS_LAYER_ID

from mapper.errors import ChipSpecError

KI = 1024


@dataclass(frozen=True)
class CoreSpec:
    """Memory of one core, in words: kernel (8-bit weights), neuron (16-bit states), bias."""

    kernel_words: int
    neuron_words: int
    bias_words: int


@dataclass(frozen=True)
class Limits:
    """Per-layer hardware rules (``docs/chip-model.md``, "Per-layer limits"). Sizes are ``(height, width)``."""

    max_kernel_size: int = 16
    strides: tuple[int, ...] = (1, 2, 4, 8)
    max_padding: int = 7
    poolings: tuple[int, ...] = (1, 2, 4)
    max_channels: int = 1024
    max_input_size: tuple[int, int] = (128, 128)
    max_output_size: tuple[int, int] = (64, 64)
    max_destinations: int = 2


@dataclass(frozen=True)
class ChipSpec:
    """One chip: ``cores`` (core id -> :class:`CoreSpec`), ``limits``, the DVS sensor size
    ``(height, width)`` (None: the chip has no DVS stage), and its readout layer's channel
    stride (4 on Speck 2e/2f, whose class k reads channel 4(k-1); None: no readout layer)."""

    name: str
    cores: dict[int, CoreSpec]
    limits: Limits = field(default_factory=Limits)
    dvs_size: tuple[int, int] | None = (128, 128)
    readout_stride: int | None = None

    def to_json(self) -> str:
        """This spec in the file format :func:`load_chip_spec` reads."""
        data = asdict(self)
        data["cores"] = {str(k): v for k, v in data["cores"].items()}
        return json.dumps(data, sort_keys=True, indent=1)


def _speck(name: str) -> ChipSpec:
    kernel = [16, 16, 16, 32, 32, 64, 64, 16, 16]
    neuron = [64, 64, 64, 32, 32, 16, 16, 16, 16]
    return ChipSpec(
        name,
        {i: CoreSpec(k * KI, n * KI, KI) for i, (k, n) in enumerate(zip(kernel, neuron))},
        readout_stride=4,
    )


CHIPS: dict[str, ChipSpec] = {name: _speck(name) for name in ("speck2e", "speck2f")}


def list_chips() -> list[str]:
    """Names of the built-in chips, sorted."""
    return sorted(CHIPS)


def get_chip(name_or_path: str | Path | ChipSpec) -> ChipSpec:
    """The spec of a built-in chip by name, or a user-defined spec from a JSON file path.

    Raises :class:`ChipSpecError` naming the argument and the available chips.
    """
    if isinstance(name_or_path, ChipSpec):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in CHIPS:
        return CHIPS[name_or_path]
    if isinstance(name_or_path, (str, Path)) and Path(name_or_path).is_file():
        return load_chip_spec(name_or_path)
    raise ChipSpecError(
        f"chip={name_or_path!r}: not a built-in chip nor a chip spec file; expected one of "
        f"{list_chips()} or the path of a JSON chip spec"
    )


def load_chip_spec(path: str | Path) -> ChipSpec:
    """Read a user-defined chip spec. Format (``limits``, ``dvs_size`` and ``readout_stride``
    optional; no readout layer by default)::

        {"name": "myboard",
         "cores": {"0": {"kernel_words": 16384, "neuron_words": 65536, "bias_words": 1024}},
         "limits": {"max_kernel_size": 16, ...}, "dvs_size": [128, 128], "readout_stride": 4}
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ChipSpecError(f"{where}: cannot read a JSON chip spec: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ChipSpecError(f"{where}: expected an object with a string 'name'")
    cores_data = data.get("cores")
    if not isinstance(cores_data, dict) or not cores_data:
        raise ChipSpecError(f"{where}: 'cores' must be a non-empty object core id -> memories")
    cores = {}
    for key, mem in cores_data.items():
        if not key.isdigit() or int(key) == DVS_LAYER_ID:
            raise ChipSpecError(
                f"{where}: cores.{key}: core ids must be integers other than {DVS_LAYER_ID} (the DVS id)"
            )
        try:
            cores[int(key)] = CoreSpec(**{k: _nonneg_int(f"cores.{key}.{k}", v) for k, v in mem.items()})
        except TypeError as exc:
            raise ChipSpecError(
                f"{where}: cores.{key}: expected kernel_words, neuron_words, bias_words ({exc})"
            ) from exc
    try:
        limits = Limits(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.get("limits", {}).items()})
    except TypeError as exc:
        raise ChipSpecError(f"{where}: limits: unknown field ({exc}); known: {list(asdict(Limits()))}") from exc
    dvs = data.get("dvs_size", [128, 128])
    stride = data.get("readout_stride")
    if stride not in (None, 1, 4):
        raise ChipSpecError(f"{where}: readout_stride = {stride!r}: expected 1, 4 or null (no readout layer)")
    return ChipSpec(data["name"], dict(sorted(cores.items())), limits, tuple(dvs) if dvs else None, stride)


def _nonneg_int(path: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ChipSpecError(f"{path} = {value!r}: expected a non-negative integer number of words")
    return value
