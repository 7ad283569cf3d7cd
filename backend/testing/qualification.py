"""Small networks and inputs that exercise every rule of the chip model, to qualify a device
against the event-exact simulation (``hardware_tests/``, ``spikeflash compare``).

Each network is tiny (fits any core) and seeded; together they cover mixed-sign weights,
the lower clamp, subtract and zero reset, sum pooling, two destinations with a feature
shift, leak ticks with biases, non-zero initial states, and DVS pre-processing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from snnlib.events import EVENT_DTYPE
from snnlib.network import DVS_LAYER_ID, CoreLayer, Destination, DVSInput, IntegerNetwork

if TYPE_CHECKING:
    from mapper import ChipConfig


def _weights(rng: np.random.Generator, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def single_core(seed: int = 0) -> IntegerNetwork:
    """One monitored core, 2 -> 4 channels, 3x3 kernel on 8x8, mixed signs, clamp at -20."""
    rng = np.random.default_rng(seed)
    layer = CoreLayer(_weights(rng, (4, 2, 3, 3), -6, 9), (2, 8, 8), threshold_high=20,
                      threshold_low=-20, monitor=True)
    return IntegerNetwork({0: layer}).validate()


def pooled_chain(seed: int = 0) -> IntegerNetwork:
    """Core 1 -> (sum pool 2) -> core 4, stride 2 in core 4, zero reset; both monitored."""
    rng = np.random.default_rng(seed)
    first = CoreLayer(_weights(rng, (4, 2, 3, 3), -3, 8), (2, 8, 8), threshold_high=12,
                      threshold_low=-30, padding=(1, 1), monitor=True,
                      destinations=[Destination(4, pooling=2)])
    second = CoreLayer(_weights(rng, (3, 4, 2, 2), -4, 10), (4, 4, 4), threshold_high=9,
                       threshold_low=-9, stride=(2, 2), reset="zero", monitor=True)
    return IntegerNetwork({1: first, 4: second}).validate()


def fanout_leak(seed: int = 0) -> IntegerNetwork:
    """Core 0 feeds core 2 directly and core 5 through pooling with a feature shift; core 5
    leaks with per-channel biases on a 400 µs slow clock; core 0 starts from non-zero states."""
    rng = np.random.default_rng(seed)
    entry = CoreLayer(_weights(rng, (3, 1, 3, 3), -2, 7), (1, 6, 6), threshold_high=10,
                      threshold_low=-10, padding=(1, 1), monitor=True,
                      initial_state=rng.integers(-5, 10, size=(3, 6, 6)).astype(np.int16),
                      destinations=[Destination(2), Destination(5, pooling=2, feature_shift=1)])
    direct = CoreLayer(_weights(rng, (2, 3, 1, 1), -3, 6), (3, 6, 6), threshold_high=6,
                       threshold_low=-6, monitor=True)
    leaky = CoreLayer(_weights(rng, (2, 4, 3, 3), -2, 5), (4, 3, 3), threshold_high=8,
                      threshold_low=-8, padding=(1, 1), bias=np.array([2, -1], np.int16),
                      leak_enable=True, monitor=True)
    return IntegerNetwork({0: entry, 2: direct, 5: leaky}, slow_clock_period_us=400).validate()


def dvs_input(seed: int = 0) -> IntegerNetwork:
    """DVS 2x16x16 -> pool 2 -> ROI -> mirror x -> core 3 (2 -> 4 channels, 3x3); DVS and core
    monitored."""
    rng = np.random.default_rng(seed)
    dvs = DVSInput((2, 16, 16), pooling=(2, 2), origin=(1, 0), cut=(6, 7), mirror_x=True,
                   destinations=[Destination(3)], monitor=True)
    core = CoreLayer(_weights(rng, (4, 2, 3, 3), -3, 9), (2, 6, 8), threshold_high=14,
                     threshold_low=-14, monitor=True)
    return IntegerNetwork({3: core}, dvs=dvs).validate()


#: name -> builder(seed) of the qualification networks
NETWORKS: dict[str, Callable[[int], IntegerNetwork]] = {
    "single_core": single_core,
    "pooled_chain": pooled_chain,
    "fanout_leak": fanout_leak,
    "dvs_input": dvs_input,
}


def qualification_config(name: str, seed: int = 0, chip: str = "speck2f") -> ChipConfig:
    """The qualification network ``name`` (see :data:`NETWORKS`) as a ChipConfig for ``chip``."""
    from mapper import ChipConfig

    if name not in NETWORKS:
        raise ValueError(f"qualification_config(name={name!r}): expected one of {sorted(NETWORKS)}")
    return ChipConfig.from_network(NETWORKS[name](seed), chip=chip)


def entry_layer(network: IntegerNetwork) -> tuple[int, tuple[int, int, int]]:
    """The layer that input events enter (the DVS stage if there is one, else the lowest core
    that no core sends to) and its input shape ``(c, h, w)``."""
    if network.dvs is not None:
        return DVS_LAYER_ID, network.dvs.input_shape
    targets = {d.layer for layer in network.layers.values() for d in layer.destinations}
    lid = min(set(network.layers) - targets)
    return lid, network.layers[lid].input_shape


def random_input(network: IntegerNetwork, n_events: int, duration_us: int = 5000,
                 seed: int = 0) -> np.ndarray:
    """``n_events`` uniformly random input events (EVENT_DTYPE) into the entry layer over
    ``[0, duration_us)``, sorted by time, with many events sharing a timestamp."""
    if n_events < 0 or duration_us <= 0:
        raise ValueError(f"random_input(n_events={n_events}, duration_us={duration_us}): "
                         "need n_events >= 0 and duration_us > 0")
    rng = np.random.default_rng(seed)
    layer, (c, h, w) = entry_layer(network)
    events = np.zeros(n_events, EVENT_DTYPE)
    events["t"] = np.sort(rng.integers(0, duration_us // 10, n_events)) * 10
    events["layer"] = layer
    events["channel"] = rng.integers(0, c, n_events)
    events["y"] = rng.integers(0, h, n_events)
    events["x"] = rng.integers(0, w, n_events)
    return events
