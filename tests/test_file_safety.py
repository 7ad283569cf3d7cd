"""Files a user keeps are safe: outputs written atomically and never onto an input, a bad
output path refused before the work, event files checked from their headers (truncation,
sizes, dtypes) with errors naming the file, configurations that are not UTF-8, hold
non-finite numbers, non-canonical core keys or absurd nesting refused naming the field, and
pickled models loaded only on request."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch

from backend.app.cli import main
from backend.devices import open_device
from backend.files.events import EventFileError, load_events, save_events, xytp_to_events
from backend.testing.qualification import qualification_config, random_input
from mapper import ChipConfig, ConfigError
from snnlib.atomic_file import atomic_path
from snnlib.events import InvalidEventsError

CONFIG = qualification_config("single_core")


def test_an_interrupted_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "events.npz"
    events = random_input(CONFIG.to_network(), 100, seed=1)
    save_events(target, events)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as temporary:
            temporary.write_bytes(before[:100])  # half written when Ctrl-C comes
            raise KeyboardInterrupt
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["events.npz"]
    assert (load_events(target) == events).all()


@pytest.mark.parametrize("same", ["events", "config"])
def test_an_output_onto_an_input_or_into_no_folder_is_refused_before_the_run(tmp_path, capsys, same):
    config, events = tmp_path / "c.json", tmp_path / "in.npz"
    CONFIG.save(config)
    save_events(events, random_input(CONFIG.to_network(), 10))
    before = events.read_bytes()
    target = events if same == "events" else config
    assert main(["run", str(config), "--events", str(events), "-o", str(target)]) == 1
    assert "writing it would destroy the input" in capsys.readouterr().err and events.read_bytes() == before
    assert main(["run", str(config), "--events", str(events), "-o", str(tmp_path / "no" / "o.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_map_refuses_its_own_model_as_output_and_pickles_without_the_flag(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, bias=False), torch.nn.ReLU())
    path = tmp_path / "m.pt"
    torch.save(model, path)
    before = path.read_bytes()
    assert main(["map", str(path), "--input-shape", "1,8,8", "-o", str(path), "--trust-pickle"]) == 1
    assert "destroy the input" in capsys.readouterr().err and path.read_bytes() == before
    assert main(["map", str(path), "--input-shape", "1,8,8"]) == 1
    err = capsys.readouterr().err
    assert "holds pickled Python objects" in err and "--trust-pickle" in err


def npz_with(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("events.npy", data)
    return path


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_event_files_are_checked_from_their_headers(tmp_path):
    events = random_input(CONFIG.to_network(), 50)
    whole = npy_bytes(events)
    cases = {
        "truncated.npy": (whole[:-40], r"truncated.npy: truncated: the header announces 50 entries of 16 bytes"),
        "empty.npy": (b"", r"empty.npy: not a numpy array"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(EventFileError, match=message):
            load_events(tmp_path / name)
    save_events(tmp_path / "cut.npz", events)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:300])
    with pytest.raises(EventFileError, match=r"cut.npz.*not a readable numpy .npz file"):
        load_events(tmp_path / "cut.npz")
    header = npy_bytes(np.zeros(0, events.dtype)).replace(b"(0,)", b"(999999999999,)")
    with pytest.raises(EventFileError, match=r"huge.npz\['events.npy'\]: 999999999999 entries; an event file "
                                             r"holds at most"):
        load_events(npz_with(tmp_path, "huge.npz", header))


def test_configs_with_bad_text_numbers_keys_or_nesting_name_the_problem(tmp_path):
    text = CONFIG.to_json()
    (tmp_path / "latin1.json").write_bytes(text.encode() + b"\xff")
    with pytest.raises(ConfigError, match=r"latin1.json is not UTF-8 text"):
        ChipConfig.load(tmp_path / "latin1.json")
    with pytest.raises(ConfigError, match=r"Infinity is not a finite number"):
        ChipConfig.from_json(text.replace('"scale":1.0', '"scale":Infinity', 1) if '"scale":1.0' in text
                             else text[:-1] + ',"x":Infinity}')
    key = next(iter(CONFIG.cores))
    with pytest.raises(ConfigError, match=r"without leading zeros"):
        ChipConfig.from_json(text.replace(f'"cores":{{"{key}"', f'"cores":{{"0{key}"', 1))
    with pytest.raises(ConfigError, match=r"nested too deeply"):
        ChipConfig.from_json("[" * 100_000 + "]" * 100_000)


def test_polarities_other_than_0_or_1_are_refused():
    xytp = np.zeros(3, [("x", "i2"), ("y", "i2"), ("t", "i8"), ("p", "i1")])
    xytp["p"] = [1, 0, -1]
    with pytest.raises(EventFileError, match=r"xytp\[2\]\['p'\] = -1: a polarity is 0 \(off\) or 1 \(on\)"):
        xytp_to_events(xytp)
    with open_device("emu://") as device:
        device.flash(CONFIG)
        with pytest.raises(InvalidEventsError, match=r"fields \('x', 'y', 't', 'p'\); convert it with "
                                                     r"backend.files.events.xytp_to_events"):
            device.run(xytp)
