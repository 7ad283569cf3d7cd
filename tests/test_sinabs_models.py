"""Models built from the real ``sinabs.layers`` map unchanged, with a note per converted layer,
run on the emulator exactly as sinabs' own forward pass counts spikes (where the two agree by
docs/chip-model.md), and sinabs layers without a chip equivalent get the equivalent to use.
Importing sinabs must never import samna (PyPI's samna downloads at import)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import sinabs.layers as sl  # a dev dependency; imports no samna (checked below)
from sinabs.activation import MembraneReset, MembraneSubtract

from backend.devices import open_device
from mapper import MappingError, map_model
from snnlib import raster_to_events


def sinabs_model() -> nn.Sequential:
    """Weights in {0, 1} <= threshold 2: the chip and sinabs' time steps count the same spikes."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=1, spike_threshold=2.0),
        sl.SumPool2d(2), nn.Conv2d(4, 3, 3, bias=False), sl.IAFSqueeze(batch_size=1, spike_threshold=2.0))
    with torch.no_grad():
        for conv in (model[0], model[3]):
            conv.weight.copy_((torch.rand(conv.weight.shape) < 0.5).float())
    return model


def test_a_sinabs_model_runs_on_the_emulator_as_sinabs_counts_its_spikes():
    model = sinabs_model()
    mapping = map_model(model, (2, 12, 12))
    assert isinstance(model[1], sl.IAFSqueeze)  # the user's model is not modified
    notes = [str(n) for n in mapping.report.transformations]
    assert notes[0].startswith("1: sinabs IAFSqueeze -> SpikingLayer(threshold=2.0 from spike_threshold, "
                               "threshold_low=None from min_v_mem (unbounded: -32768 on chip), reset "
                               "'subtract' from MembraneSubtract); MultiSpike")
    assert "2: sinabs SumPool2d -> SumPool2d(kernel_size=2, stride=2)" in notes
    first = mapping.config.cores[0]
    assert (first.threshold_high, first.threshold_low, first.reset) == (254, -32768, "subtract")
    raster = (torch.rand(15, 2, 12, 12) < 0.3).float()
    with torch.no_grad():
        expected = model(raster)  # sinabs' own forward, (T, 3, 3, 3)
    assert expected.sum() > 10
    with open_device("emu://") as device:
        device.flash(mapping.config)
        device.reset()
        got = device.run(raster_to_events(raster, mapping.input, dt_us=1000)).rasters["conv2"]
    np.testing.assert_array_equal(got[:15].numpy(), expected.numpy())
    assert got[15:].sum() == 0


def test_reset_and_lower_bound_are_read_from_sinabs():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False),
                          sl.IAF(spike_threshold=1.5, min_v_mem=-0.5, reset_fn=MembraneReset()))
    with torch.no_grad():
        model[0].weight.fill_(0.25)
    mapping = map_model(model, (1, 6, 6))
    core = mapping.config.cores[0]
    assert core.reset == "zero" and core.threshold_low == -round(0.5 * mapping.report.quantization[0].scale)
    (note,) = mapping.report.transformations
    assert "threshold=1.5 from spike_threshold, threshold_low=-0.5 from min_v_mem, reset 'zero' from MembraneReset" \
        in note.action


def test_sinabs_layers_without_a_chip_equivalent_name_the_one_to_use():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, bias=False), sl.LIF(tau_mem=20.0), sl.SpikingMaxPooling2dLayer(2),
        nn.Conv2d(4, 4, 1, bias=False), sl.IAF(tau_syn=5.0),
        nn.Conv2d(4, 4, 1, bias=False), sl.IAF(reset_fn=MembraneSubtract(subtract_value=0.5)))
    with pytest.raises(MappingError) as err:
        map_model(model, (2, 8, 8))
    problems = [str(v) for v in err.value.report.violations]
    assert any(p.startswith("1: unsupported layer type (got LIF); fix: the chip's neurons integrate and fire "
                            "without decay: use sinabs.layers.IAF") for p in problems), problems
    assert any(p.startswith("2: unsupported layer type (got SpikingMaxPooling2dLayer); fix: use "
                            "sinabs.layers.SumPool2d") for p in problems), problems
    assert "4: synaptic currents (tau_syn) have no chip equivalent (got tau_syn=5.0); fix: use tau_syn=None" in problems
    assert any(p.startswith("6: the chip subtracts exactly the threshold") for p in problems), problems


def test_importing_sinabs_and_mapping_a_sinabs_model_imports_no_samna():
    code = ("import sys, torch, sinabs.layers as sl\nfrom mapper import map_model\n"
            "m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, bias=False), sl.IAFSqueeze(batch_size=1))\n"
            "map_model(m, (1, 6, 6))\nassert 'samna' not in sys.modules, 'samna imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
