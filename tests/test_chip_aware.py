"""mapper.chip_aware: inside the block each core computes with the integer weights, thresholds
and scale that map_model chooses; gradients pass straight through; on leaving, the float model
is back, trained."""

import numpy as np
import pytest
import torch
from torch import nn

from mapper import map_model
from mapper.chip_aware import chip_aware
from snnlib import InvalidParameterError, SpikingLayer, SumPool2d


def model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), SpikingLayer(threshold=0.7, threshold_low=-0.3), SumPool2d(2),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 4, bias=False), SpikingLayer(threshold=1.3, threshold_low=None),
    )
    with torch.no_grad():
        net[0].weight.uniform_(-0.2, 0.6)
    return net


def test_cores_compute_with_the_mappers_integers_and_the_float_model_comes_back():
    net = model()
    floats = [p.detach().clone() for p in net.parameters()]
    cores = sorted(map_model(net, (1, 8, 8), "speck2f").config.cores.values(), key=lambda c: c.layer_names[0])
    x = (torch.rand(6, 1, 8, 8) < 0.4).float()
    with chip_aware(net):
        out = net(x)
        for layer, spiking, core in ((net[0], net[1], cores[0]), (net[4], net[5], cores[1])):
            weight = layer.weight.detach().numpy()
            assert np.array_equal(weight.reshape(core.weights.shape), core.weights)
            assert (spiking.threshold, spiking.threshold_low) == (core.threshold_high, core.threshold_low)
            assert spiking.saturate_int16
        out.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(floats, net.parameters()))
    assert net[1].threshold == 0.7 and net[5].threshold_low is None and not net[1].saturate_int16
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_a_layer_with_a_bias_is_refused():
    with pytest.raises(InvalidParameterError, match="bias"):
        with chip_aware(nn.Sequential(nn.Linear(2, 2), SpikingLayer())):
            pass
