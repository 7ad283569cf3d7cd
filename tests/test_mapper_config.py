"""ChipConfig: exact JSON round trip, validation on load naming the field, chip specs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mapper import (ChipConfig, ChipSpec, ChipSpecError, ConfigError, CoreConfig, CoreSpec, DVSConfig, Limits, get_chip,
                    list_chips, load_chip_spec)
from snnlib import DVS_LAYER_ID, Destination, IntegerNetwork


def _config() -> ChipConfig:
    rng = np.random.default_rng(0)
    first = CoreConfig(rng.integers(-128, 128, (4, 2, 3, 3)).astype(np.int8), (2, 16, 16), 300, -300,
                       padding=(1, 1), destinations=[Destination(5, pooling=2)], monitor=True,
                       layer_names=["conv1", "spk1"], scale=37.25)
    second = CoreConfig(rng.integers(-128, 128, (3, 4, 2, 2)).astype(np.int8), (4, 8, 8), 90, -1,
                        stride=(2, 2), reset="zero", bias=np.array([5, -7, 0], np.int16),
                        leak_enable=True, initial_state=np.ones((3, 4, 4), np.int16),
                        monitor=True, layer_names=["fc", "spk2"], scale=0.1)
    dvs = DVSConfig((2, 32, 32), pooling=(2, 2), destinations=[Destination(3)], monitor=True)
    return ChipConfig("speck2f", {3: first, 5: second}, dvs, slow_clock_period_us=1000)


def test_json_round_trip_is_exact_and_canonical(tmp_path):
    config = _config()
    text = config.to_json()
    assert list(json.loads(text)) == sorted(json.loads(text))
    again = ChipConfig.from_json(text)
    assert again.to_json() == text and again == config
    assert again.cores[5].scale == 0.1 and again.cores[5].weights.dtype == np.int8
    config.save(tmp_path / "c.json")
    assert ChipConfig.load(tmp_path / "c.json").digest() == config.digest()
    assert len(config.digest()) == 64


def test_to_network_and_monitored_names():
    config = _config()
    net = config.to_network()
    assert isinstance(net, IntegerNetwork) and net.validate() is net
    assert sorted(net.layers) == [3, 5] and net.layers[3].destinations[0].layer == 5
    assert type(net.layers[3]).__name__ == "CoreLayer" and net.dvs.destinations[0].layer == 3
    assert config.monitored_layer_names() == {3: "conv1", 5: "fc", DVS_LAYER_ID: "dvs"}  # the conv names
    assert ChipConfig.from_network(net, "speck2f").to_network().layers[5].threshold_high == 90


def _edited(edit) -> str:
    data = json.loads(_config().to_json())
    edit(data)
    return json.dumps(data)


@pytest.mark.parametrize("edit, path, fragment", [
    (lambda d: d["cores"]["3"].update(threshold_low=0), "cores[3].threshold_low", "hardware bug"),
    (lambda d: d["cores"]["3"].update(threshold_low=400), "cores[3].threshold_low", "below"),
    (lambda d: d["cores"]["3"].update(threshold_high=40000), "cores[3].threshold_high", "outside"),
    (lambda d: d["cores"]["3"]["weights"][1][0][2].__setitem__(1, 300), "cores[3].weights[1, 0, 2, 1]",
     "300 is outside [-128, 127]"),
    (lambda d: d["cores"]["3"].update(stride=[3, 2]), "cores[3].stride", "stride must be one of"),
    (lambda d: d["cores"]["3"].update(padding=[9, 1]), "cores[3].padding", "padding must be 0..7"),
    (lambda d: d["cores"]["3"].update(reset="hard"), "cores[3].reset", "one of"),
    (lambda d: d["cores"]["3"]["destinations"][0].update(layer=7), "cores[3].destinations[0].layer",
     "not a layer of the network"),
    (lambda d: d["cores"]["3"]["destinations"][0].update(pooling=3), "cores[3].destinations[0].pooling",
     "must be one of"),
    (lambda d: d["cores"].update({"9": d["cores"].pop("5")}), "cores[9]", "has no core"),
    (lambda d: d["cores"]["3"].update(colour="red"), "cores[3].colour", "unknown field"),
    (lambda d: d["cores"]["3"].pop("monitor"), "cores[3].monitor", "missing field"),
    (lambda d: d.update(version=99), "version", "format version 1"),
    (lambda d: d.update(chip="speck9"), "chip", "speck2e"),
    (lambda d: d["dvs"].update(pooling=[2, 3]), "dvs.pooling", "must be one of"),
    (lambda d: d["dvs"].update(cut=[200, 200]), "dvs.cut", "region of interest"),
    (lambda d: d["dvs"].update(origin=[16, 0]), "dvs.origin", "outside the input"),
    (lambda d: d["cores"]["5"].update(bias=[1, 2]), "cores[5].bias", "expected (3,)"),
    (lambda d: d["cores"]["3"]["weights"][0][0][0].__setitem__(0, 1.5), "cores[3].weights",
     "expected a rectangular 4-d list of integers"),
    (lambda d: d["cores"]["3"].update(weights=d["cores"]["3"]["weights"][0]), "cores[3].weights",
     "expected a rectangular 4-d list of integers"),
    (lambda d: d["cores"]["3"]["weights"][0][0].pop(), "cores[3].weights", "expected a rectangular 4-d list"),
    (lambda d: d["cores"]["5"].update(bias=[True, False, True]), "cores[5].bias",
     "expected a rectangular 1-d list of integers"),
    (lambda d: d["cores"]["5"].update(bias=[[5, -7, 0]]), "cores[5].bias", "expected a rectangular 1-d list"),
    (lambda d: d["cores"]["5"].update(initial_state=[[[0.5] * 4] * 4] * 3), "cores[5].initial_state",
     "expected a rectangular 3-d list of integers"),
    # JSON types, each field of each kind
    (lambda d: d.update(cores=[d["cores"]["3"]]), "cores", "expected an object core id"),
    (lambda d: d["cores"].update({"03": d["cores"].pop("3")}), "cores", "without leading zeros"),
    (lambda d: d["cores"].update({"3": []}), "cores[3]", "expected an object, got list"),
    (lambda d: d.update(dvs=[1]), "dvs", "expected an object, got list"),
    (lambda d: d.update(chip=2), "chip", "2; expected a string"),
    (lambda d: d["cores"]["3"].update(reset=0), "cores[3].reset", "0; expected a string"),
    (lambda d: d["cores"]["3"].update(monitor=1), "cores[3].monitor", "1; expected true or false"),
    (lambda d: d["dvs"].update(mirror_x="no"), "dvs.mirror_x", "'no'; expected true or false"),
    (lambda d: d["cores"]["3"].update(stride=[1]), "cores[3].stride", "[1]; expected a list of 2 integers"),
    (lambda d: d["cores"]["3"].update(stride=12), "cores[3].stride", "12; expected a list of 2 integers"),
    (lambda d: d["cores"]["3"].update(input_shape=[2, 16]), "cores[3].input_shape", "expected a list of 3 integers"),
    (lambda d: d["cores"]["3"].update(padding=[1, 1.0]), "cores[3].padding[1]", "1.0; expected an integer"),
    (lambda d: d["cores"]["3"].update(threshold_high=300.5), "cores[3].threshold_high", "300.5; expected an integer"),
    (lambda d: d["cores"]["3"].update(threshold_low=False), "cores[3].threshold_low", "False; expected an integer"),
    (lambda d: d.update(version=True), "version", "True; expected an integer"),
    (lambda d: d.update(slow_clock_period_us="1000"), "slow_clock_period_us", "'1000'; expected an integer"),
    (lambda d: d["cores"]["3"].update(destinations={"layer": 5}), "cores[3].destinations",
     "expected a list of destinations"),
    (lambda d: d["cores"]["3"]["destinations"][0].update(pooling=None), "cores[3].destinations[0].pooling",
     "None; expected an integer"),
    (lambda d: d["cores"]["3"].update(layer_names="conv1"), "cores[3].layer_names", "expected a list of strings"),
    (lambda d: d["cores"]["3"].update(layer_names=["conv1", 2]), "cores[3].layer_names", "expected a list of strings"),
    *[(lambda d, v=v: d["cores"]["3"].update(scale=v), "cores[3].scale", f"{v!r}; expected a positive number")
      for v in (0, -1.5, True, "2", None)],
])
def test_hand_edited_errors_name_the_field(edit, path, fragment):
    with pytest.raises(ConfigError) as err:
        ChipConfig.from_json(_edited(edit))
    messages = {p.path: p.message for p in err.value.problems}
    assert path in messages and fragment in messages[path], str(err.value)


def test_memory_is_checked_on_load():
    big = CoreConfig(np.zeros((64, 8, 3, 3), np.int8), (8, 64, 64), 10, -10, padding=(1, 1))
    text = ChipConfig("speck2f", {5: big}).to_json()  # 64 * 64 * 64 = 256 Ki neurons
    with pytest.raises(ConfigError, match=r"cores\[5\]: needs .* move it to a larger core"):
        ChipConfig.from_json(text)


def test_chip_specs_are_data(tmp_path):
    assert list_chips() == ["speck2e", "speck2f"]
    spec = get_chip("speck2f")
    assert len(spec.cores) == 9 and spec.cores[5].kernel_words == 65536
    assert spec.cores[0].neuron_words == 65536 and spec.cores[8].bias_words == 1024
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"name": "tiny", "cores": {
        "0": {"kernel_words": 2048, "neuron_words": 4096, "bias_words": 0}},
        "limits": {"max_kernel_size": 5, "strides": [1, 2]}, "dvs_size": None}))
    tiny = get_chip(str(path))
    assert tiny.name == "tiny" and tiny.limits.strides == (1, 2) and tiny.dvs_size is None
    assert load_chip_spec(path) == tiny
    with pytest.raises(ChipSpecError, match=r"chip='speck3'.*\['speck2e', 'speck2f'\]"):
        get_chip("speck3")
    path.write_text(json.dumps({"name": "x", "cores": {"0": {"kernel_words": -1, "neuron_words": 1,
                                                              "bias_words": 0}}}))
    with pytest.raises(ChipSpecError, match="cores.0.kernel_words = -1"):
        get_chip(str(path))


def test_the_built_in_chips_have_the_memory_and_limits_of_the_chip_facts():
    # docs/chip-model.md "Cores and memory" (Ki words per core 0..8) and "Per-layer limits"
    kernel, neuron = [16, 16, 16, 32, 32, 64, 64, 16, 16], [64, 64, 64, 32, 32, 16, 16, 16, 16]
    for name in ("speck2e", "speck2f"):
        spec = get_chip(name)
        assert spec.name == name and spec.dvs_size == (128, 128) and spec.readout_stride == 4
        assert spec.cores == {i: CoreSpec(k * 1024, n * 1024, 1024) for i, (k, n) in enumerate(zip(kernel, neuron))}
        assert sum(c.kernel_words for c in spec.cores.values()) == 272 * 1024
        assert sum(c.neuron_words for c in spec.cores.values()) == 320 * 1024
        assert spec.limits == Limits(max_kernel_size=16, strides=(1, 2, 4, 8), max_padding=7, poolings=(1, 2, 4),
                                     max_channels=1024, max_input_size=(128, 128), max_output_size=(64, 64),
                                     max_destinations=2)


def test_a_chip_spec_file_reads_back_as_written_and_omitted_fields_take_the_speck_defaults(tmp_path):
    path = tmp_path / "speck.json"
    path.write_text(get_chip("speck2f").to_json())
    assert load_chip_spec(path) == get_chip("speck2f") and get_chip(path) == get_chip("speck2f")
    path.write_text(json.dumps({"name": "bare", "cores": {"3": {"kernel_words": 1, "neuron_words": 2,
                                                                "bias_words": 0}}}))
    bare = load_chip_spec(path)
    assert (bare.cores, bare.limits, bare.dvs_size, bare.readout_stride) == ({3: CoreSpec(1, 2, 0)}, Limits(), (128, 128), None)
    for stride in (1, 4, None):
        path.write_text(json.dumps({"name": "r", "readout_stride": stride, "cores": {"0": {
            "kernel_words": 0, "neuron_words": 0, "bias_words": 0}}}))
        assert load_chip_spec(path).readout_stride == stride


_CORE = {"kernel_words": 1, "neuron_words": 1, "bias_words": 1}


@pytest.mark.parametrize("text, message", [
    ("{", "cannot read a JSON chip spec"),
    ("[]", "expected an object with a string 'name'"),
    (json.dumps({"cores": {"0": _CORE}}), "expected an object with a string 'name'"),
    (json.dumps({"name": 7, "cores": {"0": _CORE}}), "expected an object with a string 'name'"),
    (json.dumps({"name": "x"}), "'cores' must be a non-empty object core id -> memories"),
    (json.dumps({"name": "x", "cores": {}}), "'cores' must be a non-empty object"),
    (json.dumps({"name": "x", "cores": [_CORE]}), "'cores' must be a non-empty object"),
    (json.dumps({"name": "x", "cores": {"a": _CORE}}), "cores.a: core ids must be integers other than 13"),
    (json.dumps({"name": "x", "cores": {"-1": _CORE}}), "cores.-1: core ids must be integers other than 13"),
    (json.dumps({"name": "x", "cores": {"0": _CORE, "13": _CORE}}), "cores.13: core ids must be integers other than 13 (the DVS id)"),
    (json.dumps({"name": "x", "cores": {"0": {"kernel_words": 1, "neuron_words": 1}}}),
     "cores.0: expected kernel_words, neuron_words, bias_words"),
    (json.dumps({"name": "x", "cores": {"0": {**_CORE, "bias_words": True}}}), "cores.0.bias_words = True: expected a non-negative"),
    (json.dumps({"name": "x", "cores": {"0": {**_CORE, "neuron_words": 1.5}}}), "cores.0.neuron_words = 1.5: expected"),
    (json.dumps({"name": "x", "cores": {"0": {**_CORE, "bias_words": -1}}}), "cores.0.bias_words = -1: expected"),
    (json.dumps({"name": "x", "cores": {"0": _CORE}, "limits": {"max_kernel": 5}}), "limits: unknown field"),
    (json.dumps({"name": "x", "cores": {"0": _CORE}, "readout_stride": 2}), "readout_stride = 2: expected 1, 4 or null"),
])
def test_a_malformed_chip_spec_file_is_refused_naming_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "board.json"
    path.write_text(text)
    with pytest.raises(ChipSpecError, match=re.escape(message)):
        get_chip(str(path))


def test_only_a_built_in_name_a_spec_or_a_spec_file_is_a_chip(tmp_path):
    assert get_chip(get_chip("speck2e")) is get_chip("speck2e")
    for bad in (7, None, str(tmp_path), "speck2F"):
        with pytest.raises(ChipSpecError, match=re.escape(f"chip={bad!r}: not a built-in chip nor a chip spec file")):
            get_chip(bad)


def test_configs_are_equal_exactly_when_their_json_is_and_never_equal_to_anything_else():
    config = _config()
    assert config == ChipConfig.from_json(config.to_json()) and config != config.to_json()
    other = _config()
    other.cores[3].threshold_high += 1
    assert config != other


def test_the_json_keeps_every_array_a_core_has():
    again = ChipConfig.from_json(_config().to_json())
    assert again.cores[5].bias.tolist() == [5, -7, 0] and again.cores[3].bias is None
    assert again.cores[5].initial_state.tolist() == np.ones((3, 4, 4)).tolist() and again.cores[3].initial_state is None


def test_from_network_takes_only_an_integer_network():
    with pytest.raises(TypeError, match="from_network\\(network\\): expected an snnlib.IntegerNetwork, got ChipConfig"):
        ChipConfig.from_network(_config())


def test_a_core_that_breaks_a_network_rule_is_not_also_checked_against_the_chip():
    # cores[3]: a weight out of range (network) and threshold_low 0 (chip): only the first;
    # cores[5]: threshold_low 0 only, still reported; a core with one layer name is fine
    config = _config()
    config.cores[3].weights = config.cores[3].weights.astype(np.int64)
    config.cores[3].weights[0, 0, 0, 0] = 300
    config.cores[3].threshold_low = config.cores[5].threshold_low = 0
    config.cores[5].layer_names = ["fc"]
    assert [p.path for p in config.problems()] == ["cores[3].weights[0, 0, 0, 0]", "cores[5].threshold_low"]
    config.cores[3].weights[0, 0, 0, 0] = 1
    assert [p.path for p in config.problems()] == ["cores[3].threshold_low", "cores[5].threshold_low"]


def test_a_dvs_stage_is_checked_against_the_chips_sensor_pooling_and_destinations():
    config = _config()  # its DVS stage: 32x32 input, pooling 2, one destination
    board = ChipSpec("board", get_chip("speck2f").cores, Limits(poolings=(1, 2), max_destinations=1), dvs_size=(32, 33))
    assert config.problems(board) == []
    config.dvs.input_shape = (2, 32, 34)
    assert [(p.path, p.message) for p in config.problems(board)] == [
        ("dvs.input_shape", "32x34 is larger than the 32x33 sensor of board")]
    config.dvs.input_shape = (2, 33, 32)
    assert [p.path for p in config.problems(board)] == ["dvs.input_shape"]
    config.dvs.input_shape, config.dvs.destinations = (2, 32, 32), [Destination(3), Destination(5)]
    assert [(p.path, p.message) for p in config.problems(board)] == [("dvs.destinations", "2 destinations; at most 1")]
    assert config.problems("speck2f") == []
    board = ChipSpec("nodvs", get_chip("speck2f").cores, dvs_size=None)
    assert [(p.path, p.message) for p in config.problems(board)] == [("dvs", "nodvs has no DVS stage; remove it")]
