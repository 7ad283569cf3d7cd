"""Every per-layer limit of docs/chip-model.md triggered once, with its message; all violations come in one report."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from mapper import Limits, MappingError, map_model
from mapper.checks import check_core
from mapper.graph import extract_graph
from mapper.legalize import legalize
from snnlib import CoreLayer, Cropping2dLayer, Destination, SpikingLayer, SumPool2d
from snnlib.network import DVS_LAYER_ID


def _problems(model, shape, **kw) -> list[str]:
    with pytest.raises(MappingError) as err:
        map_model(model, shape, **kw)
    assert err.value.report.violations and not err.value.report.ok
    return [str(v) for v in err.value.report.violations]


def _has(problems, *fragments):
    assert any(all(f in p for f in fragments) for p in problems), problems


def _per_neuron_threshold():
    layer = SpikingLayer()
    layer.threshold = torch.ones(4)  # set after construction: the layer itself takes scalars
    return layer


def seq(*layers):
    return nn.Sequential(*layers)


@pytest.mark.parametrize("model, shape, fragments", [
    (seq(nn.Conv2d(2, 4, (3, 5)), SpikingLayer()), (2, 8, 8), ["0: kernel must be square", "3x5", "5x5 kernel"]),
    (seq(nn.Conv2d(2, 4, 17), SpikingLayer()), (2, 20, 20), ["kernel size must be <= 16", "17x17"]),
    (seq(nn.Conv2d(2, 4, 3, stride=3), SpikingLayer()), (2, 16, 16), ["stride must be one of (1, 2, 4, 8)", "3 (y)", "use stride 2 or add 2x2 pooling"]),
    (seq(nn.Conv2d(2, 4, 3, padding=8), SpikingLayer()), (2, 8, 8), ["padding must be 0..7", "8 (y)"]),
    (seq(nn.Conv2d(2, 4, 1), SpikingLayer(), SumPool2d(3), nn.Conv2d(4, 2, 1), SpikingLayer()), (2, 9, 9),
     ["0: pooling must be one of (1, 2, 4)", "got 3"]),
    (seq(nn.Conv2d(2, 1100, 1), SpikingLayer()), (2, 2, 2), ["at most 1024 output channels", "1100", "reduce out_channels to <= 1024"]),
    (seq(nn.Conv2d(1100, 4, 1), SpikingLayer()), (1100, 2, 2), ["at most 1024 input channels", "1100"]),
    (seq(nn.Conv2d(2, 4, 1, stride=2), SpikingLayer()), (2, 130, 128), ["input map must be <= 128x128", "130x128"]),
    (seq(nn.Conv2d(2, 4, 3, padding=1), SpikingLayer()), (2, 128, 128), ["output map must be <= 64x64 before pooling", "128x128", "use stride 2 or add 2x2 pooling"]),
    (seq(nn.Conv2d(2, 4, 1, bias=False), SpikingLayer(), nn.Conv2d(4, 4, 1, bias=False), SpikingLayer()), (2, 4, 4), []),  # control: fits
    (seq(nn.Conv2d(2, 4, 3), nn.ReLU()), (2, 8, 8), ["1: unsupported layer type", "ReLU"]),
    (seq(nn.Conv2d(2, 4, 3), nn.MaxPool2d(2)), (2, 8, 8), ["unsupported layer type", "MaxPool2d"]),
    (seq(nn.Conv2d(2, 4, 3), nn.Conv2d(4, 4, 1), SpikingLayer()), (2, 8, 8), ["must be followed by a SpikingLayer"]),
    (seq(nn.Conv2d(2, 4, 3), _per_neuron_threshold()), (2, 8, 8), ["one threshold pair per core", "4 values"]),
    (seq(nn.Conv2d(2, 4, 3), SpikingLayer(membrane_subtract=0.5)), (2, 8, 8), ["subtracts exactly the threshold"]),
    (seq(nn.Conv2d(2, 4, 3, groups=2), SpikingLayer()), (2, 8, 8), ["grouped convolution", "groups=2"]),
    (seq(nn.Conv2d(2, 4, 3, dilation=2), SpikingLayer()), (2, 8, 8), ["dilated convolution"]),
    (seq(nn.Conv2d(2, 4, 1), SpikingLayer(), nn.AvgPool2d(2, stride=1), nn.Conv2d(4, 2, 1), SpikingLayer()), (2, 8, 8),
     ["pooling stride must equal its kernel size"]),
    (seq(SumPool2d(2), nn.Conv2d(2, 4, 1), SpikingLayer()), (2, 8, 8), ["input: pooling or cropping the input needs the DVS stage", "dvs=True"]),
    (seq(nn.Conv2d(2, 4, 1), SpikingLayer(), Cropping2dLayer(((1, 1), (1, 1))), nn.Conv2d(4, 2, 1), SpikingLayer()), (2, 8, 8),
     ["cropping is only possible on the input"]),
    (seq(nn.Conv2d(2, 4, 1), SpikingLayer(), SpikingLayer()), (2, 8, 8), ["two spiking layers in a row"]),
    (seq(nn.Flatten(), nn.Linear(2 * 3 * 4, 5), SpikingLayer()), (2, 3, 4), ["kernel must be square", "3x4"]),
])
def test_each_rule_is_reported_with_a_fix(model, shape, fragments):
    if not fragments:
        assert map_model(model, shape).report.ok
        return
    _has(_problems(model, shape), *fragments)


def test_more_than_two_destinations():
    class Fan(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.spk = nn.Conv2d(2, 4, 1), SpikingLayer()
            self.heads = nn.ModuleList([nn.Sequential(nn.Conv2d(4, 2, 1), SpikingLayer()) for _ in range(3)])

        def forward(self, x):
            s = self.spk(self.conv(x))
            return self.heads[0](s) + self.heads[1](s) + self.heads[2](s)

    _has(_problems(Fan(), (2, 4, 4)), "conv: at most 2 destinations", "got 3")


def test_all_violations_at_once():
    model = seq(nn.Conv2d(2, 1100, (3, 5), stride=3, padding=9), SpikingLayer(), SumPool2d(3),
                nn.Conv2d(1100, 4, 17), nn.ReLU())
    problems = _problems(model, (2, 140, 140))  # how fast: benchmarks/bench_mapper.py
    for fragment in ["kernel must be square", "stride must be one of", "padding must be 0..7",
                     "at most 1024 output channels", "input map must be <= 128x128",
                     "pooling must be one of", "kernel size must be <= 16", "unsupported layer type"]:
        _has(problems, fragment)


def test_dvs_stage_takes_input_pooling_and_crop():
    model = seq(SumPool2d(2), Cropping2dLayer(((1, 2), (3, 0))), nn.Conv2d(2, 4, 3, bias=False), SpikingLayer())
    config = map_model(model, (2, 128, 128), dvs=True).config
    dvs = config.dvs
    assert dvs.pooling == (2, 2) and dvs.origin == (1, 3) and dvs.cut == (61, 63)
    assert [d.layer for d in dvs.destinations] == list(config.cores)
    assert config.cores[next(iter(config.cores))].input_shape == (2, 61, 61)
    _has(_problems(seq(SumPool2d(3), nn.Conv2d(2, 4, 3), SpikingLayer()), (2, 96, 96), dvs=True),
         "DVS pooling must be one of")


def test_bad_arguments_name_the_argument():
    model = seq(nn.Conv2d(2, 4, 3), SpikingLayer())
    with pytest.raises(ValueError, match=r"input_shape=\(2, 8\)"):
        map_model(model, (2, 8))
    with pytest.raises(ValueError, match="chip='speck9'"):
        map_model(model, (2, 8, 8), chip="speck9")
    with pytest.raises(TypeError, match="monitor='1'"):
        map_model(model, (2, 8, 8), monitor="1")
    _has(_problems(model, (2, 8, 8), monitor=["nope"]), "monitor names no layer", "'0', '1'")


class _TwoInputBranches(nn.Module):
    """The input pooled twice, 2x2 and ``second x second``, into two cores."""

    def __init__(self, second: int):
        super().__init__()
        self.pool_a, self.pool_b = SumPool2d(2), SumPool2d(second)
        self.conv_a, self.conv_b = nn.Conv2d(2, 4, 1, bias=False), nn.Conv2d(2, 4, 1, bias=False)
        self.spk_a, self.spk_b = SpikingLayer(), SpikingLayer()

    def forward(self, x):
        return self.spk_a(self.conv_a(self.pool_a(x))), self.spk_b(self.conv_b(self.pool_b(x)))


def test_input_branches_share_one_dvs_pooling():
    assert map_model(_TwoInputBranches(2), (2, 16, 16), dvs=True).input == DVS_LAYER_ID  # one pooling
    _has(_problems(_TwoInputBranches(4), (2, 16, 16), dvs=True),
         "one DVS pooling and crop for all input branches", "pool and crop the input once")


def _core(k=1, shape=(1, 8, 8), stride=(1, 1), padding=(0, 0), poolings=()):
    return CoreLayer(np.zeros((1, shape[0], *k) if isinstance(k, tuple) else (1, shape[0], k, k), np.int8), shape,
                     1, -1, stride, padding, destinations=[Destination(0, p) for p in poolings])


SMALL = Limits(strides=(1, 2, 4, 8), max_output_size=(8, 8))


@pytest.mark.parametrize("core, limits, violations", [
    (_core(3, (1, 3, 3)), Limits(), []),  # a kernel as large as its input: one output pixel
    (_core(stride=(1, 2)), Limits(strides=(2, 4)), [("stride must be one of (2, 4)", "1 (y)", "use stride 2")]),
    *[(_core(stride=(1, s)), Limits(), [("stride must be one of (1, 2, 4, 8)", f"{s} (x)",
                                         f"use stride {near} or add 2x2 pooling before this layer")])
      for s, near in [(3, 2), (5, 4), (6, 4), (7, 8), (9, 8), (16, 8)]],
    (_core(stride=(2, 1)), Limits(strides=(1, 4)), [("stride must be one of (1, 4)", "2 (y)",
                                                     "use stride 1 or add 2x2 pooling before this layer")]),
    (_core(padding=(0, -1)), Limits(), [("padding must be 0..7", "-1 (x)",
                                         "use padding <= 7 (a smaller kernel needs less)")]),
    (_core(5, (1, 4, 8)), Limits(), [("kernel must fit the input map", "kernel 5x5 on 4x8",
                                      "use a smaller kernel or more padding")]),
    (_core(5, (1, 8, 4)), Limits(), [("kernel must fit the input map", "kernel 5x5 on 8x4",
                                      "use a smaller kernel or more padding")]),
    (_core(shape=(1, 8, 8)), SMALL, []),
    (_core(shape=(1, 30, 20)), SMALL, [("output map must be <= 8x8 before pooling", "30x20",
                                        "use stride 4 or add 4x4 pooling before this layer")]),
    (_core(shape=(1, 8, 30)), SMALL, [("output map must be <= 8x8 before pooling", "8x30",
                                       "use stride 4 or add 4x4 pooling before this layer")]),
    (_core(shape=(1, 9, 8)), SMALL, [("output map must be <= 8x8 before pooling", "9x8",
                                      "use stride 2 or add 2x2 pooling before this layer")]),
    (_core(shape=(1, 100, 17)), SMALL, [("output map must be <= 8x8 before pooling", "100x17",
                                         "use stride 8 or add 13x13 pooling before this layer")]),
    (_core(3, shape=(1, 17, 17), padding=(1, 1)), SMALL, [("output map must be <= 8x8 before pooling", "17x17",
                                                           "use stride 4 or add 3x3 pooling before this layer")]),
    (_core(3, (1, 17, 9), stride=(2, 1), padding=(1, 0)), SMALL, [  # each axis with its own stride and padding
        ("output map must be <= 8x8 before pooling", "9x7", "use stride 4 or add 2x2 pooling before this layer")]),
    *[(_core(poolings=(1, p)), Limits(), [("pooling must be one of (1, 2, 4)", p,
                                           f"use pooling {fix} (chain two poolings of the allowed sizes, or add a stride)")])
      for p, fix in [(0, 1), (3, 2), (5, 4), (8, 4)]],
    (_core(poolings=(1, 2)), Limits(), []),
    (_core(poolings=(1, 2, 4)), Limits(), [("at most 2 destinations", 3,
                                            "send this layer's output to fewer layers (chain them instead)")]),
])
def test_each_violation_names_the_value_and_the_nearest_allowed_fix(core, limits, violations):
    assert [(v.rule, v.value, v.fix) for v in check_core("c", core, limits)] == violations


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_shape=(2, 8, 0)), ValueError, "input_shape=(2, 8, 0): expected (channels, height, width), 3 positive ints"),
    (dict(input_shape=(2, 8, 8.5)), ValueError, "input_shape=(2, 8, 8.5): expected"),
    (dict(input_shape=(2, 8, 8, 1)), ValueError, "input_shape=(2, 8, 8, 1): expected"),
    (dict(input_shape="288"), ValueError, "input_shape='288': expected"),
    (dict(input_shape=None), ValueError, "input_shape=None: expected"),
    (dict(monitor=["0", 1]), TypeError, "monitor=['0', 1]: expected None, 'all' or a list of model layer names"),
    (dict(layer2core=[("0", 1)]), TypeError, "layer2core=[('0', 1)]: expected a dict model layer name -> core id"),
    (dict(dvs="yes"), TypeError, "dvs='yes': expected True/False or a mapper.DVSConfig template"),
    (dict(dvs=1), TypeError, "dvs=1: expected True/False"),
    (dict(readout=1), TypeError, "readout=1: expected True/False or an snnlib.Readout"),
    *[(dict(slow_clock_period_us=v), ValueError, f"slow_clock_period_us={v!r}: expected None or a positive int")
      for v in (0, -1, True, 1.0, "1000")],
])
def test_each_bad_argument_is_named_with_what_is_expected(kwargs, error, message):
    model = seq(nn.Conv2d(2, 4, 3, bias=False), SpikingLayer())
    kwargs = {"input_shape": (2, 8, 8), **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        map_model(model, **kwargs)


def test_the_smallest_arguments_of_each_kind_are_accepted():
    model = seq(nn.Conv2d(2, 4, 3, bias=False), SpikingLayer())
    mapping = map_model(model, [2, 3, 3], slow_clock_period_us=1, monitor=[], layer2core={}, dvs=False, readout=False)
    assert (mapping.config.slow_clock_period_us, mapping.config.cores[0].monitor, mapping.config.dvs) == (1, False, None)
    assert mapping.config.cores[0].output_shape == (4, 1, 1)
    assert map_model(model, (2, 3, 3), dvs=True).config.dvs.input_shape == (2, 3, 3)


def _legal(model, shape=(1, 8, 8), **kw):
    return legalize(extract_graph(model, shape), **kw)


def test_string_padding_is_written_as_numbers_and_only_zero_padding_maps():
    same = _legal(seq(nn.Conv2d(1, 2, 5, padding="same", bias=False), SpikingLayer()))
    assert same.cores["0"].padding == (2, 2) and same.cores["0"].output_shape == (2, 8, 8)
    assert [str(n) for n in same.notes] == ["0: padding='same' written as (2, 2)"]
    valid = _legal(seq(nn.Conv2d(1, 2, 3, padding="valid", bias=False), SpikingLayer()))
    assert valid.cores["0"].padding == (0, 0) and [str(n) for n in valid.notes] == ["0: padding='valid' written as (0, 0)"]
    reflect = _legal(seq(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect", bias=False), SpikingLayer()))
    assert [(v.rule, v.value, v.fix) for v in reflect.violations] == [
        ("only zero padding is supported", "padding_mode='reflect'", "use padding_mode='zeros'")]


@pytest.mark.parametrize("threshold, low, rules", [
    (1.0, 0.999, []),
    (1.0, None, []),
    (1.0, 1.0, ["threshold_low must be below threshold"]),
    (1.0, 2.0, ["threshold_low must be below threshold"]),
    (0.001, -1.0, []),
    (0.0, -1.0, ["threshold must be positive"]),
    (-1.0, -2.0, ["threshold must be positive"]),
])
def test_a_threshold_must_be_positive_and_above_threshold_low(threshold, low, rules):
    spiking = SpikingLayer(threshold=1.0)
    spiking.threshold, spiking.threshold_low = threshold, low
    legal = _legal(seq(nn.Conv2d(1, 2, 3, bias=False), spiking))
    assert [v.rule for v in legal.violations] == rules
    assert (legal.cores["0"].threshold, legal.cores["0"].threshold_low) == (threshold, low)


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_folds_into_the_weights_and_bias_with_its_running_statistics(affine):
    conv, bn = nn.Conv2d(1, 2, 1, bias=True), nn.BatchNorm2d(2, eps=0.0, affine=affine)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([3.0, -2.0]).reshape(2, 1, 1, 1)
        conv.bias[:] = torch.tensor([1.0, 0.5])
        bn.running_mean[:] = torch.tensor([0.5, -1.5])
        bn.running_var[:] = torch.tensor([4.0, 0.25])
        if affine:
            bn.weight[:] = torch.tensor([2.0, 3.0])
            bn.bias[:] = torch.tensor([0.25, -1.0])
    plan = _legal(seq(conv, bn.eval(), SpikingLayer())).cores["0"]
    gamma, beta = ([2.0, 3.0], [0.25, -1.0]) if affine else ([1.0, 1.0], [0.0, 0.0])
    factor = [gamma[0] / 2.0, gamma[1] / 0.5]  # gamma / sqrt(var)
    assert plan.weights.ravel().tolist() == [3.0 * factor[0], -2.0 * factor[1]]
    assert plan.bias.tolist() == [(1.0 - 0.5) * factor[0] + beta[0], (0.5 + 1.5) * factor[1] + beta[1]]
    assert plan.layer_names == ["0", "1", "2"]


def test_layer2core_values_must_be_core_ids():
    model = seq(nn.Conv2d(2, 4, 3, bias=False), SpikingLayer())
    for core in ("3", True, 3.0):
        with pytest.raises(MappingError) as err:
            map_model(model, (2, 8, 8), layer2core={"0": core})
        assert [(v.layer, v.rule, v.value, v.fix) for v in err.value.report.violations] == [
            ("0", "layer2core values must be core ids", core, "use an int")]
    assert list(map_model(model, (2, 8, 8), layer2core={"0": 3}).config.cores) == [3]


def test_a_layer_not_followed_by_a_spiking_layer_is_no_output_for_the_readout():
    problems = _problems(seq(nn.Conv2d(2, 4, 3, bias=False), nn.ReLU()), (2, 8, 8), readout=True,
                         slow_clock_period_us=1000)
    _has(problems, "readout: one output layer feeds the readout (got 0 output layers)")
    assert not any("the readout takes a 1x1 output" in p for p in problems), problems


def test_pooling_between_cores_that_is_not_square_is_named_on_the_spiking_layer_that_sends():
    model = seq(nn.Conv2d(2, 4, 1, bias=False), SpikingLayer(), nn.AvgPool2d((2, 1)), nn.Conv2d(4, 2, 1, bias=False),
                SpikingLayer())
    _has(_problems(model, (2, 8, 8)), "1: pooling between cores must be square (got 2x1); fix: use 2x2 pooling")


def test_negative_spikes_are_refused_and_a_spiking_layer_pickled_before_the_option_maps():
    _has(_problems(seq(nn.Conv2d(2, 4, 3), SpikingLayer(negative_spikes=True)), (2, 8, 8)),
         "1: negative spikes are not supported (got negative_spikes=True); fix: use negative_spikes=False")
    old = SpikingLayer()
    del old.negative_spikes  # as unpickled from a version without the option
    assert map_model(seq(nn.Conv2d(2, 4, 3, bias=False), old), (2, 8, 8)).report.ok


def test_per_neuron_thresholds_are_refused_and_checked_by_their_first_value():
    spiking = SpikingLayer()
    spiking.threshold = torch.tensor([2.0, -3.0])
    legal = _legal(seq(nn.Conv2d(1, 2, 3, bias=False), spiking))
    assert [(v.rule, v.value) for v in legal.violations][0] == ("one threshold pair per core", "threshold with 2 values")
    assert "threshold must be positive" not in [v.rule for v in legal.violations] and legal.cores["0"].threshold == 2.0


def test_crops_on_the_input_add_up_side_by_side():
    model = seq(SumPool2d(2), Cropping2dLayer(((1, 2), (3, 0))), Cropping2dLayer(((4, 0), (0, 5))),
                nn.Conv2d(2, 4, 1, bias=False), SpikingLayer())
    config = map_model(model, (2, 128, 128), dvs=True).config
    assert (config.dvs.origin, config.dvs.cut) == ((5, 3), (61, 58))  # 64x64 less (5 + 2) rows, (3 + 5) columns
    assert next(iter(config.cores.values())).input_shape == (2, 57, 56)


@pytest.mark.parametrize("pool, scale", [(nn.AvgPool2d(2), 1 / 4), (nn.AvgPool2d(4), 1 / 16), (SumPool2d(4), 1.0)])
def test_average_pooling_scales_the_next_layers_weights_by_its_area_and_sum_pooling_does_not(pool, scale):
    second = nn.Conv2d(4, 2, 1, bias=False)
    with torch.no_grad():
        second.weight.fill_(0.5)
    legal = _legal(seq(nn.Conv2d(2, 4, 1, bias=False), SpikingLayer(), pool, second, SpikingLayer()), (2, 16, 16))
    assert legal.cores["3"].weights.ravel().tolist() == [0.5 * scale] * 8
    assert legal.cores["0"].destinations[0].pooling == pool.kernel_size


class _Merge(nn.Module):
    """Two branches from one spiking layer summed into one conv: ``a`` and ``b`` pool each."""

    def __init__(self, a, b):
        super().__init__()
        self.conv, self.spk, self.a, self.b = nn.Conv2d(2, 4, 1, bias=False), SpikingLayer(), a, b
        self.head, self.out = nn.Conv2d(4, 2, 1, bias=False), SpikingLayer()

    def forward(self, x):
        s = self.spk(self.conv(x))
        return self.out(self.head(self.a(s) + self.b(s)))


@pytest.mark.parametrize("a, b, rule", [
    (SumPool2d(2), SumPool2d(2), None),
    (SumPool2d(2), SumPool2d(4), "summed inputs must have the same shape"),
    (nn.AvgPool2d(2), SumPool2d(2), "inputs arrive with different AvgPool scales"),
])
def test_summed_branches_need_one_shape_and_one_avgpool_scale(a, b, rule):
    legal = _legal(_Merge(a, b), (2, 16, 16))
    assert [v.rule for v in legal.violations] == ([rule] if rule else [])


def test_a_layer_refused_as_a_core_after_a_spiking_layer_is_reported_not_crashed_on():
    for pool in (nn.Identity(), nn.AvgPool2d(2)):  # the average pooling would scale its weights
        model = seq(nn.Conv2d(2, 4, 1, bias=False), SpikingLayer(), pool, nn.Conv2d(3, 2, 1, bias=False), SpikingLayer())
        _has(_problems(model, (2, 8, 8)), "3: Conv2d in_channels must match its input (got 3 vs 4); fix: use in_channels=4")


def test_legalize_pools_and_crops_the_input_only_when_told_the_input_is_the_dvs_stage():
    model = seq(SumPool2d(2), nn.Conv2d(2, 4, 1, bias=False), SpikingLayer())
    assert [v.rule for v in _legal(model, (2, 16, 16)).violations] == ["pooling or cropping the input needs the DVS stage"]
    assert _legal(model, (2, 16, 16), dvs=True).dvs.pooling == (2, 2)
