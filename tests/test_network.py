"""Validation of the plain-data integer network description."""

import numpy as np
import pytest

from snnlib import CoreLayer, Destination, DVSInput, IntegerNetwork, InvalidNetworkError


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
