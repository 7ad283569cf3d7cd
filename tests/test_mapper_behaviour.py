"""Mapping does not change behaviour: the ChipConfig, run on the event-exact engine, gives
exactly the events of the quantized model run event-exactly at model level."""

from __future__ import annotations

import copy

import numpy as np
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from mapper import map_model
from snnlib import CoreLayer, Destination, IntegerNetwork, SpikingLayer, SumPool2d, empty_events
from snnlib.engine import simulate


def quantized_copy(model: nn.Module, config) -> nn.Module:
    """The model with each layer's numbers scaled by its core's scale and rounded (half to even)."""
    q = copy.deepcopy(model)
    modules = dict(q.named_modules())
    for core in config.cores.values():
        for name in core.layer_names:
            m = modules[name]
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.data = torch.round(m.weight.data.double() * core.scale)
            elif isinstance(m, SpikingLayer):
                m.threshold = float(np.round(m.threshold * core.scale))
                low = None if m.threshold_low is None else float(np.round(m.threshold_low * core.scale))
                m.threshold_low = -32768.0 if low is None else (-1.0 if low == 0 else low)
    return q


def model_network(model: nn.Sequential, input_shape) -> IntegerNetwork:
    """Model-level integer network, ids 0..n-1 in layer order, straight from a quantized
    Sequential of [Flatten] Conv2d/Linear -> SpikingLayer [-> SumPool2d] blocks."""
    layers, pools, shape, pending, flat_shape = [], [], tuple(input_shape), None, None
    for m in model:
        if isinstance(m, nn.Flatten):
            flat_shape = shape
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight.detach().numpy()
            if isinstance(m, nn.Linear):
                w, stride, pad = w.reshape(w.shape[0], *flat_shape), (1, 1), (0, 0)
            else:
                stride, pad = tuple(m.stride), tuple(m.padding)
            pending = CoreLayer(w.astype(np.int8), shape, 0, 0, stride, pad)
        elif isinstance(m, SpikingLayer):
            pending.threshold_high, pending.threshold_low = int(m.threshold), int(m.threshold_low)
            pending.reset, pending.monitor = ("zero" if m.membrane_reset else "subtract"), True
            layers.append(pending)
            pools.append(1)
            shape = pending.output_shape
        elif isinstance(m, SumPool2d):
            pools[-1] = m.kernel_size
            shape = (shape[0], shape[1] // m.kernel_size, shape[2] // m.kernel_size)
    for i, layer in enumerate(layers[:-1]):
        layer.destinations = [Destination(i + 1, pooling=pools[i])]
    return IntegerNetwork(dict(enumerate(layers)))


def random_events(rng, shape, n=300, layer=0):
    ev = empty_events(n)
    ev["t"] = np.sort(rng.integers(0, 5000, n))
    ev["layer"] = layer
    ev["channel"], ev["y"], ev["x"] = (rng.integers(0, s, n) for s in shape)
    return ev


def random_model(rng):
    c, size = int(rng.integers(1, 3)), int(rng.integers(6, 11))
    layers, shape = [], (c, size, size)
    for i in range(int(rng.integers(1, 4))):
        f, k = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        stride, pad = int(rng.choice([1, 2])), int(rng.integers(0, 2))
        if (shape[1] + 2 * pad - k) // stride + 1 < 2:
            break
        layers.append(nn.Conv2d(shape[0], f, k, stride=stride, padding=pad, bias=False))
        low = None if rng.random() < 0.3 else -float(rng.uniform(0.2, 3))
        layers.append(SpikingLayer(float(rng.uniform(0.3, 2)), low, membrane_reset=bool(rng.random() < 0.3)))
        out = (shape[1] + 2 * pad - k) // stride + 1
        shape = (f, out, out)
        if out >= 4 and rng.random() < 0.5:
            layers.append(SumPool2d(2))
            shape = (f, out // 2, out // 2)
    if rng.random() < 0.5:
        layers += [nn.Flatten(), nn.Linear(int(np.prod(shape)), 3, bias=False), SpikingLayer(1.0, -1.0)]
    model = nn.Sequential(*layers)
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.uniform_(-1, 1)
    return model, (c, size, size)


def _by_model_layer(events, ids):
    out = events.copy()
    out["layer"] = [ids[int(lid)] for lid in events["layer"]]
    return out


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_sequential_models_map_without_changing_behaviour(seed):
    rng = np.random.default_rng(seed)
    model, shape = random_model(rng)
    result = map_model(model, shape, monitor="all")
    config = result.config
    expected_net = model_network(quantized_copy(model, config), shape)
    cores = list(config.cores)
    order = sorted(config.cores, key=lambda cid: int(config.cores[cid].layer_names[0]))
    events = random_events(rng, shape)
    expected = simulate(expected_net, events).events
    chip_events = events.copy()
    chip_events["layer"] = result.input_cores[0]
    got = simulate(config.to_network(), chip_events).events
    got = _by_model_layer(got, {cid: i for i, cid in enumerate(order)})
    assert len(cores) == len(expected_net.layers)
    assert got.tobytes() == expected.tobytes()


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.spk1 = nn.Conv2d(2, 4, 3, padding=1, bias=False), SpikingLayer(1.0, -1.0)
        self.conv2, self.spk2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), SpikingLayer(0.8, -0.5)
        self.conv3, self.spk3 = nn.Conv2d(4, 3, 3, bias=False), SpikingLayer(1.2, None)

    def forward(self, x):
        a = self.spk1(self.conv1(x))
        return self.spk3(self.conv3(a + self.spk2(self.conv2(a))))


def test_residual_model_maps_without_changing_behaviour():
    torch.manual_seed(3)
    model = Residual()
    result = map_model(model, (2, 8, 8), monitor="all")
    config = result.config
    assert any("residual sum" in n.action for n in result.report.transformations)
    q = quantized_copy(model, config)

    def layer(conv, spk):
        return CoreLayer(conv.weight.detach().numpy().astype(np.int8), (conv.in_channels, 8, 8),
                         int(spk.threshold), int(spk.threshold_low), padding=tuple(conv.padding), monitor=True)

    l1, l2, l3 = layer(q.conv1, q.spk1), layer(q.conv2, q.spk2), layer(q.conv3, q.spk3)
    l1.destinations = [Destination(1), Destination(2)]
    l2.destinations = [Destination(2)]
    expected_net = IntegerNetwork({0: l1, 1: l2, 2: l3})
    rng = np.random.default_rng(1)
    events = random_events(rng, (2, 8, 8), n=400)
    expected = simulate(expected_net, events).events
    chip_events = events.copy()
    chip_events["layer"] = result.input_cores[0]
    ids = {cid: ["conv1", "conv2", "conv3"].index(c.layer_names[0]) for cid, c in config.cores.items()}
    got = _by_model_layer(simulate(config.to_network(), chip_events).events, ids)
    assert len(expected) > 10 and got.tobytes() == expected.tobytes()


def test_batchnorm_folds_into_the_core_as_torch_computes_it_even_for_tiny_variances():
    """conv -> BatchNorm2d (eval: running statistics) -> SpikingLayer maps to one core whose
    weights and bias are torch's conv -> BatchNorm to within half a quantization step. The
    channels have running variances from 1 down to far below ``eps`` (a rarely active channel),
    where ``var + eps`` is what keeps the fold finite; torch computes the expected map."""
    torch.manual_seed(5)
    var = torch.tensor([1.0, 0.25, 2e-5, 1e-7], dtype=torch.float64)
    conv, bn = nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4)
    with torch.no_grad():  # folded weights of similar size in every channel
        conv.weight.uniform_(-1, 1).mul_(torch.sqrt(var + bn.eps).float()[:, None, None, None])
        bn.running_var.copy_(var)
        bn.running_mean.uniform_(-0.01, 0.01)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    model = nn.Sequential(conv, bn, SpikingLayer(1.0, -1.0)).eval()
    result = map_model(model, (2, 3, 3), slow_clock_period_us=1000)
    assert any("BatchNorm folded" in n.action for n in result.report.transformations)
    (core,) = result.config.cores.values()
    with torch.no_grad():  # torch's affine map, read off from the zero input and unit impulses
        bias = model[1](model[0](torch.zeros(1, 2, 3, 3))).double().flatten()
        impulses = torch.eye(18).reshape(18, 2, 3, 3)
        weights = (model[1](model[0](impulses)).double().reshape(18, 4) - bias).T.reshape(4, 2, 3, 3)
    step = 0.5 / core.scale + 1e-6
    assert np.abs(core.weights / core.scale - weights.numpy()).max() <= step
    assert np.abs(np.asarray(core.bias) / core.scale - bias.numpy()).max() <= step


def test_an_all_zero_bias_maps_as_no_bias_and_needs_no_slow_clock():
    def model(bias: bool) -> nn.Sequential:
        torch.manual_seed(0)
        conv = nn.Conv2d(2, 4, 3, bias=bias)
        if bias:
            nn.init.zeros_(conv.bias)
        return nn.Sequential(conv, SpikingLayer())

    with_zero_bias = map_model(model(True), (2, 8, 8), "speck2f").config
    assert with_zero_bias.to_json() == map_model(model(False), (2, 8, 8), "speck2f").config.to_json()
