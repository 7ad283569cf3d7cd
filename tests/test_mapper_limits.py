"""Every mapper limit at, below and above its value (``docs/chip-model.md``: "Memory formulas", "Per-layer limits"; ``mapper.chips.Limits``).

A limit tested only far away from its value lets an off-by-one through (``<`` for ``<=``): here
each value one below the limit and the limit itself map, and one past it is rejected with the
rule's message. The speck2f limits are: kernel 16, strides (1, 2, 4, 8), padding 7, poolings
(1, 2, 4), 1024 channels, 128x128 input and 64x64 output maps, 2 destinations, 9 cores.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from mapper import (ChipConfig, ChipSpec, ConfigError, CoreSpec, DVSConfig, MappingError, get_chip,
                    kernel_words, map_model, neuron_words)
from snnlib import CoreLayer, Destination, DVSInput, IntegerNetwork, InvalidNetworkError, SpikingLayer, SumPool2d

LIMITS = get_chip("speck2f").limits


def _problems(model, shape, **kw) -> list[str]:
    """The violations ``map_model`` reports ([] when the model maps)."""
    try:
        map_model(model, shape, **kw)
    except MappingError as err:
        assert err.report.violations
        return [str(v) for v in err.report.violations]
    return []


def _conv(c_in, c_out, k=1, **kw):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=False, **kw), SpikingLayer())


def _sweep(limit, build, rule):
    """Map ``build(v)`` for v = limit - 1, limit, limit + 1: the first two map, the last is
    rejected naming ``rule``."""
    for v in (limit - 1, limit):
        assert _problems(*build(v)) == [], f"{rule}: {v} rejected"
    problems = _problems(*build(limit + 1))
    assert any(rule in p for p in problems), f"{rule}: {limit + 1} accepted or reported as {problems}"


def test_kernel_size_16_maps_and_17_is_rejected():
    _sweep(LIMITS.max_kernel_size, lambda k: (_conv(1, 1, k), (1, k, k)), "kernel size must be <= 16")


def test_padding_7_maps_and_8_is_rejected():
    _sweep(LIMITS.max_padding, lambda p: (_conv(1, 1, 3, padding=p), (1, 4, 4)), "padding must be 0..7")


def test_1024_output_channels_map_and_1025_are_rejected():
    _sweep(LIMITS.max_channels, lambda f: (_conv(1, f), (1, 1, 1)), "at most 1024 output channels")


def test_1024_input_channels_map_and_1025_are_rejected():
    _sweep(LIMITS.max_channels, lambda c: (_conv(c, 1), (c, 1, 1)), "at most 1024 input channels")


@pytest.mark.parametrize("axis", [0, 1])
def test_input_map_128_maps_and_129_is_rejected_along_each_axis(axis):
    def build(n):
        shape = [1, 128, 128]
        shape[1 + axis] = n
        return _conv(1, 1, 1, stride=2), tuple(shape)  # stride 2: the output stays <= 64x64 up to 128
    _sweep(LIMITS.max_input_size[axis], build, "input map must be <= 128x128")


@pytest.mark.parametrize("axis", [0, 1])
def test_output_map_64_maps_and_65_is_rejected_along_each_axis(axis):
    def build(n):
        shape = [1, 64, 64]
        shape[1 + axis] = n
        return _conv(1, 1), tuple(shape)
    _sweep(LIMITS.max_output_size[axis], build, "output map must be <= 64x64 before pooling")


def test_each_allowed_stride_maps_and_its_neighbours_are_rejected():
    for s in (1, 2, 3, 4, 5, 7, 8, 9, 16):
        problems = _problems(_conv(1, 1, 1, stride=s), (1, 32, 32))
        assert (problems == []) == (s in LIMITS.strides), (s, problems)
        assert s in LIMITS.strides or any("stride must be one of (1, 2, 4, 8)" in p for p in problems)


def test_each_allowed_pooling_maps_and_its_neighbours_are_rejected():
    for p in (2, 3, 4, 5, 8):
        model = nn.Sequential(*_conv(1, 2), SumPool2d(p), *_conv(2, 1))
        problems = _problems(model, (1, 16, 16))
        assert (problems == []) == (p in LIMITS.poolings), (p, problems)
        assert p in LIMITS.poolings or any("pooling must be one of (1, 2, 4)" in p for p in problems)


class _FanOut(nn.Module):
    """One spiking layer feeding ``n`` heads."""

    def __init__(self, n):
        super().__init__()
        self.trunk = _conv(2, 4)
        self.heads = nn.ModuleList([_conv(4, 2) for _ in range(n)])

    def forward(self, x):
        s = self.trunk(x)
        return sum(head(s) for head in self.heads)


def test_two_destinations_map_and_three_are_rejected():
    _sweep(LIMITS.max_destinations, lambda n: (_FanOut(n), (2, 4, 4)), "trunk.0: at most 2 destinations")


def test_nine_layers_fill_the_nine_cores_and_ten_are_rejected():
    def chain(n):
        return nn.Sequential(*[m for _ in range(n) for m in _conv(2, 2)]), (2, 4, 4)
    assert len(map_model(*chain(9)).config.cores) == 9
    _sweep(len(get_chip("speck2f").cores), chain, "speck2f has 9 cores")


@pytest.mark.parametrize("memory", ["kernel_words", "neuron_words", "bias_words"])
def test_a_layer_fits_a_core_with_exactly_its_memory_and_not_one_word_less(memory):
    # conv 3 -> 5, 3x3, bias, on 6x7: kernel 3 * 2**(4 + 3) = 384 words, neuron
    # 5 * 2**(2 + 3) = 160 words (4x5 map), bias 5 words
    weights, output = (5, 3, 3, 3), (5, 4, 5)
    need = {"kernel_words": kernel_words(weights), "neuron_words": neuron_words(output), "bias_words": 5}
    assert need == {"kernel_words": 384, "neuron_words": 160, "bias_words": 5}
    model = nn.Sequential(nn.Conv2d(3, 5, 3), SpikingLayer())
    exact = ChipSpec("exact", {0: CoreSpec(**need)})
    assert list(map_model(model, (3, 6, 7), exact, slow_clock_period_us=1000).config.cores) == [0]
    short = ChipSpec("short", {0: CoreSpec(**{**need, memory: need[memory] - 1})})
    (problem,) = _problems(model, (3, 6, 7), chip=short, slow_clock_period_us=1000)
    assert "fits no core's memory" in problem, problem



@pytest.mark.parametrize("memory", ["kernel_words", "neuron_words", "bias_words"])
def test_a_config_core_fits_exactly_its_memory_and_not_one_word_less(memory):
    # the same layer as above, written as a configuration: checked by ChipConfig's validator
    layer = CoreLayer(np.ones((5, 3, 3, 3), np.int8), (3, 6, 7), 1, -1, bias=np.arange(5), leak_enable=True)
    need = dict(kernel_words=384, neuron_words=160, bias_words=5)
    network = IntegerNetwork({0: layer}, slow_clock_period_us=1000)
    assert list(ChipConfig.from_network(network, ChipSpec("exact", {0: CoreSpec(**need)})).cores) == [0]
    short = ChipSpec("short", {0: CoreSpec(**{**need, memory: need[memory] - 1})})
    have = "/".join(str(need[m] - (m == memory)) for m in ("kernel_words", "neuron_words", "bias_words"))
    with pytest.raises(ConfigError, match=rf"cores\[0\]: needs 384/160/5 kernel/neuron/bias words but core 0 has {have};"):
        ChipConfig.from_network(network, short)


def test_a_config_core_without_bias_needs_no_bias_memory():
    layer = CoreLayer(np.ones((5, 3, 3, 3), np.int8), (3, 6, 7), 1, -1)
    no_bias_memory = ChipSpec("no_bias", {0: CoreSpec(384, 160, 0)})
    assert ChipConfig.from_network(IntegerNetwork({0: layer}), no_bias_memory).cores[0].bias is None
    layer.bias, layer.leak_enable = np.zeros(5, np.int64), True
    with pytest.raises(ConfigError, match=r"needs 384/160/5 kernel/neuron/bias words but core 0 has 384/160/0"):
        ChipConfig.from_network(IntegerNetwork({0: layer}, slow_clock_period_us=1000), no_bias_memory)

# ----------------------------------------------------------------------------- feature_shift


def _two_layers(shift: int) -> IntegerNetwork:
    """Layer 0 (2 output channels) -> layer 1 (4 input channels), shifted by ``shift``."""
    first = CoreLayer(np.ones((2, 1, 1, 1), np.int8), (1, 2, 2), 1, -1, destinations=[Destination(1, 1, shift)])
    second = CoreLayer(np.ones((1, 4, 1, 1), np.int8), (4, 2, 2), 1, -1)
    return IntegerNetwork({0: first, 1: second})


def _dvs_into(shift: int) -> IntegerNetwork:
    """Both DVS polarities (2 channels) -> layer 0 (4 input channels), shifted by ``shift``."""
    layer = CoreLayer(np.ones((1, 4, 1, 1), np.int8), (4, 8, 8), 1, -1)
    return IntegerNetwork({0: layer}, DVSInput((2, 8, 8), destinations=[Destination(0, 1, shift)]))


@pytest.mark.parametrize("build, where", [(_two_layers, "layers\\[0\\]"), (_dvs_into, "dvs")])
def test_feature_shift_up_to_the_target_channels_is_accepted_and_one_more_rejected(build, where):
    # 2 channels into 4: shifts 0..2 put them on channels 0-1 .. 2-3; shift 3 would need channel 4
    for shift in (0, 1, 2):
        build(shift).validate()
        ChipConfig.from_network(build(shift))
    with pytest.raises(InvalidNetworkError, match=f"{where}.destinations\\[0\\].feature_shift: 3 sends channels up to 4 "
                                                  "but layer [01] has 4 input channels"):
        build(3).validate()
    with pytest.raises(ConfigError, match="destinations\\[0\\].feature_shift: 3 sends channels up to 4"):
        ChipConfig.from_network(build(3))
    with pytest.raises(InvalidNetworkError, match="feature_shift: -1; must be >= 0"):
        build(-1).validate()


# ----------------------------------------------------------------------------- integer ranges


@pytest.mark.parametrize("field, ok, bad", [
    ("weights", (-128, 127), (-129, 128)),
    ("threshold_high", (1, 32767), (0, 32768)),
    ("threshold_low", (-32768, 0), (-32769,)),
])
def test_integer_fields_accept_their_range_ends_and_reject_one_past(field, ok, bad):
    def layer(value):
        fields = dict(weights=np.ones((1, 1, 1, 1), np.int64), input_shape=(1, 1, 1), threshold_high=1,
                      threshold_low=-1)
        fields[field] = np.full((1, 1, 1, 1), value, np.int64) if field == "weights" else value
        if field == "threshold_low":
            fields["threshold_high"] = 32767
        return IntegerNetwork({0: CoreLayer(**fields)})
    for value in ok:
        layer(value).validate()
    for value in bad:
        with pytest.raises(InvalidNetworkError, match=rf"{field}(\[0, 0, 0, 0\])?: {value}[; ]"):
            layer(value).validate()


def test_core_ids_of_the_chip_are_accepted_and_the_next_is_rejected():
    layer = CoreLayer(np.ones((1, 1, 1, 1), np.int8), (1, 1, 1), 1, -1)
    assert list(ChipConfig.from_network(IntegerNetwork({8: layer})).cores) == [8]
    with pytest.raises(ConfigError, match=r"cores\[9\]: speck2f has no core 9"):
        ChipConfig.from_network(IntegerNetwork({9: layer}))


def test_dvs_input_of_the_sensor_size_maps_and_one_pixel_more_is_rejected():
    for n in (127, 128):
        assert map_model(_conv(2, 2, 1, stride=2), (2, n, n), dvs=True).config.dvs.input_shape == (2, n, n)
    assert any("DVS input must be <= 128x128" in p for p in _problems(_conv(2, 2, 1, stride=2), (2, 129, 128), dvs=True))


@pytest.mark.parametrize("pooling", [1, 2, 4])
@pytest.mark.parametrize("axis", [0, 1])
def test_a_dvs_window_may_end_on_the_sensor_edge_and_not_one_pixel_past_along_each_axis(axis, pooling):
    # a 64x64 model input pooled by p is a (64/p)-pixel window in post-pooling sensor pixels:
    # on the 128x128 sensor its origin may go up to 128/p - 64/p along either axis
    model = nn.Sequential(SumPool2d(pooling), *_conv(2, 2, 1)) if pooling > 1 else _conv(2, 2, 1)
    last = (128 - 64) // pooling

    def template(o):
        origin = [0, 0]
        origin[axis] = o
        return DVSConfig((2, 128, 128), origin=tuple(origin))
    for o in (last - 1, last):
        dvs = map_model(model, (2, 64, 64), dvs=template(o)).config.dvs
        assert (dvs.pooling, dvs.origin[axis], dvs.cut[axis]) == ((pooling, pooling), o, o + 64 // pooling - 1)
    problems = _problems(model, (2, 64, 64), dvs=template(last + 1))
    assert any("the model's input window must lie on the 128x128 sensor" in p for p in problems), problems


def test_a_mirrored_diagonal_needs_a_square_dvs_window():
    template = DVSConfig((2, 128, 128), mirror_diagonal=True)
    assert map_model(_conv(2, 2, 1), (2, 32, 32), dvs=template).config.dvs.mirror_diagonal
    for shape in ((2, 32, 33), (2, 33, 32)):
        (problem,) = _problems(_conv(2, 2, 1), shape, dvs=template)
        assert "mirror_diagonal swaps height and width of the DVS window" in problem
        assert f"(got {shape[1]}x{shape[2]} window)" in problem, problem
