"""Model files load without running code from them by default: programs written by
``mapper.save_program`` (``.pt2`` torch.export, ``.pt`` TorchScript) map to the same
configuration as the model itself without ``--trust-pickle``; a pickle that would run code
is refused unless the flag is given; programs the mapper cannot rebuild are refused naming
the operator."""

from __future__ import annotations

import pathlib

import pytest
import torch

from backend.app.cli import main
from mapper import ChipConfig, ProgramError, load_program, map_model, save_program
from snnlib import SpikingLayer, SumPool2d


def snn() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), SpikingLayer(threshold=1.5), SumPool2d(2),
        torch.nn.Conv2d(4, 2, 3, bias=False), SpikingLayer(threshold_low=None), torch.nn.Flatten(),
        torch.nn.Linear(8, 3, bias=False), SpikingLayer(membrane_reset=True))
    with torch.no_grad():
        for layer in (model[0], model[3], model[6]):
            layer.weight.uniform_(0.0, 0.6)
    return model


@pytest.mark.parametrize("name", ["model.pt2", "model.pt"])
def test_a_saved_program_maps_like_the_model_without_trusting_pickles(name, tmp_path, capsys):
    save_program(snn(), (1, 8, 8), tmp_path / name)
    output = tmp_path / "model.json"
    assert main(["map", str(tmp_path / name), "--input-shape", "1,8,8", "-o", str(output)]) == 0
    assert ChipConfig.load(output).digest() == map_model(snn(), (1, 8, 8)).config.digest()
    rebuilt = load_program(tmp_path / name)
    assert [type(m) for m in rebuilt] == [type(m) for m in snn()]
    assert (rebuilt[4].threshold_low, rebuilt[7].membrane_reset) == (None, True)


class _TouchOnLoad:
    """Unpickling this calls ``Path.touch``: any code a crafted file names would run."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_that_runs_code_is_refused_without_the_flag(tmp_path, capsys):
    marker, path = tmp_path / "ran", tmp_path / "crafted.pt"
    torch.save(_TouchOnLoad(marker), path)
    assert main(["map", str(path), "--input-shape", "1,8,8"]) == 1
    err = capsys.readouterr().err
    assert "holds pickled Python objects" in err and "--trust-pickle" in err and "save_program" in err
    assert not marker.exists()  # nothing from the file ran
    assert main(["map", str(path), "--input-shape", "1,8,8", "--trust-pickle"]) == 1  # asked for: it runs
    assert marker.exists() and "not a torch.nn.Module" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.trace / save of the ReLU model
@pytest.mark.parametrize("name", ["relu.pt2", "relu.pt"])
def test_a_program_the_mapper_cannot_rebuild_names_the_operator(name, tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    example = torch.zeros(1, 1, 8, 8)
    if name.endswith(".pt2"):
        torch.export.save(torch.export.export(model, (example,)), tmp_path / name)
    else:
        torch.jit.save(torch.jit.trace(model, example), tmp_path / name)
    with pytest.raises(ProgramError, match=r"the program calls aten(::|\.)relu.*SpikingLayer"):
        load_program(tmp_path / name)
    assert main(["map", str(tmp_path / name), "--input-shape", "1,8,8"]) == 1
    assert "hint: save the model with mapper.save_program" in capsys.readouterr().err


def test_a_damaged_program_or_a_model_a_program_cannot_hold_is_refused(tmp_path):
    save_program(snn(), (1, 8, 8), tmp_path / "model.pt2")
    (tmp_path / "cut.pt2").write_bytes((tmp_path / "model.pt2").read_bytes()[:500])
    with pytest.raises(ProgramError, match=r"cut.pt2: not a readable torch.export program"):
        load_program(tmp_path / "cut.pt2")
    with pytest.raises(ProgramError, match=r"layer 1 is a ReLU; a program holds Conv2d"):
        save_program(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()), (1, 8, 8), tmp_path / "x.pt2")
