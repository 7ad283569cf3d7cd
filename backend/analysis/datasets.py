"""Datasets for :func:`backend.analysis.evaluate.evaluate`: recordings with labels, read lazily.

Three forms are accepted (:func:`dataset_samples`):

- a folder with one subfolder per class (sorted names = class 0, 1, ...), each holding event
  files ``.npy`` / ``.npz`` / ``.aedat4`` (:func:`backend.files.events.load_events`; Tonic
  (x, y, t, p) samples are read as DVS input);
- a Tonic-style dataset object: ``len(data)`` and ``data[i] -> (events, label)``;
- any iterable of ``(events, label)`` pairs.

``events`` is an :data:`snnlib.EVENT_DTYPE` array or an (x, y, t, p) structured array (DVS
input); ``label`` an int class. A sample that cannot be read becomes a :class:`Sample` with
``error`` set, so the evaluation records it as failed instead of dropping it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from backend.errors import DatasetError
from snnlib.errors import SpikeflashError
from snnlib.events import EVENT_DTYPE

#: suffixes of the event files a dataset folder may hold
EVENT_SUFFIXES = (".npy", ".npz", ".aedat4")


@dataclass
class Sample:
    """One recording: its position ``index`` in the dataset, ``events`` (EVENT_DTYPE, None when
    unreadable), the class ``label``, a ``name`` for reports, and ``error`` when unreadable."""

    index: int
    events: Optional[np.ndarray]
    label: Optional[int]
    name: str
    error: Optional[str] = None

    def digest(self) -> str:
        """16 hex digits of sha256 over the events and the label: identifies the sample in a
        results file, so a resumed run notices a dataset that changed."""
        h = hashlib.sha256(repr((self.label, self.error)).encode())
        if self.events is not None:
            h.update(np.ascontiguousarray(self.events).tobytes())
        return h.hexdigest()[:16]


@dataclass
class Dataset:
    """Samples read on demand: iterate to get :class:`Sample` objects in index order.
    ``length``: the number of samples (None for a plain iterable); ``fingerprint``: 16 hex
    digits naming the dataset's source (folder listing or object type and length);
    ``classes``: class names for a folder, else None."""

    read: Callable[[], Iterator[Sample]]
    length: Optional[int]
    fingerprint: str
    classes: Optional[list[str]] = None

    def __iter__(self) -> Iterator[Sample]:
        return self.read()


def dataset_samples(data: Any) -> Dataset:
    """``data`` (a folder path, a Tonic-style dataset or an iterable of ``(events, label)``)
    as a :class:`Dataset`; raises :class:`DatasetError` when it is none of them."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (str, Path)):
        return _folder(Path(data))
    if hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (dict, np.ndarray)):
        n = len(data)
        kind = f"{type(data).__module__}.{type(data).__qualname__}:{n}"

        def read() -> Iterator[Sample]:
            for i in range(n):
                yield _item(i, f"dataset[{i}]", lambda i=i: data[i])

        return Dataset(read, n, _hash(kind))
    if hasattr(data, "__iter__") and not isinstance(data, (dict, np.ndarray)):
        iterator = iter(data)

        def read_once() -> Iterator[Sample]:
            for i, item in enumerate(iterator):
                yield _item(i, f"item {i}", lambda item=item: item)

        return Dataset(read_once, None, _hash(f"iterable:{type(data).__qualname__}"))
    raise DatasetError(
        f"data: got {type(data).__name__}; expected a folder of class subfolders, a Tonic-style "
        "dataset (len and [i] -> (events, label)) or an iterable of (events, label)",
        hint="for recordings on disk pass their folder: one subfolder per class holding "
        ".npy/.npz/.aedat4 files",
    )


def _folder(root: Path) -> Dataset:
    if not root.is_dir():
        raise DatasetError(f"data={str(root)!r}: no such folder",
                           hint="pass a folder with one subfolder per class of event files")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(label, path) for label, name in enumerate(classes)
             for path in sorted((root / name).iterdir())
             if path.is_file() and path.suffix in EVENT_SUFFIXES]
    if not files:
        raise DatasetError(
            f"data={str(root)!r}: no event files ({', '.join(EVENT_SUFFIXES)}) in class subfolders "
            f"(subfolders: {classes or 'none'})",
            hint="lay the recordings out as DATA/<class name>/<recording>.npy, one subfolder per class",
        )
    listing = [(str(path.relative_to(root)), path.stat().st_size) for _, path in files]

    def read() -> Iterator[Sample]:
        from backend.files.events import load_events

        for i, (label, path) in enumerate(files):
            name = str(path.relative_to(root))
            try:
                yield Sample(i, load_events(path), label, name)
            except SpikeflashError as exc:
                yield Sample(i, None, label, name, str(exc))

    return Dataset(read, len(files), _hash(repr(listing)), classes)


def _item(index: int, name: str, get: Callable[[], Any]) -> Sample:
    """The sample ``get()`` returns, or a Sample carrying the error that reading it raised."""
    try:
        item = get()
    except Exception as exc:  # the user's dataset code: any failure is this sample's error
        return Sample(index, None, None, name, f"{name}: reading raised {type(exc).__name__}: {exc}")
    try:
        events, label = item
    except (TypeError, ValueError):
        return Sample(index, None, None, name, f"{name}: got {type(item).__name__}; expected a pair "
                      "(events, label)")
    try:
        return Sample(index, _as_events(events, name), _as_label(label, name), name)
    except DatasetError as exc:
        return Sample(index, None, None, name, str(exc))


def _as_events(events: Any, name: str) -> np.ndarray:
    from backend.files.events import xytp_to_events

    if isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE:
        return events
    if isinstance(events, np.ndarray) and events.dtype.names and "layer" not in events.dtype.names:
        try:
            return xytp_to_events(events)
        except SpikeflashError as exc:
            raise DatasetError(f"{name}: {exc}") from exc
    raise DatasetError(f"{name}: events of type {type(events).__name__}"
                       + (f" with dtype {events.dtype}" if isinstance(events, np.ndarray) else "")
                       + "; expected an snnlib.EVENT_DTYPE array or an (x, y, t, p) structured array")


def _as_label(label: Any, name: str) -> int:
    try:
        value = int(np.asarray(label).item())
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{name}: label {label!r} is not an integer class") from exc
    if value < 0 or value != np.asarray(label).item():
        raise DatasetError(f"{name}: label {label!r}; expected an integer class >= 0")
    return value


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
