"""network_from_sequential, and the time-stepped layers against the event-exact engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnlib import (
    Destination,
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


def conv(c_in=1, c_out=1, k=1, value=1.0, **kw) -> torch.nn.Conv2d:
    layer = torch.nn.Conv2d(c_in, c_out, k, bias=False, **kw)
    layer.weight.data.fill_(value)
    return layer


UNSUPPORTED = [  # (modules, input shape, fragment of the message)
    (lambda: [conv(), SpikingLayer(1, negative_spikes=True)], (1, 4, 4), "module 1 (SpikingLayer): negative_spikes=True"),
    (lambda: [conv(2, 2, groups=2), SpikingLayer(1)], (2, 4, 4), "groups 2"),
    (lambda: [conv(padding=1, padding_mode="reflect"), SpikingLayer(1)], (1, 4, 4), "padding_mode 'reflect'"),
    (lambda: [conv(padding="same"), SpikingLayer(1)], (1, 4, 4), "padding 'same'"),
    (lambda: [conv(k=(1, 3)), SpikingLayer(1)], (1, 4, 4), "module 0 (Conv2d): kernel (1, 3)"),
    (lambda: [torch.nn.Flatten(), conv(), SpikingLayer(1)], (1, 1, 1), "module 1 (Conv2d): after Flatten"),
    (lambda: [conv(2), SpikingLayer(1)], (1, 4, 4), "module 0: expects 2 input channels, gets (1, 4, 4)"),
    (lambda: [torch.nn.Flatten(), torch.nn.Linear(15, 2, bias=False), SpikingLayer(1)], (1, 4, 4),
     "module 1 (Linear): in_features 15, gets 1x4x4 = 16"),
    (lambda: [torch.nn.Linear(16, 2, bias=False), SpikingLayer(1)], (1, 4, 4), "input (1, 4, 4) is not flat"),
    (lambda: [torch.nn.Flatten(), torch.nn.Linear(8, 2, bias=False), SpikingLayer(1)], (1, 2, 4),
     "input map 2x4 becomes a 2x4 kernel"),
    (lambda: [SpikingLayer(1)], (1, 4, 4), "module 0 (SpikingLayer): no Conv2d / Linear before it"),
    (lambda: [SumPool2d(2), conv(), SpikingLayer(1)], (1, 4, 4), "module 0 (SumPool2d): pooling must follow"),
    (lambda: [conv(), SumPool2d(2), SpikingLayer(1)], (1, 4, 4), "module 1 (SumPool2d): pooling must follow"),
    (lambda: [conv(), SpikingLayer(1), SumPool2d(2, stride=1), conv(), SpikingLayer(1)], (1, 4, 4), "stride (1, 1)"),
    (lambda: [conv(), SpikingLayer(1), SumPool2d((2, 1)), conv(), SpikingLayer(1)], (1, 4, 4), "kernel (2, 1)"),
    (lambda: [conv(), SpikingLayer(1), torch.nn.AvgPool2d(2, padding=1), conv(), SpikingLayer(1)], (1, 4, 4),
     "padding (1, 1)"),
    (lambda: [conv(), SpikingLayer(1), SumPool2d(2, ceil_mode=True), conv(), SpikingLayer(1)], (1, 4, 4), "no ceil_mode"),
    (lambda: [conv(), SpikingLayer(1), SumPool2d(3), conv(), SpikingLayer(1)], (1, 6, 6), "total pooling 3"),
    (lambda: [conv(), SpikingLayer(1), torch.nn.AvgPool2d(2)], (1, 4, 4), "ends with pooling"),
    (lambda: [conv(), SpikingLayer(1), conv()], (1, 4, 4), "module 2: the last weight layer needs a SpikingLayer"),
    (lambda: [torch.nn.Identity()], (1, 4, 4), "no SpikingLayer"),
    (lambda: [conv(value=128.0), SpikingLayer(1)], (1, 4, 4), "weight[0, 0, 0, 0] = 128.0"),
    (lambda: [conv(value=-129.0), SpikingLayer(1)], (1, 4, 4), "weight[0, 0, 0, 0] = -129.0"),
    (lambda: [conv(), SpikingLayer(32768)], (1, 4, 4), "threshold = 32768.0"),
    (lambda: [conv(), SpikingLayer(0.5)], (1, 4, 4), "threshold = 0.5"),
    (lambda: [conv(), SpikingLayer(3, threshold_low=-32769)], (1, 4, 4), "threshold_low = -32769.0"),
]


@pytest.mark.parametrize("case", range(len(UNSUPPORTED)))
def test_each_module_the_chip_cannot_run_is_named_with_its_reason(case):
    modules, shape, fragment = UNSUPPORTED[case]
    with pytest.raises(UnsupportedModelError) as err:
        network_from_sequential(torch.nn.Sequential(*modules()), shape)
    assert fragment in str(err.value)


def test_parameters_at_the_ends_of_the_chips_ranges_map():
    model = torch.nn.Sequential(conv(value=127.0), SpikingLayer(32767, threshold_low=None), SumPool2d(4),
                                conv(value=-128.0), SpikingLayer(1, threshold_low=-32768, membrane_reset=True))
    net = network_from_sequential(model, (1, 4, 4), monitor=[0, 1])
    l0, l1 = net.layers[0], net.layers[1]
    assert (l0.threshold_high, l0.threshold_low, l0.weights.max(), l0.destinations) == (32767, -32768, 127, [Destination(1, 4)])
    assert (l1.threshold_high, l1.threshold_low, l1.weights.min(), l1.input_shape, l1.reset) == (1, -32768, -128, (1, 1, 1), "zero")
    assert l0.monitor and l1.monitor and l0.bias is None and not l0.leak_enable
    biased = torch.nn.Conv2d(1, 1, 1)
    biased.weight.data.fill_(1.0)
    biased.bias.data.fill_(0.0)  # an all-zero bias is no leak: no slow clock needed
    assert network_from_sequential(torch.nn.Sequential(biased, SpikingLayer(1)), (1, 2, 2)).layers[0].bias is None
    biased.bias.data.fill_(-32768.0)
    assert network_from_sequential(torch.nn.Sequential(biased, SpikingLayer(1)), (1, 2, 2),
                                   slow_clock_period_us=10).layers[0].bias.tolist() == [-32768]
    biased.bias.data.fill_(32768.0)
    with pytest.raises(UnsupportedModelError, match=r"module 0: bias\[0\] = 32768.0"):
        network_from_sequential(torch.nn.Sequential(biased, SpikingLayer(1)), (1, 2, 2), slow_clock_period_us=10)


@pytest.mark.parametrize("monitor, monitored", [("output", [False, False, True]), ("all", [True] * 3),
                                                ([0, 2], [True, False, True]), ((), [False] * 3)])
def test_monitor_picks_the_output_all_or_the_layers_listed(monitor, monitored):
    model = torch.nn.Sequential(conv(), SpikingLayer(1), conv(), SpikingLayer(1), conv(), SpikingLayer(1))
    net = network_from_sequential(model, (1, 2, 2), monitor=monitor)
    assert [net.layers[i].monitor for i in range(3)] == monitored
    assert [d.layer for i in range(3) for d in net.layers[i].destinations] == [1, 2]


@pytest.mark.parametrize("monitor", [[3], [-1], "last", [0, 1.0]])
def test_monitor_refuses_what_is_not_a_layer(monitor):
    model = torch.nn.Sequential(conv(), SpikingLayer(1), conv(), SpikingLayer(1), conv(), SpikingLayer(1))
    with pytest.raises(UnsupportedModelError, match=r"expected 'output', 'all' or a list of layer ids in \[0, 3\)"):
        network_from_sequential(model, (1, 2, 2), monitor=monitor)


@pytest.mark.parametrize("model, shape, fragment", [
    (lambda: torch.nn.ModuleList([conv(), SpikingLayer(1)]), (1, 2, 2), "model: got ModuleList"),
    (lambda: torch.nn.Sequential(conv(), SpikingLayer(1)), (1, 2), "input_shape=(1, 2)"),
    (lambda: torch.nn.Sequential(conv(), SpikingLayer(1)), (1, 0, 2), "input_shape=(1, 0, 2)"),
])
def test_the_model_and_input_shape_are_checked_first(model, shape, fragment):
    with pytest.raises(UnsupportedModelError) as err:
        network_from_sequential(model(), shape)
    assert fragment in str(err.value)
