"""Validation of the plain-data integer network description."""

import numpy as np
import pytest

from snnlib import READOUT_LAYER_ID, CoreLayer, Destination, DVSInput, IntegerNetwork, InvalidNetworkError, Readout


def _layer(**kw):
    base = dict(
        weights=np.ones((4, 2, 3, 3), dtype=np.int8),
        input_shape=(2, 8, 8),
        threshold_high=10,
        threshold_low=-10,
        padding=(1, 1),
    )
    base.update(kw)
    return CoreLayer(**base)


def test_valid_network_and_output_shape():
    net = IntegerNetwork({0: _layer(destinations=[Destination(1, pooling=2)]),
                          1: _layer(weights=np.ones((3, 4, 1, 1), dtype=np.int8),
                                    input_shape=(4, 4, 4), padding=(0, 0))})
    assert net.validate() is net
    assert net.layers[0].output_shape == (4, 8, 8)
    assert _layer(stride=(2, 2)).output_shape == (4, 4, 4)


@pytest.mark.parametrize(
    "kw, path, fragment",
    [
        (dict(weights=np.full((4, 2, 3, 3), 200)), "layers[0].weights[0, 0, 0, 0]", "200 is outside [-128, 127]"),
        (dict(threshold_high=40000), "layers[0].threshold_high", "40000 is outside"),
        (dict(threshold_low=10), "layers[0].threshold_low", "10 >= threshold_high = 10"),
        (dict(reset="hard"), "layers[0].reset", "'hard'; must be one of"),
        (dict(destinations=[Destination(0, pooling=3)]), "layers[0].destinations[0].pooling", "3; must be"),
        (dict(destinations=[Destination(7)]), "layers[0].destinations[0].layer", "7 is not a layer"),
        (dict(input_shape=(3, 8, 8)), "layers[0].weights", "input_shape (3, 8, 8)"),
        (dict(weights=np.full((4, 2, 3, 3), 0.5)), "layers[0].weights[0, 0, 0, 0]", "0.5 is not an integer"),
    ],
)
def test_invalid_fields_are_named_by_their_path(kw, path, fragment):
    with pytest.raises(InvalidNetworkError) as err:
        IntegerNetwork({0: _layer(**kw)}).validate()
    assert err.value.path == path and fragment in err.value.problems[0].message


def test_every_problem_is_reported_at_once():
    net = IntegerNetwork(
        {0: _layer(threshold_low=10, reset="hard", destinations=[Destination(7)]),
         1: _layer(weights=np.full((4, 2, 3, 3), 0.5))},
        DVSInput((2, 128, 128), cut=(200, 200)), slow_clock_period_us=0)
    with pytest.raises(InvalidNetworkError) as err:
        net.validate()
    paths = [p.path for p in err.value.problems]
    assert paths == ["layers[0].threshold_low", "layers[0].reset", "layers[0].destinations[0].layer",
                     "layers[1].weights[0, 0, 0, 0]", "dvs.cut", "slow_clock_period_us"]
    assert str(err.value).splitlines()[0] == "6 problems:" and net.problems("cores")[0].path.startswith("cores[0]")


def test_a_layer_routes_to_at_most_two_destinations():
    def network(n_destinations):
        after = dict(weights=np.ones((3, 4, 3, 3), dtype=np.int8), input_shape=(4, 8, 8))
        layers = {lid: _layer(**after) for lid in range(1, n_destinations + 1)}
        return IntegerNetwork({0: _layer(destinations=[Destination(lid) for lid in layers]), **layers})

    assert network(2).validate()
    with pytest.raises(InvalidNetworkError, match="3 destinations; the chip routes to at most 2") as err:
        network(3).validate()
    assert err.value.path == "layers[0].destinations"


def _fed(room=6, **dest):
    """Layer 0 (4 channels out) sends to layer 1, which has ``room`` input channels."""
    after = _layer(weights=np.ones((3, room, 1, 1), dtype=np.int8), input_shape=(room, 8, 8), padding=(0, 0))
    return IntegerNetwork({0: _layer(destinations=[Destination(1, **dest)]), 1: after})


def _dvs(**kw):
    dvs = dict(input_shape=(2, 8, 6), pooling=(2, 1), destinations=[Destination(0)]) | kw
    return IntegerNetwork({0: _layer()}, DVSInput(**dvs))


EDGES = [  # (network, the path of its first problem or None): each field at its bounds and one past
    (lambda: IntegerNetwork({0: _layer(weights=np.full((4, 2, 3, 3), 127))}), None),
    (lambda: IntegerNetwork({0: _layer(weights=np.full((4, 2, 3, 3), 128))}), "layers[0].weights[0, 0, 0, 0]"),
    (lambda: IntegerNetwork({0: _layer(weights=np.full((4, 2, 3, 3), -128))}), None),
    (lambda: IntegerNetwork({0: _layer(weights=np.full((4, 2, 3, 3), -129))}), "layers[0].weights[0, 0, 0, 0]"),
    (lambda: IntegerNetwork({0: _layer(threshold_high=32767, threshold_low=-32768)}), None),
    (lambda: IntegerNetwork({0: _layer(threshold_high=32768)}), "layers[0].threshold_high"),
    (lambda: IntegerNetwork({0: _layer(threshold_low=-32769)}), "layers[0].threshold_low"),
    (lambda: IntegerNetwork({0: _layer(threshold_high=1, threshold_low=0)}), None),
    (lambda: IntegerNetwork({0: _layer(threshold_high=0, threshold_low=-1)}), "layers[0].threshold_high"),
    (lambda: IntegerNetwork({0: _layer(threshold_low=9)}), None),
    (lambda: IntegerNetwork({0: _layer(stride=(1, 1), padding=(0, 0))}), None),
    (lambda: IntegerNetwork({0: _layer(stride=(0, 1))}), "layers[0].stride"),
    (lambda: IntegerNetwork({0: _layer(stride=(1, 0))}), "layers[0].stride"),
    (lambda: IntegerNetwork({0: _layer(padding=(-1, 0))}), "layers[0].padding"),
    (lambda: IntegerNetwork({0: _layer(padding=(0, -1))}), "layers[0].padding"),
    (lambda: IntegerNetwork({0: _layer(weights=np.ones((4, 2, 10, 10), np.int8))}), None),  # 8 + 2 - 10 + 1 = 1
    (lambda: IntegerNetwork({0: _layer(weights=np.ones((4, 2, 11, 11), np.int8))}), "layers[0].weights"),
    (lambda: IntegerNetwork({0: _layer(weights=np.ones((4, 2, 9, 9), np.int8), input_shape=(2, 9, 8),
                                       padding=(0, 0))}), "layers[0].weights"),  # 1 row, no column
    (lambda: IntegerNetwork({0: _layer(weights=np.ones((4, 2, 3, 3), np.int8), input_shape=(2, 8, 8))}), None),
    (lambda: IntegerNetwork({0: _layer(weights=np.ones((4, 2, 3, 2), np.int8))}), "layers[0].weights"),
    (lambda: IntegerNetwork({0: _layer(bias=np.full(4, 32767))}), None),
    (lambda: IntegerNetwork({0: _layer(bias=np.full(4, -32769))}), "layers[0].bias[0]"),
    (lambda: IntegerNetwork({0: _layer(bias=np.zeros(3))}), "layers[0].bias"),
    (lambda: IntegerNetwork({0: _layer(initial_state=np.full((4, 8, 8), -32768))}), None),
    (lambda: IntegerNetwork({0: _layer(initial_state=np.full((4, 8, 8), 32768))}), "layers[0].initial_state[0, 0, 0]"),
    (lambda: IntegerNetwork({0: _layer(initial_state=np.zeros((4, 8, 7)))}), "layers[0].initial_state"),
    (lambda: _fed(feature_shift=2), None),
    (lambda: _fed(feature_shift=3), "layers[0].destinations[0].feature_shift"),
    (lambda: _fed(feature_shift=-1), "layers[0].destinations[0].feature_shift"),
    (lambda: _fed(room=4, pooling=4), None),
    (lambda: _fed(room=3), "layers[0].destinations[0].feature_shift"),
    (lambda: IntegerNetwork({32767: _layer()}), None),
    (lambda: IntegerNetwork({32768: _layer()}), "layers[32768]"),
    (lambda: IntegerNetwork({-1: _layer()}), "layers[-1]"),
    (lambda: IntegerNetwork({True: _layer()}), "layers[True]"),
    (lambda: IntegerNetwork({0: _layer()}, slow_clock_period_us=1), None),
    (lambda: IntegerNetwork({0: _layer()}, slow_clock_period_us=True), "slow_clock_period_us"),
    (lambda: IntegerNetwork({0: _layer()}, slow_clock_period_us=1.5), "slow_clock_period_us"),
    (lambda: _dvs(), None),
    (lambda: _dvs(input_shape=(1, 8, 6)), "dvs.input_shape"),
    (lambda: _dvs(input_shape=(2, 8)), "dvs.input_shape"),
    (lambda: _dvs(pooling=(4, 4)), None),
    (lambda: _dvs(pooling=(1, 3)), "dvs.pooling"),
    (lambda: _dvs(origin=(3, 5), cut=(3, 5)), None),  # pooled 4x6: the last pixel alone
    (lambda: _dvs(origin=(4, 0)), "dvs.origin"),
    (lambda: _dvs(origin=(0, 6)), "dvs.origin"),
    (lambda: _dvs(origin=(-1, 0)), "dvs.origin"),
    (lambda: _dvs(origin=(1, 1), cut=(1, 0)), "dvs.cut"),
    (lambda: _dvs(cut=(4, 5)), "dvs.cut"),
    (lambda: _dvs(cut=(3, 6)), "dvs.cut"),
    (lambda: IntegerNetwork({13: _layer()}, DVSInput((2, 8, 8))), "layers[13]"),
    (lambda: _dvs(merge_polarities=True, destinations=[Destination(0, feature_shift=1)]), None),
    (lambda: _dvs(destinations=[Destination(0, feature_shift=1)]), "dvs.destinations[0].feature_shift"),
    (lambda: _readout(Readout(65535, 32, 4), 57), None),
    (lambda: _readout(Readout(65536, 16, 4)), "readout.threshold"),
    (lambda: _readout(Readout(-1, 16, 4)), "readout.threshold"),
    (lambda: _readout(Readout(0, 16, 1), 15), None),
    (lambda: _readout(Readout(0, 16, 1), 16), "layers[0]"),
    (lambda: _readout(Readout(0, 16, 2)), "readout.channel_stride"),
    (lambda: _readout(Readout(0, 8, 4)), "readout.average"),
    (lambda: _readout(Readout(0, 1, 4), sources=2), "readout"),
    (lambda: _readout(Readout(0, 1, 4), period=None), "readout"),
    (lambda: _readout(None), "layers[0].destinations"),
]


def _readout(readout, channels=4, sources=1, period=1000):
    def core():
        weights = np.ones((channels, 2, 8, 8), np.int8)
        return _layer(weights=weights, padding=(0, 0), destinations=[Destination(READOUT_LAYER_ID)])
    return IntegerNetwork({lid: core() for lid in range(sources)}, slow_clock_period_us=period, readout=readout)


@pytest.mark.parametrize("case", range(len(EDGES)))
def test_each_field_is_taken_at_its_bounds_and_refused_one_past(case):
    network, path = EDGES[case]
    net = network()
    assert [p.path for p in net.problems()][:1] == ([] if path is None else [path])


def test_the_dvs_stage_sends_its_region_of_interest_mirrored_and_merged_as_asked():
    dvs = DVSInput((2, 8, 6), pooling=(2, 1), origin=(1, 2), cut=(2, 4))
    assert dvs.pooled_shape == (4, 6) and dvs.output_shape == (2, 2, 3)
    assert DVSInput((2, 8, 6), origin=(1, 2), cut=(2, 4), mirror_diagonal=True, merge_polarities=True).output_shape == (1, 3, 2)
    assert DVSInput((2, 8, 6), pooling=(1, 2)).output_shape == (2, 8, 3)
    assert _layer(padding=(0, 2), stride=(1, 2)).output_shape == (4, 6, 5)
