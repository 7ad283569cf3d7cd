"""One name per layer, the one users recognise: the model's own conv / linear names, or
``conv1``-style names for Sequential indices, alike in the memory table, the quantization
block, the saved configuration, runs (``spikeflash run``, ``RunResult.rasters``) and
comparisons."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from backend.analysis.compare import compare
from backend.app.cli import main
from backend.devices import open_device
from backend.files.events import save_events
from mapper import ChipConfig, map_model
from snnlib import SpikingLayer, SumPool2d, raster_to_events


def _weights(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.uniform_(0.1, 0.7)
    return model


def indexed() -> nn.Sequential:
    return _weights(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), SpikingLayer(), SumPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), SpikingLayer(), SumPool2d(2),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 3, bias=False), SpikingLayer()))


def named() -> nn.Sequential:
    return _weights(nn.Sequential(OrderedDict([
        ("stem", nn.Conv2d(1, 4, 3, padding=1, bias=False)), ("spk0", SpikingLayer()), ("pool", SumPool2d(2)),
        ("flat", nn.Flatten()), ("head", nn.Linear(4 * 4 * 4, 3, bias=False)), ("out", SpikingLayer())])))


def _table_names(report) -> list[str]:
    return [u.layer for u in report.memory], [q.layer for q in report.quantization]


@pytest.mark.parametrize("model, names", [(indexed, ["conv1", "conv2", "fc1"]), (named, ["stem", "head"])])
def test_one_name_per_layer_in_the_report_the_config_and_a_run(model, names):
    mapping = map_model(model(), (1, 8, 8), monitor="all")
    memory, quantization = _table_names(mapping.report)
    assert memory == names and quantization == names
    config = ChipConfig.from_json(mapping.config.to_json())
    assert list(config.layer_display_names().values()) == names
    assert list(config.monitored_layer_names().values()) == names
    events = raster_to_events((torch.rand(12, 1, 8, 8) < 0.3).float(), layer=mapping.input, dt_us=1000)
    with open_device("emu://") as device:
        result = compare(config, device, events)
        assert result.bit_exact
        assert [s.name for s in result.layers] == names
        device.reset()
        assert list(device.run(events).rasters) == names


def test_derived_names_are_listed_with_their_model_layers_and_accepted_as_arguments():
    mapping = map_model(indexed(), (1, 8, 8), monitor=["conv2"], layer2core={"fc1": 7})
    text = str(mapping.report)
    assert "layer names:\n  conv1                model layers 0, 1\n" in text
    assert "  fc1                  model layers 7, 8" in text
    assert mapping.config.monitored_layer_names() == {mapping.report.memory[1].core: "conv2"}
    assert mapping.config.layer_display_names()[7] == "fc1"
    assert "layer names:" not in str(map_model(named(), (1, 8, 8)).report)  # its own names say it


def test_run_and_compare_print_the_layer_names(tmp_path, capsys):
    torch.save(indexed(), tmp_path / "model.pt")
    assert main(["map", str(tmp_path / "model.pt"), "--trust-pickle", "--input-shape", "1,8,8"]) == 0
    config = ChipConfig.load(tmp_path / "model.json")
    events = raster_to_events((torch.rand(12, 1, 8, 8) < 0.3).float(), layer=0, dt_us=1000)
    save_events(tmp_path / "in.npz", events)
    capsys.readouterr()
    assert main(["run", str(tmp_path / "model.json"), "--events", str(tmp_path / "in.npz")]) == 0
    out = capsys.readouterr().out
    (core,) = config.monitored_layer_names()
    assert f"core {core:>2} fc1 " in out
    assert main(["compare", str(tmp_path / "model.json"), "--events", str(tmp_path / "in.npz")]) == 0
    assert np.any([" fc1 " in line for line in capsys.readouterr().out.splitlines()])
