"""Event files: save and load event arrays, and convert to and from (x, y, t, p) arrays.

Our event arrays use :data:`snnlib.EVENT_DTYPE` (``t`` in µs, ``layer``, ``channel``, ``y``,
``x``). On disk:

- ``.npy``: one event array, or a Tonic sample (an (x, y, t, p) array, read as DVS input).
- ``.npz``: several named arrays (e.g. one per layer, or (x, y, t, p) arrays) plus a JSON
  metadata dict (e.g. ``{"dt_us": 1000}``), stored under the key :data:`METADATA_KEY`.
- ``.aedat4``: a DV / SynSense recording (:mod:`backend.files.aedat4`), read as DVS input
  with its absolute timestamps; metadata ``{"sensor_size": [height, width]}``.

Tonic, specksim and other event-camera tools use structured arrays with the fields
``x, y, t, p`` in that order (specksim crashes on any other order, sinabs#263).
:func:`events_to_xytp` and :func:`xytp_to_events` convert, keeping absolute time in µs and
refusing any value the target type cannot hold.

Every function validates its input and raises :class:`EventFileError` naming the array, the
field, the offending value or index, and the expected form.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import numpy as np

from snnlib.events import EVENT_DTYPE, InvalidEventsError, check_events
from snnlib.network import DVS_LAYER_ID

#: The (x, y, t, p) layout used by Tonic; ``t`` in µs, ``p`` polarity or channel.
XYTP_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i2")])
XYTP_FIELDS = ("x", "y", "t", "p")
#: Key of the JSON metadata entry inside an ``.npz`` event file.
METADATA_KEY = "__metadata__"
DEFAULT_ARRAY_NAME = "events"
_ARRAY_NAME = re.compile(r"^[A-Za-z0-9_]+$")

PathLike = Union[str, Path]


class EventFileError(InvalidEventsError):
    """An event array or event file does not have the expected form (``field`` names the field).

    Example scenarios:
      - a path that does not exist or is not a readable ``.npy``/``.npz`` file
      - an ``.npz`` file with several arrays and no ``name`` chosen, or an unknown dtype
    """


@dataclass
class EventFile:
    """The contents of an event file: named event arrays and a metadata dict."""

    arrays: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)


def events_to_xytp(events: np.ndarray, dtype=XYTP_DTYPE) -> np.ndarray:
    """Convert events of one layer to an (x, y, t, p) structured array; ``p`` = channel.

    ``dtype``: the target structured dtype, fields exactly ``x, y, t, p`` in that order with
    integer (or, for ``p``, bool) types, e.g. specksim's all-``uint32`` layout. Time stays
    absolute (µs). Raises :class:`EventFileError` if the events span several layers (the
    layer would be lost) or a value does not fit the target type.
    """
    _check_event_array(events, "events")
    dtype = _check_xytp_dtype(dtype)
    layers = np.unique(events["layer"])
    if len(layers) > 1:
        raise EventFileError(
            f"events: holds layers {layers.tolist()}; (x, y, t, p) has no layer field, so convert "
            "one layer at a time, e.g. events_to_xytp(events[events['layer'] == "
            f"{int(layers[0])}])"
        )
    out = np.empty(len(events), dtype=dtype)
    sources = {"x": "x", "y": "y", "t": "t", "p": "channel"}
    for target, source in sources.items():
        out[target] = _fit(events[source], dtype[target], f"events['{source}']")
    return out


#: the most entries one array of an event file may hold (checked from its header)
MAX_FILE_EVENTS = 1 << 28


def xytp_to_events(xytp: np.ndarray, layer: int = DVS_LAYER_ID) -> np.ndarray:
    """Convert an (x, y, t, p) structured array (e.g. from Tonic) to an event array.

    Fields are taken by name (any field order is read; extra fields are ignored). ``p``
    becomes ``channel`` (bool polarity -> 0 / 1). ``layer``: the layer every event enters,
    by default the DVS input (:data:`snnlib.DVS_LAYER_ID`). ``t`` (µs) must be
    non-decreasing.
    """
    if not isinstance(xytp, np.ndarray) or xytp.dtype.names is None:
        raise EventFileError(
            f"xytp: got {type(xytp).__name__}"
            + (f" of dtype {xytp.dtype}" if isinstance(xytp, np.ndarray) else "")
            + "; expected a numpy structured array with fields x, y, t, p "
            f"(e.g. dtype {XYTP_DTYPE})"
        )
    if xytp.ndim != 1:
        raise EventFileError(f"xytp: shape {xytp.shape}; expected a 1-D structured array")
    for name in XYTP_FIELDS:
        if name not in xytp.dtype.names:
            raise EventFileError(
                f"xytp: has no field '{name}' (fields: {list(xytp.dtype.names)}); expected "
                f"fields x, y, t, p, e.g. dtype {XYTP_DTYPE}"
            )
        kind = xytp.dtype[name].kind
        if kind not in "iub":
            raise EventFileError(
                f"xytp: field '{name}' has dtype {xytp.dtype[name]}; expected an integer dtype "
                f"(as in {XYTP_DTYPE}); round or scale the values first"
            )
    top = np.iinfo(EVENT_DTYPE["layer"]).max
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= top:
        raise EventFileError(
            f"layer={layer!r}: expected a layer id, an int in [0, {top}] (the DVS input is "
            f"{DVS_LAYER_ID})", "layer", layer
        )
    bad = np.flatnonzero((xytp["p"] != 0) & (xytp["p"] != 1)) if layer == DVS_LAYER_ID else ()
    if len(bad):
        i = int(bad[0])
        raise EventFileError(f"xytp[{i}]['p'] = {xytp['p'][i]}: a polarity is 0 (off) or 1 (on); "
                             "map -1/+1 polarities with p = (p > 0)", "p", int(xytp["p"][i]))
    events = np.empty(len(xytp), dtype=EVENT_DTYPE)
    events["layer"] = layer
    for target, source in {"t": "t", "channel": "p", "y": "y", "x": "x"}.items():
        events[target] = _fit(xytp[source], EVENT_DTYPE[target], f"xytp['{source}']")
    return _check_event_array(events, "xytp")


def save_events(
    path: PathLike,
    events: Union[np.ndarray, Mapping[str, np.ndarray]],
    metadata: Mapping | None = None,
) -> Path:
    """Write events to ``path`` (``.npy``, ``.npz`` or ``.aedat4``) and return the path.

    ``.npy`` takes one event array and no metadata. ``.npz`` takes one array (stored as
    ``"events"``) or a mapping name -> event array (names of letters, digits and ``_``), plus
    a JSON-serialisable ``metadata`` dict (e.g. ``{"dt_us": 1000}``). ``.aedat4`` takes one
    array of DVS input events (layer ``DVS_LAYER_ID``, channel = polarity) and optional
    metadata ``{"sensor_size": [height, width]}`` (default 128 x 128).
    """
    path = Path(path)
    suffix = _check_suffix(path)
    arrays = _named_arrays(events)
    if suffix == ".aedat4":
        from backend.files.aedat4 import write_aedat4

        size = dict(metadata or {}).pop("sensor_size", (128, 128))
        if len(arrays) != 1 or set(metadata or {}) - {"sensor_size"}:
            raise EventFileError(f"path={str(path)!r}: an .aedat4 file holds one DVS event array and "
                                 "only the metadata 'sensor_size'; save other data as .npz")
        return write_aedat4(path, next(iter(arrays.values())), tuple(size))
    if suffix == ".npy":
        if len(arrays) != 1 or metadata:
            raise EventFileError(
                f"path={str(path)!r}: a .npy file holds one event array and no metadata; got "
                f"{len(arrays)} array(s)" + (" and metadata" if metadata else "")
                + "; save as .npz instead"
            )
    from snnlib.atomic_file import atomic_path

    try:
        with atomic_path(path) as temporary:  # complete or untouched, even on Ctrl-C
            if suffix == ".npy":
                np.save(temporary, next(iter(arrays.values())), allow_pickle=False)
            else:
                np.savez(temporary, **arrays, **{METADATA_KEY: np.array(_metadata_json(metadata or {}))})
    except OSError as exc:
        raise EventFileError(f"path={str(path)!r}: cannot write ({exc})") from exc
    return path


def load_event_file(path: PathLike) -> EventFile:
    """Read a ``.npy``, ``.npz`` or ``.aedat4`` event file; every array must be a time-ordered
    event array or an (x, y, t, p) array (a Tonic sample, returned as DVS input events).

    A ``.npy`` file yields one array named ``"events"`` and empty metadata.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise EventFileError(f"path={str(path)!r}: no such file")
    if suffix == ".aedat4":
        from backend.files.aedat4 import read_aedat4

        events, size = read_aedat4(path)
        return EventFile({DEFAULT_ARRAY_NAME: _check_event_array(events, path.name)},
                         {"sensor_size": list(size)})
    try:
        if suffix == ".npy":
            with open(path, "rb") as file:
                _check_npy_header(file, path.stat().st_size, path.name)
            arrays = {DEFAULT_ARRAY_NAME: np.load(path, allow_pickle=False)}
            metadata: dict = {}
        else:
            with zipfile.ZipFile(path) as archive:  # headers first: sizes, dtypes, truncation
                for member in archive.infolist():
                    with archive.open(member) as file:
                        _check_npy_header(file, member.file_size, f"{path.name}['{member.filename}']")
            with np.load(path, allow_pickle=False) as npz:
                contents = {name: npz[name] for name in npz.files}
            metadata = _parse_metadata(contents.pop(METADATA_KEY, None), path)
            arrays = contents
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise EventFileError(f"path={str(path)!r}: not a readable numpy {suffix} file ({exc})") from exc
    for name, arr in arrays.items():
        if _is_xytp(arr):
            arrays[name] = xytp_to_events(arr)
        _check_event_array(arrays[name], f"{path.name}['{name}']")
    return EventFile(arrays, metadata)


def _check_npy_header(file, size: int, name: str) -> None:
    """Read a .npy header from ``file`` (``size`` bytes in all) and raise
    :class:`EventFileError` for an array over :data:`MAX_FILE_EVENTS` entries, a dtype that
    holds objects, or a body shorter than the header announces (a truncated file)."""
    try:
        version = np.lib.format.read_magic(file)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(file, max_header_size=10_000)
    except (ValueError, EOFError) as exc:
        raise EventFileError(f"{name}: not a numpy array ({exc})") from exc
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if dtype.hasobject:
        raise EventFileError(f"{name}: dtype {dtype} holds Python objects; event files hold plain records")
    if count > MAX_FILE_EVENTS:
        raise EventFileError(f"{name}: {count} entries; an event file holds at most {MAX_FILE_EVENTS}")
    if size - file.tell() < count * dtype.itemsize:
        raise EventFileError(f"{name}: truncated: the header announces {count} entries of {dtype.itemsize} "
                             f"bytes, the file holds {size - file.tell()} bytes of data")


def _is_xytp(arr: np.ndarray) -> bool:
    """Whether ``arr`` is an (x, y, t, p) array such as a Tonic sample (no ``layer`` field)."""
    names = arr.dtype.names or ()
    return set(XYTP_FIELDS) <= set(names) and "layer" not in names


def load_events(path: PathLike, name: str | None = None) -> np.ndarray:
    """Read one event array from ``path``: the only array, or the one called ``name``."""
    arrays = load_event_file(path).arrays
    if name is None:
        if len(arrays) != 1:
            raise EventFileError(
                f"path={str(path)!r}: holds {len(arrays)} arrays {sorted(arrays)}; pass name=... "
                "to pick one, or use load_event_file() to read them all"
            )
        return next(iter(arrays.values()))
    if name not in arrays:
        raise EventFileError(
            f"name={name!r}: not in {str(path)!r}; the file holds {sorted(arrays)}"
        )
    return arrays[name]


def _check_event_array(events, name: str) -> np.ndarray:
    """``events`` if it passes :func:`snnlib.events.check_events`; errors name the array
    ``name`` and, for a wrong dtype, the first missing or mistyped field."""
    if isinstance(events, np.ndarray) and events.dtype != EVENT_DTYPE:
        _explain_dtype(events.dtype, name)
    try:
        return check_events(events)
    except InvalidEventsError as exc:
        raise EventFileError(f"{name}: {exc}", exc.field, exc.value, exc.index) from exc


def _explain_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.names is None:
        raise EventFileError(
            f"{name}: dtype {dtype} is not structured; expected snnlib.EVENT_DTYPE {EVENT_DTYPE}"
        )
    if set(XYTP_FIELDS) <= set(dtype.names) and "layer" not in dtype.names:
        raise EventFileError(
            f"{name}: is an (x, y, t, p) array (dtype {dtype}); convert it with "
            "xytp_to_events(array, layer=...)", "layer"
        )
    for field_name in EVENT_DTYPE.names:
        if field_name not in dtype.names:
            raise EventFileError(
                f"{name}: has no field '{field_name}' (fields: {list(dtype.names)}); expected "
                f"snnlib.EVENT_DTYPE {EVENT_DTYPE}", field_name
            )
        if dtype[field_name] != EVENT_DTYPE[field_name]:
            raise EventFileError(
                f"{name}: field '{field_name}' has dtype {dtype[field_name]}; expected "
                f"{EVENT_DTYPE[field_name]} (snnlib.EVENT_DTYPE {EVENT_DTYPE})", field_name
            )
    raise EventFileError(
        f"{name}: dtype {dtype} has other fields or another field order than snnlib.EVENT_DTYPE "
        f"{EVENT_DTYPE}"
    )


def _check_xytp_dtype(dtype) -> np.dtype:
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise EventFileError(f"dtype={dtype!r}: not a numpy dtype ({exc}); e.g. {XYTP_DTYPE}") from exc
    if dtype.names != XYTP_FIELDS:
        raise EventFileError(
            f"dtype={dtype}: fields {dtype.names}; expected exactly {XYTP_FIELDS} in that order "
            f"(e.g. {XYTP_DTYPE}); other tools misread or crash on another order"
        )
    for name in XYTP_FIELDS:
        if dtype[name].kind not in ("iub" if name == "p" else "iu"):
            raise EventFileError(
                f"dtype={dtype}: field '{name}' is {dtype[name]}; expected an integer type"
                + (" or bool" if name == "p" else "")
            )
    return dtype


def _fit(values: np.ndarray, target: np.dtype, name: str) -> np.ndarray:
    """``values`` cast to ``target``, or an error naming the first value that does not fit."""
    if target.kind == "b":
        lo, hi = 0, 1
    else:
        info = np.iinfo(target)
        lo, hi = info.min, info.max
    if values.dtype.kind == "b" or len(values) == 0:
        return values.astype(target)
    bad = (values < lo) | (values > hi)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise EventFileError(
            f"{name}[{i}] = {int(values[i])} does not fit {target} (range [{lo}, {hi}]); "
            "choose a wider dtype or select the events that fit"
        )
    return values.astype(target)


def _check_suffix(path: Path) -> str:
    suffix = path.suffix
    if suffix not in (".npy", ".npz", ".aedat4"):
        raise EventFileError(
            f"path={str(path)!r}: suffix {suffix or '(none)'!r}; expected '.npy' (one array), "
            "'.npz' (named arrays + metadata) or '.aedat4' (a DV recording)"
        )
    return suffix


def _named_arrays(events) -> dict[str, np.ndarray]:
    if isinstance(events, np.ndarray):
        return {DEFAULT_ARRAY_NAME: _check_event_array(events, "events")}
    if not isinstance(events, Mapping) or not events:
        raise EventFileError(
            f"events: got {type(events).__name__}"
            + (" (empty)" if isinstance(events, Mapping) else "")
            + "; expected an event array or a non-empty mapping name -> event array"
        )
    arrays = {}
    for name, arr in events.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name) or name == METADATA_KEY:
            raise EventFileError(
                f"events: array name {name!r}; expected a string of letters, digits and '_' "
                f"(not {METADATA_KEY!r}), e.g. 'layer_3'"
            )
        arrays[name] = _check_event_array(arr, f"events[{name!r}]")
    return arrays


def _metadata_json(metadata: Mapping) -> str:
    if not isinstance(metadata, Mapping):
        raise EventFileError(
            f"metadata: got {type(metadata).__name__}; expected a dict such as {{'dt_us': 1000}}"
        )
    try:
        return json.dumps(dict(metadata))
    except TypeError as exc:
        raise EventFileError(
            f"metadata: {exc}; values must be JSON-serialisable (numbers, strings, lists, dicts)"
        ) from exc


def _parse_metadata(entry, path: Path) -> dict:
    if entry is None:
        return {}
    try:
        metadata = json.loads(str(entry))
    except json.JSONDecodeError as exc:
        raise EventFileError(
            f"path={str(path)!r}: entry {METADATA_KEY!r} is not valid JSON ({exc})"
        ) from exc
    if not isinstance(metadata, dict):
        raise EventFileError(
            f"path={str(path)!r}: entry {METADATA_KEY!r} holds {type(metadata).__name__}; "
            "expected a JSON object"
        )
    return metadata
