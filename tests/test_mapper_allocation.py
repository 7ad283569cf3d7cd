"""Memory formulas (the worked examples of docs/chip-model.md, "Memory formulas"), allocation, diagnostics, quantization."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mapper import ChipSpec, CoreSpec, MappingError, MemoryNeed, get_chip, kernel_words, map_model, neuron_words
from mapper.legalize import CorePlan
from mapper.memory import max_out_channels
from mapper.quantize import quantize_core, tensor_scale
from mapper.report import FitReport
from snnlib import SpikingLayer


def test_memory_worked_examples():
    assert kernel_words((32, 16, 3, 3)) == 8 * 1024
    assert neuron_words((32, 64, 64)) == 128 * 1024
    assert kernel_words((500, 128, 1, 1)) == 64 * 1024
    assert neuron_words((5, 3, 5)) == 5 * 4 * 8 and kernel_words((3, 2, 5, 5)) == 2 * 32 * 4


def test_16_to_32_on_64x64_fits_nowhere_with_a_fix():
    with pytest.raises(MappingError) as err:
        map_model(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), SpikingLayer()), (16, 64, 64))
    (v,) = err.value.report.violations
    assert v.rule == "fits no core's memory" and "neuron 131072/65536" in str(v.value)
    assert "reduce out_channels of 0 from 32 to <= 16" in v.fix and "stride 2" in v.fix


def test_linear_128_to_500_goes_to_core_5_or_6():
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 500, bias=False), SpikingLayer())
    result = map_model(model, (128, 1, 1))
    assert list(result.config.cores) == [5] and result.input_cores == [5]
    (row,) = result.report.memory
    assert row.need.kernel == 65536 and "65536/65536 (100.0%)" in str(result.report)
    with pytest.raises(MappingError, match=r"does not fit core 0.*use a core it fits: \[5, 6\]"):
        map_model(model, (128, 1, 1), layer2core={"1": 0})
    assert list(map_model(model, (128, 1, 1), layer2core={"2": 6}).config.cores) == [6]


def test_three_big_linears_compete_for_two_cores():
    model = nn.Sequential(nn.Flatten(), *[m for _ in range(3) for m in (nn.Linear(128, 128, bias=False), SpikingLayer())])
    model[1] = nn.Linear(128, 500, bias=False)
    model[3] = nn.Linear(500, 128, bias=False)
    model[5] = nn.Linear(128, 500, bias=False)
    model.append(nn.Linear(500, 10, bias=False))
    model.append(SpikingLayer())
    with pytest.raises(MappingError) as err:
        map_model(model, (128, 1, 1))
    (v,) = err.value.report.violations
    assert v.layer == "1, 3, 5" and v.rule == "3 layers compete for 2 cores" and "[5, 6]" in str(v.value)
    assert v.fix.startswith("reduce out_channels of") and "fits core 3" in v.fix


def test_allocation_is_deterministic_and_ordered():
    model = nn.Sequential(*[m for c in (2, 4, 4, 4) for m in (nn.Conv2d(c, 4, 3, padding=1, bias=False),
                                                              SpikingLayer())])
    a = map_model(model, (2, 16, 16))
    assert a.config.to_json() == map_model(model, (2, 16, 16)).config.to_json()
    assert list(a.config.cores) == [0, 1, 2, 3] and a.input_cores == [0]
    assert [d.layer for d in a.config.cores[0].destinations] == [1]
    assert a.config.monitored_layer_names() == {3: "conv4"}  # model layers 6, 7
    assert set(map_model(model, (2, 16, 16), monitor="all").config.monitored_layer_names()) == {0, 1, 2, 3}
    with pytest.raises(MappingError, match="layer2core puts two layers on one core"):
        map_model(model, (2, 16, 16), layer2core={"0": 4, "2": 4})
    with pytest.raises(MappingError, match="layer2core names a core the chip lacks"):
        map_model(model, (2, 16, 16), layer2core={"0": 11})


def test_too_many_layers():
    model = nn.Sequential(*[m for _ in range(10) for m in (nn.Conv2d(2, 2, 1), SpikingLayer())])
    with pytest.raises(MappingError, match="speck2f has 9 cores"):
        map_model(model, (2, 4, 4))


def test_tensor_scale_and_rounding():
    assert tensor_scale(np.array([1.0, -0.5]), 8) == 127.0
    assert tensor_scale(np.array([-2.0, 1.0]), 8) == 64.0
    assert tensor_scale(np.zeros(3), 8) == float("inf")
    plan = CorePlan("c", ["c", "s"], np.array([0.5, -1.0, 0.25]).reshape(3, 1, 1, 1), np.array([0.01, 0, 0]),
                    (1, 1, 1), (1, 1), (0, 0), threshold=2.0, threshold_low=-0.001)
    q = quantize_core(plan)
    assert q.row.scale == 128.0
    assert q.weights.ravel().tolist() == [64, -128, 32] and q.threshold_high == 256
    assert q.bias.tolist() == [1, 0, 0]  # 1.28 -> 1
    assert q.threshold_low == -1 and "hardware bug" in q.notes[0].action  # -0.128 rounds to 0
    assert q.notes[0].layer == "s"  # on the spiking layer, whose threshold it is
    assert q.row.max_error == pytest.approx(0.28 / 128)
    half = CorePlan("c", ["c", "s"], np.array([1.0, 2.5 / 127, 3.5 / 127]).reshape(3, 1, 1, 1), None,
                    (1, 1, 1), (1, 1), (0, 0), threshold=1.0, threshold_low=None)
    q = quantize_core(half)
    assert q.weights.ravel().tolist() == [127, 2, 4] and q.threshold_low == -32768  # half to even


@pytest.mark.parametrize("has_bias", [False, True])
def test_the_largest_out_channels_that_fit_a_core_is_the_last_count_whose_memory_fits(has_bias):
    # the bound the "reduce out_channels" fix names, against the memory formulas count by count
    cores = list(get_chip("speck2f").cores.values()) + [CoreSpec(3000, 5000, 6), CoreSpec(100, 64, 0)]
    shapes = [(1, 1, (1, 1)), (2, 3, (4, 5)), (3, 2, (7, 3)), (5, 5, (16, 16)), (16, 4, (33, 9)), (16, 4, (1, 1))]
    for c, k, (h, w) in shapes:  # (16, 4, 1x1) fits no core of 100 kernel words whatever its neurons
        for core in cores:
            most = max_out_channels((99, c, k, k), (99, h, w), has_bias, core)
            for f, fits in [(most - 1, True), (most, True), (most + 1, False)][2 - min(most, 2):]:
                assert MemoryNeed.of((f, c, k, k), (f, h, w), has_bias).fits(core) == fits, (f, c, k, h, w, core)


def test_a_linear_layer_on_a_1x1_input_needs_no_flatten_and_on_a_larger_map_it_does():
    model = nn.Sequential(nn.Linear(128, 500, bias=False), SpikingLayer())
    result = map_model(model, (128, 1, 1))
    assert list(result.config.cores) == [5] and result.config.cores[5].weights.shape == (500, 128, 1, 1)
    assert (result.config.cores[5].stride, result.config.cores[5].padding) == ((1, 1), (0, 0))
    for c, h, w in [(8, 2, 2), (4, 1, 2)]:
        with pytest.raises(MappingError) as err:
            map_model(nn.Sequential(nn.Linear(c * h * w, 10, bias=False), SpikingLayer()), (c, h, w))
        (v,) = [v for v in err.value.report.violations if v.rule == "Linear needs a flattened input"]  # 1x2: not square either
        assert (v.value, v.fix) == (f"input map {c}x{h}x{w}", "add nn.Flatten() before 0")


def _plan(weights, threshold, threshold_low, bias=None) -> CorePlan:
    w = np.array(weights, float).reshape(-1, 1, 1, 1)
    return CorePlan("c", ["c", "s"], w, None if bias is None else np.array(bias, float), (1, 1, 1), (1, 1), (0, 0),
                    threshold=threshold, threshold_low=threshold_low)


@pytest.mark.parametrize("plan, scale, weights, high, low, bias", [
    # weights [0.5, -0.25] alone allow 254; the tightest of weights (8 bit), thresholds and bias (16 bit) wins
    (_plan([0.5, -0.25], 1000.0, -1.0), 32.767, [16, -8], 32767, -33, None),  # threshold_high
    (_plan([0.5, -0.25], 1.0, -2000.0), 16.384, [8, -4], 16, -32768, None),  # threshold_low
    (_plan([0.5, -0.25], 2.0, -1.0, bias=[-256.0, 1.0]), 128.0, [64, -32], 256, -128, [-32768, 128]),  # bias
    (_plan([0.5, -0.25], 2.0, None, bias=[100.0, 1.0]), 254.0, [127, -64], 508, -32768, [25400, 254]),  # weights
])
def test_the_scale_is_the_tightest_of_weights_thresholds_and_bias(plan, scale, weights, high, low, bias):
    q = quantize_core(plan)
    assert q.row.scale == pytest.approx(scale, rel=1e-12)
    assert (q.weights.ravel().tolist(), q.threshold_high, q.threshold_low) == (weights, high, low)
    assert (None if q.bias is None else q.bias.tolist()) == bias and q.notes == []


def test_a_threshold_that_rounds_below_1_is_raised_to_1_on_the_spiking_layer():
    q = quantize_core(_plan([1.0], 0.001, -1.0))  # scale 127: 0.127 -> 0
    assert (q.row.scale, q.threshold_high, q.threshold_low) == (127.0, 1, -127)
    assert [(n.layer, n.action) for n in q.notes] == [("s", "threshold rounds to 0; raised to 1")]
    q = quantize_core(_plan([1.0], 1 / 127, -1.0))  # exactly 1: kept, no note
    assert (q.threshold_high, q.notes) == (1, [])


def test_the_worst_rounding_error_counts_the_lower_threshold():
    q = quantize_core(_plan([1.0], 1.0, -0.3))  # scale 127: weights and threshold exact, -38.1 -> -38
    assert (q.weights.ravel().tolist(), q.threshold_high, q.threshold_low) == ([127], 127, -38)
    assert q.row.max_error == pytest.approx(0.1 / 127)


def test_nine_layers_of_which_three_fit_only_two_cores_are_reported_as_competing():
    # as many layers as cores: the competition is still named (not taken for "too many layers")
    sizes = [128, 500, 128, 500, 10, 10, 10, 10, 10, 10]
    model = nn.Sequential(nn.Flatten(), *[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b, bias=False),
                                                                                        SpikingLayer())])
    with pytest.raises(MappingError) as err:
        map_model(model, (128, 1, 1))
    (v,) = err.value.report.violations
    assert v.layer == "1, 3, 5" and v.rule == "3 layers compete for 2 cores" and "[5, 6]" in str(v.value)
    # the smallest cut of the three: 500 -> 256 (49 %) on a 32 Ki core, not 128 -> 64 (50 %)
    assert v.fix == "reduce out_channels of 1 from 500 to <= 256 (then it fits core 3)"


def test_a_layer_that_fits_nowhere_is_told_the_fewest_channels_that_fit_or_what_else_to_shrink():
    def fix(c, f, size=16):
        with pytest.raises(MappingError) as err:
            map_model(nn.Sequential(nn.Conv2d(c, f, 16, bias=False), SpikingLayer()), (c, size, size))
        (v,) = err.value.report.violations
        assert v.rule == "fits no core's memory"
        return v.fix
    # 256 channels x 16x16: one output channel fills a 64 Ki kernel memory (cores 5 and 6)
    assert fix(256, 4) == "reduce out_channels of 0 from 4 to <= 1 (then it fits core 5)"
    assert fix(1024, 4) == "reduce its input channels or kernel size"  # no channel count fits
    # 64x64 outputs: 4 channels fill the smallest neuron memory (16 Ki) exactly, 5 do not fit it
    assert fix(1024, 4, 79) == "reduce its input channels or kernel size"
    assert fix(1024, 5, 79) == "or halve its output map (stride 2, or 2x2 pooling before it)"



def test_a_layer_whose_bias_fits_no_core_is_told_to_keep_as_many_channels_as_bias_words():
    board = ChipSpec("board", {0: CoreSpec(1024, 1024, 4)})
    with pytest.raises(MappingError) as err:
        map_model(nn.Sequential(nn.Conv2d(1, 8, 1), SpikingLayer()), (1, 1, 1), board, slow_clock_period_us=1000)
    (v,) = err.value.report.violations
    assert (v.rule, v.fix) == ("fits no core's memory", "reduce out_channels of 0 from 8 to <= 4 (then it fits core 0)")


def test_the_fit_report_reads_notes_names_memory_and_quantization_in_that_order():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), SpikingLayer(), nn.Dropout(), nn.Flatten(),
                          nn.Linear(2 * 6 * 6, 3, bias=False), SpikingLayer())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([0.5, -0.25]).repeat_interleave(9).reshape(2, 1, 3, 3))
        model[4].weight.fill_(0.125)
    board = ChipSpec("board", {0: CoreSpec(64, 128, 0), 1: CoreSpec(512, 16, 4)})  # conv1: exactly 128 neurons
    assert str(map_model(model, (1, 8, 8), board).report) == "\n".join([
        "transformations:",
        "  - 2: Dropout removed",
        "  - 4: Linear -> Conv2d with a 6x6 kernel over the 2x6x6 input map",
        "layer names:",
        "  conv1                model layers 0, 1",
        "  fc1                  model layers 4, 5",
        "memory (needed/available):",
        "  core  layer                            kernel words              neuron words                bias words",
        "     0  conv1                           32/64 (50.0%)          128/128 (100.0%)                0/0 (0.0%)",
        "     1  fc1                          512/512 (100.0%)              3/16 (18.8%)                0/4 (0.0%)",
        "quantization:",
        "  conv1                scale 254          worst rounding error 0.00197",
        "  fc1                  scale 1016         worst rounding error 0"])
    with pytest.raises(MappingError) as err:
        map_model(nn.Sequential(nn.Conv2d(1, 2, 3, stride=3, bias=False), SpikingLayer()), (1, 8, 8), board)
    assert str(err.value.report) == "\n".join([
        "problems:",
        "  - 0: stride must be one of (1, 2, 4, 8) (got 3 (y)); fix: use stride 2 or add 2x2 pooling before this layer",
        "  - 0: stride must be one of (1, 2, 4, 8) (got 3 (x)); fix: use stride 2 or add 2x2 pooling before this layer",
        "layer names:",
        "  conv1                model layers 0, 1"])
    assert str(FitReport("board")) == "empty report" and FitReport("board").ok


def test_memory_needs_count_each_axis_with_its_own_stride_and_padding():
    # 9x8 input, 3x3 kernel, stride (2, 1), padding (0, 1): a 4x8 output map, 2 * 2**(2 + 3) neurons
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=(2, 1), padding=(0, 1), bias=False), SpikingLayer())
    mapping = map_model(model, (1, 9, 8))
    (row,) = mapping.report.memory
    assert row.need == MemoryNeed(kernel=32, neuron=64, bias=0)
    assert mapping.config.cores[row.core].output_shape == (2, 4, 8)
