"""Validation of the plain-data integer network description."""

import numpy as np
import pytest

from snnlib import CoreLayer, Destination, IntegerNetwork, InvalidNetworkError


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
    "kw, fragment",
    [
        (dict(weights=np.full((4, 2, 3, 3), 200)), "weights[0, 0, 0, 0] = 200 is outside [-128, 127]"),
        (dict(threshold_high=40000), "threshold_high"),
        (dict(threshold_low=10), "threshold_low = 10 >= threshold_high = 10"),
        (dict(reset="hard"), "reset = 'hard'"),
        (dict(destinations=[Destination(0, pooling=3)]), "pooling = 3"),
        (dict(destinations=[Destination(7)]), "destinations[0].layer = 7"),
        (dict(input_shape=(3, 8, 8)), "input_shape (3, 8, 8)"),
        (dict(weights=np.full((4, 2, 3, 3), 0.5)), "is not an integer"),
    ],
)
def test_invalid_fields_are_named(kw, fragment):
    with pytest.raises(InvalidNetworkError, match=None) as err:
        IntegerNetwork({0: _layer(**kw)}).validate()
    assert fragment in str(err.value)
