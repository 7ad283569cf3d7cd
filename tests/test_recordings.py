"""Recordings from event cameras: AEDAT4 files (written to the AEDAT4 layout, read back by the
independent ``aedat`` decoder), Tonic samples saved as .npy/.npz, and ``--events`` on the CLI
with any of them; absolute timestamps kept to the µs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.app.cli import main
from backend.files.aedat4 import PACKET_EVENTS, AedatError, read_aedat4, write_aedat4
from backend.files.events import EventFileError, load_event_file, load_events, save_events
from mapper import map_model
from snnlib import DVS_LAYER_ID, SpikingLayer, SumPool2d, empty_events, simulate

T0 = 1_764_590_000_000_000  # an absolute camera timestamp (µs since 1970)


def dvs_events(n: int, seed: int = 0, size=(128, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = empty_events(n)
    ev["t"] = T0 + np.sort(rng.integers(0, 5_000_000, n))
    ev["layer"] = DVS_LAYER_ID
    ev["channel"] = rng.integers(0, 2, n)
    ev["y"], ev["x"] = rng.integers(0, size[0], n), rng.integers(0, size[1], n)
    return ev


def test_aedat4_round_trip_through_the_aedat_decoder_keeps_absolute_time(tmp_path):
    ev = dvs_events(2 * PACKET_EVENTS + 17)  # three packets
    path = save_events(tmp_path / "rec.aedat4", ev, metadata={"sensor_size": [128, 128]})
    assert path.read_bytes().startswith(b"#!AER-DAT4.0\r\n")
    recording = load_event_file(path)
    assert recording.metadata == {"sensor_size": [128, 128]}
    np.testing.assert_array_equal(recording.arrays["events"], ev)
    assert load_events(path)["t"][0] == ev["t"][0] >= T0


def test_aedat4_reports_the_sensor_size_and_reads_an_empty_recording(tmp_path):
    write_aedat4(tmp_path / "empty.aedat4", empty_events(0), sensor_size=(260, 346))
    events, size = read_aedat4(tmp_path / "empty.aedat4")
    assert size == (260, 346) and len(events) == 0


def test_aedat4_writer_refuses_what_the_format_cannot_hold(tmp_path):
    ev = dvs_events(10)
    ev["channel"][3] = 5
    with pytest.raises(AedatError, match=r"events\[3\].channel = 5.*0 \(OFF\) or 1 \(ON\)"):
        write_aedat4(tmp_path / "x.aedat4", ev)
    ev = dvs_events(10)
    ev["layer"][0] = 0
    with pytest.raises(EventFileError, match=r"events\[0\].layer = 0.*DVS input"):
        save_events(tmp_path / "x.aedat4", ev)
    with pytest.raises(EventFileError, match=r"x >= sensor width 64|x < sensor width 64"):
        write_aedat4(tmp_path / "x.aedat4", dvs_events(50), sensor_size=(128, 64))
    with pytest.raises(EventFileError, match="only the metadata 'sensor_size'"):
        save_events(tmp_path / "x.aedat4", dvs_events(5), metadata={"dt_us": 1})


def _at(field: str, value: int) -> np.ndarray:
    """Ten DVS events on a 6x9 sensor, event 4's ``field`` set to ``value``."""
    ev = dvs_events(10, size=(6, 9))
    ev[field][4] = value
    return ev


@pytest.mark.parametrize("field, good, bad", [("channel", 1, 2), ("y", 5, 6), ("x", 8, 9),
                                              ("layer", DVS_LAYER_ID, 0)])
def test_aedat4_writer_takes_each_field_up_to_its_bound_and_refuses_beyond(tmp_path, field, good, bad):
    path = write_aedat4(tmp_path / "ok.aedat4", _at(field, good), sensor_size=(6, 9))
    assert read_aedat4(path)[0][field][4] == good
    with pytest.raises(AedatError, match=rf"events\[4\].{field} = {bad}; "):
        write_aedat4(tmp_path / "bad.aedat4", _at(field, bad), sensor_size=(6, 9))


@pytest.mark.parametrize("sensor_size", [(0, 9), (6, 0), (32768, 9), (6, 32768), (6,), (6, 9, 1), (6.0, 9)])
def test_aedat4_writer_refuses_a_sensor_size_the_format_cannot_hold(tmp_path, sensor_size):
    with pytest.raises(AedatError, match=r"sensor_size=.*positive ints below 32768"):
        write_aedat4(tmp_path / "x.aedat4", dvs_events(3, size=(6, 9)), sensor_size=sensor_size)
    assert not (tmp_path / "x.aedat4").exists()


def test_aedat4_writer_takes_the_smallest_and_largest_sensor_and_refuses_what_is_not_an_event_array(tmp_path):
    one_pixel = dvs_events(3, size=(1, 1))
    assert read_aedat4(write_aedat4(tmp_path / "one.aedat4", one_pixel, sensor_size=(1, 1)))[1] == (1, 1)
    assert read_aedat4(write_aedat4(tmp_path / "big.aedat4", dvs_events(3, size=(6, 9)),
                                    sensor_size=(32767, 32767)))[1] == (32767, 32767)
    for wrong in (np.zeros(3), dvs_events(3).tolist()):
        with pytest.raises(AedatError, match="expected an snnlib.EVENT_DTYPE array"):
            write_aedat4(tmp_path / "x.aedat4", wrong)


def test_a_broken_aedat4_file_is_named_with_the_decoders_reason(tmp_path):
    (tmp_path / "junk.aedat4").write_bytes(b"not a recording")
    with pytest.raises(EventFileError, match=r"junk.aedat4.*not a readable AEDAT4 file.*magic"):
        load_events(tmp_path / "junk.aedat4")
    whole = write_aedat4(tmp_path / "whole.aedat4", dvs_events(3000)).read_bytes()
    (tmp_path / "cut.aedat4").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(EventFileError, match="cut.aedat4.*not a readable AEDAT4"):
        load_events(tmp_path / "cut.aedat4")


def test_a_tonic_sample_saved_as_npy_or_npz_loads_as_dvs_input(tmp_path):
    ev = dvs_events(500)
    # Tonic's DVSGesture layout: fields x, y, p, t (any order is read by name)
    tonic = np.zeros(len(ev), dtype=[("x", "<i8"), ("y", "<i8"), ("p", "<i8"), ("t", "<i8")])
    for field, source in {"x": "x", "y": "y", "p": "channel", "t": "t"}.items():
        tonic[field] = ev[source]
    np.save(tmp_path / "sample.npy", tonic)
    np.testing.assert_array_equal(load_events(tmp_path / "sample.npy"), ev)
    np.savez(tmp_path / "samples.npz", a=tonic, b=tonic[:10])
    assert load_event_file(tmp_path / "samples.npz").arrays["b"]["t"][0] == ev["t"][0]


@pytest.fixture
def dvs_config(tmp_path):
    """A DVS model (4x4 pooling in the DVS stage, then one conv core) mapped and saved."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(SumPool2d(4), torch.nn.Conv2d(2, 4, 3, bias=False), SpikingLayer(threshold=1.0))
    with torch.no_grad():
        model[1].weight.uniform_(0.0, 0.5)
    config = map_model(model, (2, 128, 128), dvs=True).config
    config.save(tmp_path / "dvs.json")
    return config, tmp_path / "dvs.json"


@pytest.mark.parametrize("suffix", [".aedat4", ".npy"])
def test_cli_run_takes_a_recording_of_any_format(dvs_config, suffix, tmp_path, capsys):
    config, config_path = dvs_config
    ev = dvs_events(3000, seed=1)
    ev["t"] -= T0  # device time from 0 (absolute camera time on a device: issue 12)
    recording = tmp_path / f"rec{suffix}"
    save_events(recording, ev)
    out = tmp_path / "out.npz"
    assert main(["run", str(config_path), "--events", str(recording), "--device", "emu://", "-o", str(out)]) == 0
    expected = simulate(config.to_network(), ev).events
    assert len(expected) > 0
    np.testing.assert_array_equal(load_events(out), expected)
    assert f"{len(ev)} input events -> {len(expected)} output events" in capsys.readouterr().out
