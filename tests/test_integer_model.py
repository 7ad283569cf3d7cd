"""network_from_sequential, and the time-stepped layers against the event-exact engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnlib import (
    SpikingLayer,
    SumPool2d,
    UnsupportedModelError,
    events_to_raster,
    network_from_sequential,
    raster_to_events,
    simulate,
)

DT_US = 1000


def integer_conv(c_in, c_out, k, low, high, seed, **kw) -> torch.nn.Conv2d:
    conv = torch.nn.Conv2d(c_in, c_out, k, bias=False, **kw)
    gen = torch.Generator().manual_seed(seed)
    conv.weight.data = torch.randint(low, high + 1, conv.weight.shape, generator=gen).float()
    return conv


def run_both(model, raster, layer_shapes):
    """Spike counts of every spiking layer: time-stepped (the model) and event-exact (engine)."""
    net = network_from_sequential(model, tuple(raster.shape[1:]), monitor="all")
    result = simulate(net, raster_to_events(raster, 0, DT_US))
    stepped, x = [], torch.from_numpy(raster).float()
    with torch.no_grad():
        for m in model:
            x = m(x)
            if isinstance(m, SpikingLayer):
                stepped.append(x.numpy().astype(np.int64))
    exact = [events_to_raster(result.events, shape, DT_US, n_steps=raster.shape[0], layer=lid)
             for lid, shape in enumerate(layer_shapes)]
    return stepped, exact, net


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), thr=st.integers(1, 20), stride=st.integers(1, 2),
       pool=st.sampled_from([1, 2]), density=st.floats(0.05, 0.6))
def test_time_stepped_equals_event_exact_under_section_12_conditions(seed, thr, stride, pool, density):
    # weights in [0, threshold], subtract reset, no clamping (threshold_low never reached), state 0
    model = torch.nn.Sequential(
        integer_conv(2, 3, 3, 0, thr, seed, stride=stride, padding=1), SpikingLayer(thr, threshold_low=None),
        SumPool2d(pool),
        integer_conv(3, 2, 3, 0, thr, seed + 1, padding=1), SpikingLayer(thr, threshold_low=None),
    )
    raster = np.random.default_rng(seed).binomial(2, density, (6, 2, 8, 8)).astype(np.int64)
    h1 = (8 + 2 - 3) // stride + 1
    stepped, exact, _ = run_both(model, raster, [(3, h1, h1), (2, h1 // pool, h1 // pool)])
    for a, b in zip(stepped, exact):
        np.testing.assert_array_equal(a, b)


def test_documented_difference_weight_above_threshold():
    # weight 2·θ: the time-stepped layer emits floor(v/θ) = 2 spikes per input; the chip fires once
    # per update and stays charged (docs/chip-model.md rule 1), so the counts differ.
    conv = torch.nn.Conv2d(1, 1, 1, bias=False)
    conv.weight.data.fill_(20.0)
    model = torch.nn.Sequential(conv, SpikingLayer(10, threshold_low=None))
    raster = np.zeros((3, 1, 1, 1), np.int64)
    raster[0] = 1
    stepped, exact, _ = run_both(model, raster, [(1, 1, 1)])
    assert stepped[0][:, 0, 0, 0].tolist() == [2, 0, 0]
    assert exact[0][:, 0, 0, 0].tolist() == [1, 0, 0]


def test_builder_maps_layers_pooling_linear_and_leak():
    model = torch.nn.Sequential(
        integer_conv(2, 4, 3, -2, 3, 0, stride=2, padding=1), SpikingLayer(5, threshold_low=-3, membrane_reset=True),
        torch.nn.AvgPool2d(2), torch.nn.Dropout(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 2 * 2, 3), SpikingLayer(7),
    )
    model[5].weight.data = torch.arange(-24, 24).reshape(3, 16).float() * 4  # AvgPool(2) folds 1/4 in
    model[5].bias.data = torch.tensor([1.0, 0.0, -2.0])
    net = network_from_sequential(model, (2, 8, 8), slow_clock_period_us=500)
    l0, l1 = net.layers[0], net.layers[1]
    assert (l0.input_shape, l0.output_shape, l0.stride, l0.padding, l0.reset) == ((2, 8, 8), (4, 4, 4), (2, 2), (1, 1), "zero")
    assert (l0.threshold_high, l0.threshold_low, l0.destinations[0].pooling, l0.monitor) == (5, -3, 2, False)
    assert l1.input_shape == (4, 2, 2) and l1.weights.shape == (3, 4, 2, 2) and l1.monitor
    assert l1.weights.reshape(3, 16).tolist() == np.arange(-24, 24).reshape(3, 16).tolist()
    assert l1.bias.tolist() == [1, 0, -2] and l1.leak_enable and l1.threshold_low == -1
    assert net.slow_clock_period_us == 500 and l1.destinations == []


@pytest.mark.parametrize("modules, fragment", [
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), SpikingLayer(1, membrane_subtract=2)], "membrane_subtract = 2"),
    (lambda: [integer_conv(1, 1, 1, 200, 200, 0), SpikingLayer(1)], "module 0: weight[0, 0, 0, 0] = 200.0"),
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), SpikingLayer(1.5)], "threshold = 1.5"),
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), torch.nn.ReLU()], "module 1 (ReLU): not supported"),
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), SpikingLayer(1), SumPool2d(2)], "ends with pooling"),
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), SpikingLayer(1), SumPool2d(4), SumPool2d(2)], "total pooling 8"),
    (lambda: [integer_conv(1, 1, 1, 0, 1, 0), integer_conv(1, 1, 1, 0, 1, 0)], "two weight layers in a row"),
    (lambda: [torch.nn.Conv2d(1, 1, 1), SpikingLayer(1)], "pass slow_clock_period_us"),
    (lambda: [integer_conv(1, 1, 3, 0, 1, 0, dilation=2), SpikingLayer(1)], "dilation (2, 2)"),
])
def test_unsupported_models_raise_naming_the_module(modules, fragment):
    model = torch.nn.Sequential(*modules())
    if isinstance(model[0], torch.nn.Conv2d) and model[0].bias is not None:
        model[0].bias.data.fill_(1.0)
        model[0].weight.data.fill_(1.0)
    with pytest.raises(UnsupportedModelError) as err:
        network_from_sequential(model, (1, 8, 8))
    assert fragment in str(err.value)


def test_a_trained_scalar_threshold_maps_and_per_channel_thresholds_are_refused():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False),
                                SpikingLayer(threshold=torch.nn.Parameter(torch.tensor(2.0))))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    assert network_from_sequential(model, (1, 2, 2)).layers[0].threshold_high == 2
    model[1].threshold = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    with pytest.raises(UnsupportedModelError, match=r"module 1 \(SpikingLayer\): 2 thresholds \(one per channel\)"):
        network_from_sequential(model, (1, 2, 2))
