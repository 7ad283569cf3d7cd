"""The event-exact engine against the pure-Python reference, plus its API and bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

import snnlib.engine as engine
from engine_reference import ReferenceChip
from snnlib import (
    DVS_LAYER_ID,
    EVENT_DTYPE,
    ChipModelOptions,
    CoreLayer,
    Destination,
    DVSInput,
    EventSimulator,
    IntegerNetwork,
    InvalidEventsError,
    InvalidNetworkError,
    raster_to_events,
    simulate,
)


def as_events(rows) -> np.ndarray:
    return np.array([tuple(r) for r in rows], dtype=EVENT_DTYPE)


# ----------------------------------------------------------------------------- strategies


@st.composite
def networks(draw):
    """Random feed-forward networks: 1-4 core layers in a random DAG (fan-out of 2, merges),
    mixed-sign weights (some above threshold), tight lower bounds, both resets, leak, strides,
    padding, pooling, feature shifts, and sometimes a DVS stage."""
    n = draw(st.integers(1, 4))
    ids = draw(st.lists(st.integers(0, 12), min_size=n, max_size=n, unique=True))
    shapes = [(draw(st.integers(1, 4)), draw(st.integers(2, 7)), draw(st.integers(2, 7))) for _ in ids]
    feats = [draw(st.integers(1, 4)) for _ in ids]
    layers = {}
    for i, lid in enumerate(ids):
        c, h, w = shapes[i]
        k = draw(st.integers(1, min(3, h + 2, w + 2)))
        pad = (draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1)))
        k = min(k, h + 2 * pad[0], w + 2 * pad[1])
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        thr = draw(st.integers(1, 12))
        wmax = draw(st.sampled_from([thr, 2 * thr, 127]))
        weights = np.array(draw(st.lists(st.integers(-min(wmax, 128), min(wmax, 127)),
                                         min_size=feats[i] * c * k * k, max_size=feats[i] * c * k * k)),
                           dtype=np.int8).reshape(feats[i], c, k, k)
        layer = CoreLayer(weights, (c, h, w), thr, draw(st.integers(-3 * thr, thr - 1)), stride, pad,
                          draw(st.sampled_from(["subtract", "zero"])), monitor=draw(st.booleans()))
        f, ho, wo = layer.output_shape
        if draw(st.booleans()):
            layer.bias = np.array(draw(st.lists(st.integers(-thr, thr), min_size=f, max_size=f)), np.int16)
            layer.leak_enable = draw(st.booleans())
        if draw(st.booleans()):
            layer.initial_state = draw(st.integers(0, 2**32)) % (4 * thr) - thr + np.zeros((f, ho, wo), np.int16)
        layers[lid] = layer
    for i, lid in enumerate(ids):
        later = [j for j in range(i + 1, n) if feats[i] <= shapes[j][0]]
        targets = draw(st.lists(st.sampled_from(later), max_size=2)) if later else []
        layers[lid].destinations = [
            Destination(ids[j], draw(st.sampled_from([1, 2, 4])),
                        draw(st.integers(0, shapes[j][0] - feats[i]))) for j in targets]
    dvs = None
    if draw(st.booleans()):
        merge = draw(st.booleans())
        pool = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
        size = (draw(st.integers(2, 8)), draw(st.integers(2, 8)))
        ph, pw = size[0] // pool[0], size[1] // pool[1]
        oy, ox = draw(st.integers(0, ph - 1)), draw(st.integers(0, pw - 1))
        cut = draw(st.none() | st.tuples(st.integers(oy, ph - 1), st.integers(ox, pw - 1)))
        channels = 1 if merge else 2
        ok = [j for j in range(n) if shapes[j][0] >= channels]
        targets = draw(st.lists(st.sampled_from(ok), max_size=2)) if ok else []
        dvs = DVSInput((2, *size), merge, draw(st.booleans()), draw(st.booleans()), pool, (oy, ox), cut,
                       draw(st.booleans()), draw(st.booleans()), draw(st.booleans()),
                       [Destination(ids[j], draw(st.sampled_from([1, 2])),
                                    draw(st.integers(0, shapes[j][0] - channels))) for j in targets],
                       draw(st.booleans()))
    period = draw(st.none() | st.integers(3, 40))
    return IntegerNetwork(layers, dvs, period)


@st.composite
def event_streams(draw, net, max_events=40):
    sources = {lid: layer.input_shape for lid, layer in net.layers.items()}
    if net.dvs is not None:
        sources[DVS_LAYER_ID] = net.dvs.input_shape
    rows, t = [], draw(st.integers(0, 20))
    for _ in range(draw(st.integers(0, max_events))):
        t += draw(st.sampled_from([0, 0, 1, 7]))
        lid = draw(st.sampled_from(sorted(sources)))
        c, h, w = sources[lid]
        rows.append((t, lid, draw(st.integers(0, c - 1)), draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))))
    return as_events(rows)


options = st.builds(ChipModelOptions, st.sampled_from(["saturate", "wrap"]),
                    st.sampled_from(["clamp", "reject"]), st.booleans())


def assert_matches_reference(sim: EventSimulator, ref: ReferenceChip, out: np.ndarray, ref_out) -> None:
    assert out.tolist() == [tuple(r) for r in ref_out]
    for lid, state in sim.states.items():
        assert state.dtype == np.int16
        assert state.tolist() == ref.states()[lid], f"state of layer {lid}"
    assert sim.counters == ref.count


# ----------------------------------------------------------------------------- against the reference


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), net=networks(), opts=options)
def test_engine_equals_reference(data, net, opts):
    events = data.draw(event_streams(net))
    until = data.draw(st.none() | st.integers(0, 60))
    if until is not None and events.size:
        until += int(events["t"][-1])
    sim = EventSimulator(net, opts)
    ref = ReferenceChip(net, opts.overflow, opts.lower_bound, opts.leak_can_fire)
    assert_matches_reference(sim, ref, sim.run(events, until), ref.run(events.tolist(), until))


@pytest.mark.parametrize("opts, monitor_first", [(ChipModelOptions(), True),
                                                   (ChipModelOptions("wrap", "reject", False), False)])
def test_sixteen_feature_layers_equal_reference(opts, monitor_first):
    """Layers of 16 features with windows of up to 16 positions have a compiled path of their
    own (spikes ordered with vector operations): a chain of such layers, 3 x 3 (stride 1 and
    2) and 4 x 4 (16 positions), whose spikes are both output and routed (branch and merge)."""
    rng = np.random.default_rng(16)

    def layer(c, k, shape, stride, destinations, monitor):
        weights = rng.integers(-40, 60, (16, c, k, k)).astype(np.int8)
        bias = rng.integers(-9, 12, 16).astype(np.int16)
        return CoreLayer(weights, shape, 60, -90, stride, ((k - 1) // 2,) * 2, bias=bias, leak_enable=True,
                         destinations=destinations, monitor=monitor)

    net = IntegerNetwork({
        0: layer(2, 3, (2, 9, 9), (1, 1), [Destination(1, 1), Destination(2, 2)], monitor_first),
        1: layer(16, 4, (16, 9, 9), (1, 1), [Destination(2, 2)], True),
        2: layer(16, 3, (16, 4, 4), (2, 2), [], True),
    }, slow_clock_period_us=60)
    events = raster_to_events((rng.random((6, 2, 9, 9)) < 0.12).astype(np.uint8), 0, 30)
    sim = EventSimulator(net, opts)
    ref = ReferenceChip(net, opts.overflow, opts.lower_bound, opts.leak_can_fire)
    out = sim.run(events, 400)
    assert_matches_reference(sim, ref, out, ref.run(events.tolist(), 400))
    assert min(ref.count[lid]["spikes_out"] for lid in net.layers) > 100
    with pytest.MonkeyPatch.context() as mp:  # stopping and resuming at every pass changes nothing
        mp.setattr(engine, "OUTPUT_CAPACITY", 1)
        assert EventSimulator(net, opts).run(events, 400).tolist() == out.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), net=networks(), opts=options)
def test_output_buffer_growth_resumes_exactly(data, net, opts):
    """With a one-event output buffer, the compiled loop must stop and resume in the middle of
    cascades and leak ticks many times; the result must not change."""
    events = data.draw(event_streams(net))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "OUTPUT_CAPACITY", 1)
        sim = EventSimulator(net, opts)
    ref = ReferenceChip(net, opts.overflow, opts.lower_bound, opts.leak_can_fire)
    until = int(events["t"][-1]) + 40 if events.size else None
    assert_matches_reference(sim, ref, sim.run(events, until), ref.run(events.tolist(), until))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), net=networks())
def test_state_clock_and_counters_persist_across_runs(data, net):
    events = data.draw(event_streams(net, max_events=30))
    cut = data.draw(st.integers(0, len(events)))
    split = EventSimulator(net)
    out = np.concatenate([split.run(events[:cut]), split.run(events[cut:])])
    whole = simulate(net, events)
    assert out.tolist() == whole.events.tolist()
    assert split.counters == whole.counters
    assert {k: v.tolist() for k, v in split.states.items()} == {k: v.tolist() for k, v in whole.states.items()}
    split.reset()
    again = split.run(events)
    assert again.tolist() == whole.events.tolist()


@pytest.mark.parametrize("features, kernel, shape, stride", [
    (16, 3, (2, 9, 9), (1, 1)),   # whole feature vectors in vector blocks of 16
    (32, 3, (1, 5, 70), (1, 1)),  # two blocks per position; a leak pass needs 2 words per row
    (16, 5, (1, 11, 11), (2, 2)),  # blocks, one position at a time
    (1, 9, (1, 13, 9), (1, 1)),   # a 9 x 9 window on a 1-wide layer: rows of targets > 64 bits
    (16, 9, (1, 13, 17), (1, 1)),  # 16-feature blocks in a 9 x 9 window: tables of 1 and 2 words
])
def test_wide_layers_and_large_kernels_equal_reference(features, kernel, shape, stride):
    """The shapes the random networks above do not reach: the vectorized blocks (features a
    multiple of 16) and spike-bit tables of several words."""
    rng = np.random.default_rng(features * kernel)
    weights = rng.integers(-6, 12, (features, shape[0], kernel, kernel)).astype(np.int8)
    bias = rng.integers(-3, 6, features).astype(np.int16)
    net = IntegerNetwork({0: CoreLayer(weights, shape, 20, -20, stride, bias=bias, leak_enable=True,
                                       monitor=True)}, slow_clock_period_us=50)
    events = raster_to_events((rng.random((8, *shape)) < 0.3).astype(np.uint8), 0, 40)
    sim, ref = EventSimulator(net), ReferenceChip(net)
    assert_matches_reference(sim, ref, sim.run(events, 400), ref.run(events.tolist(), 400))
    assert len(ref.out) > 100  # the layer spikes, also on leak ticks


def features_without_byte_compress() -> str:
    """numba's CPU feature list for this machine, less AVX-512 VBMI2."""
    features = engine._target_features() - {"avx512vbmi2"}
    return ",".join(f"+{f}" for f in sorted(features)) + ",-avx512vbmi2"


@pytest.mark.parametrize("cpu_features", [
    pytest.param(None, id="host"),
    pytest.param(features_without_byte_compress(), id="no-vbmi2", marks=pytest.mark.skipif(
        not engine.BYTE_COMPRESS, reason="this CPU has no byte compress: the host run takes the scalar path")),
])
def test_compiled_loop_stays_in_its_buffers(tmp_path, cpu_features):
    """The loop runs without bounds checks: run the comparisons above again, compiled afresh
    with numba's bounds checking, so that an index past any buffer fails instead of passing.
    Again as for a CPU without byte compress instructions, whose 16-feature windows take the
    scalar path."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    if cpu_features is not None:
        env["NUMBA_CPU_FEATURES"] = cpu_features
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", __file__, "-k", "reference or resumes"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout


@njit(_nrt=False)
def vector_rule(state, add, thr, flags, bits, bit):
    engine.update_16(state, np.uint64(0), add, np.uint64(0), np.uint64(16), np.uint64(3), thr[0], thr[1],
              flags[0], flags[1] != 0, flags[2] != 0, flags[3] != 0, bits, np.uint64(0), np.uint64(bit))


@njit
def scalar_rule(state, add, thr, flags, bits, bit):
    for i in range(48):
        v, spiked = engine._update(state[i], add[i], thr[0], thr[1], flags[0], flags[1] != 0,
                                   flags[2] != 0, flags[3] != 0)
        state[i] = v
        bits[i % 16] |= np.uint64(spiked) << np.uint64(bit + i // 16)


@settings(max_examples=400, deadline=None)
@given(state=st.lists(st.integers(-32768, 32767), min_size=48, max_size=48),
       add=st.one_of(st.lists(st.integers(-128, 127), min_size=48, max_size=48).map(lambda a: np.array(a, np.int8)),
                     st.lists(st.integers(-32768, 32767), min_size=48, max_size=48).map(lambda a: np.array(a, np.int16))),
       hi=st.integers(1, 32767), low_gap=st.integers(1, 65535),
       flags=st.tuples(*[st.integers(0, 1)] * 4), bit=st.integers(0, 61))
def test_vector_update_equals_scalar_rule(state, add, hi, low_gap, flags, bit):
    """``engine.update_16`` (hand-written LLVM vector code) is rule 1 of ``_update``, on 3 groups
    of 16."""
    thr = np.array([hi, max(hi - low_gap, -32768)], np.int16)
    flags, bits = np.array(flags, np.int64), np.arange(16, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    results = []
    for rule in (vector_rule, scalar_rule):
        s, b = np.array(state, np.int16), bits.copy()
        rule(s, add, thr, flags, b, bit)
        results.append((s.tolist(), b.tolist()))
    assert results[0] == results[1]


@njit(_nrt=False)
def window_rule(state, add, thr, flags, n_rows, width, order):
    return engine.update_window_16(state, 0, 64, add, 0, 64, 16, thr[0], thr[1], flags[0], flags[1] != 0,
                                   flags[2] != 0, n_rows, width, 2, order)


@settings(max_examples=300, deadline=None)
@given(state=st.lists(st.integers(-32768, 32767), min_size=192, max_size=192),
       add=st.lists(st.integers(-128, 127), min_size=192, max_size=192),
       hi=st.integers(1, 32767), low_gap=st.integers(1, 65535), flags=st.tuples(*[st.integers(0, 1)] * 3),
       n_rows=st.integers(1, 3), width=st.integers(1, 4))
def test_window_update_equals_scalar_rule_and_order(state, add, hi, low_gap, flags, n_rows, width):
    """``engine.update_window_16`` is rule 1 of ``_update`` on rows of 16-neuron positions, and
    lists the spikes as bytes ``16 * neuron + position`` in ascending (rule 3) order."""
    thr = np.array([hi, max(hi - low_gap, -32768)], np.int16)
    add, expected, spikes = np.array(add, np.int8), np.array(state, np.int16), []
    for r in range(n_rows):
        for d in range(width):
            for j in range(16):
                i = 64 * r + 16 * d + j
                expected[i], spiked = engine._update.py_func(int(expected[i]), int(add[i]), hi, int(thr[1]),
                                                             *map(bool, flags), True)
                if spiked:
                    spikes.append(16 * j + 4 * r + d)
    got, order = np.array(state, np.int16), np.zeros(320, np.uint8)
    n = window_rule(got, add, thr, np.array(flags, np.int64), n_rows, width, order)
    assert got.tolist() == expected.tolist()
    assert order[:n].tolist() == sorted(spikes)


# ----------------------------------------------------------------------------- worked rules


def single_neuron(weight, thr=10, low=-5, reset="subtract", **kw):
    w = np.full((1, 1, 1, 1), weight, np.int8)
    return IntegerNetwork({0: CoreLayer(w, (1, 1, 1), thr, low, reset=reset, monitor=True, **kw)})


def test_one_spike_per_update_even_far_above_threshold():
    sim = EventSimulator(single_neuron(100, thr=10))
    out = sim.run(as_events([(5, 0, 0, 0, 0)]))
    assert out.tolist() == [(5, 0, 0, 0, 0)]
    assert sim.states[0][0, 0, 0] == 90  # subtract leaves it far above threshold, silent until next input


def test_lower_bound_clamps_then_threshold_and_reset_to_zero():
    sim = EventSimulator(single_neuron(-4, thr=10, low=-5))
    sim.run(as_events([(0, 0, 0, 0, 0)] * 3))
    assert sim.states[0][0, 0, 0] == -5
    sim = EventSimulator(single_neuron(-4, thr=10, low=-5), ChipModelOptions(lower_bound="reject"))
    sim.run(as_events([(0, 0, 0, 0, 0)] * 3))
    assert sim.states[0][0, 0, 0] == -4
    sim = EventSimulator(single_neuron(7, thr=10, reset="zero"))
    out = sim.run(as_events([(1, 0, 0, 0, 0), (2, 0, 0, 0, 0)]))
    assert out["t"].tolist() == [2] and sim.states[0][0, 0, 0] == 0


def test_int16_saturation_and_wrap_option():
    state = np.full((1, 1, 1), 32760, np.int16)
    net = single_neuron(100, thr=32767, low=-32768, initial_state=state)
    sim = EventSimulator(net)
    assert sim.run(as_events([(0, 0, 0, 0, 0)])).tolist() == [(0, 0, 0, 0, 0)]  # saturates at 32767 -> fires
    assert sim.states[0][0, 0, 0] == 0
    sim = EventSimulator(net, ChipModelOptions(overflow="wrap"))
    assert sim.run(as_events([(0, 0, 0, 0, 0)])).size == 0
    assert sim.states[0][0, 0, 0] == 32760 + 100 - 65536


def test_leak_ticks_before_event_at_same_time_and_can_fire():
    net = single_neuron(1, thr=10, bias=np.array([4], np.int16), leak_enable=True)
    net.slow_clock_period_us = 100
    sim = EventSimulator(net)
    # ticks at 100, 200 (-> 8), then the event at 200 (-> 9), tick 300 (-> 13: fires, 3)
    out = sim.run(as_events([(200, 0, 0, 0, 0)]), until_us=300)
    assert out.tolist() == [(300, 0, 0, 0, 0)]
    assert sim.states[0][0, 0, 0] == 3
    sim = EventSimulator(net, ChipModelOptions(leak_can_fire=False))
    assert sim.run(as_events([(200, 0, 0, 0, 0)]), until_us=300).size == 0
    assert sim.states[0][0, 0, 0] == 13


def test_fan_out_order_depth_first_and_pooled_drops():
    # layer 0: 1x1 identity-ish conv, 2 features -> layer 1 (pool 2) and layer 2 (pool 1)
    w0 = np.ones((2, 1, 1, 1), np.int8) * 10
    w1 = np.ones((1, 2, 1, 1), np.int8) * 10
    net = IntegerNetwork({
        0: CoreLayer(w0, (1, 3, 3), 10, -10, monitor=True, destinations=[Destination(1, 2), Destination(2)]),
        1: CoreLayer(w1, (2, 1, 1), 10, -10, monitor=True),
        2: CoreLayer(w1, (2, 3, 3), 10, -10, monitor=True),
    })
    sim = EventSimulator(net)
    out = sim.run(as_events([(0, 0, 0, 0, 0), (1, 0, 0, 2, 2)]))
    assert out.tolist() == [
        (0, 0, 0, 0, 0), (0, 0, 1, 0, 0),          # both features of layer 0 fire (f order)
        (0, 1, 0, 0, 0), (0, 2, 0, 0, 0),          # spike f=0 -> dest 0, then dest 1
        (0, 1, 0, 0, 0), (0, 2, 0, 0, 0),          # spike f=1 -> dest 0, then dest 1
        (1, 0, 0, 2, 2), (1, 0, 1, 2, 2),          # (2, 2) // 2 = (1, 1) is outside layer 1's 1x1 map
        (1, 2, 0, 2, 2), (1, 2, 0, 2, 2),
    ]
    assert sim.counters[1]["dropped"] == 2 and sim.counters[1]["events_in"] == 2
    assert sim.counters[2] == {"events_in": 4, "synaptic_updates": 4, "spikes_out": 4, "dropped": 0}


def test_dvs_stage_order_merge_pool_crop_mirror():
    net = IntegerNetwork({}, DVSInput((2, 8, 8), merge_polarities=True, pooling=(2, 2), origin=(1, 0),
                                      cut=(3, 2), mirror_x=True, mirror_diagonal=True, monitor=True))
    assert net.dvs.output_shape == (1, 3, 3)
    sim = EventSimulator(net)
    out = sim.run(as_events([(0, DVS_LAYER_ID, 1, 2, 1), (1, DVS_LAYER_ID, 0, 1, 1), (2, DVS_LAYER_ID, 0, 7, 6)]))
    # (y, x) = (2, 1) -> pool (1, 0) -> crop (0, 0) -> mirror x (0, 2) -> swap (2, 0); (1, 1) pools to row 0: cropped
    # (7, 6) -> pool (3, 3): x 3 > cut 2: cropped
    assert out.tolist() == [(0, DVS_LAYER_ID, 0, 2, 0)]
    assert sim.counters[DVS_LAYER_ID] == {"events_in": 3, "synaptic_updates": 0, "spikes_out": 1, "dropped": 2}


# ----------------------------------------------------------------------------- API and bad input


def test_set_state_states_are_copies_and_reset():
    net = single_neuron(3)
    sim = EventSimulator(net)
    sim.set_state(0, np.array([[[9]]]))
    sim.states[0][0, 0, 0] = 0  # a copy: no effect
    assert sim.run(as_events([(0, 0, 0, 0, 0)])).size == 1 and sim.states[0][0, 0, 0] == 2
    sim.reset()
    assert sim.states[0][0, 0, 0] == 0 and sim.counters[0]["events_in"] == 0
    with pytest.raises(ValueError, match=r"state\[0, 0, 0\] = 40000"):
        sim.set_state(0, np.array([[[40000]]]))
    with pytest.raises(ValueError, match=r"shape \(2,\); expected \(1, 1, 1\)"):
        sim.set_state(0, np.zeros(2))
    with pytest.raises(KeyError, match="layer=5"):
        sim.set_state(5, np.zeros((1, 1, 1)))


@pytest.mark.parametrize("rows, fragment", [
    ([(0, 3, 0, 0, 0)], "events[0].layer = 3: not a layer of the network (layers: [0])"),
    ([(0, 0, 0, 0, 0), (0, 0, 1, 0, 0)], "events[1].channel = 1: out of range for layer 0: expected 0 <= channel < 1"),
    ([(0, 0, 0, 0, -1)], "events[0].x = -1"),
    ([(0, 0, 0, 1, 0)], "events[0].y = 1"),
    ([(5, 0, 0, 0, 0), (4, 0, 0, 0, 0)], "events[1].t = 4 is earlier than events[0].t = 5"),
])
def test_bad_events_name_field_value_and_index(rows, fragment):
    with pytest.raises(InvalidEventsError) as err:
        EventSimulator(single_neuron(1)).run(as_events(rows))
    assert fragment in str(err.value)


def test_time_continues_across_runs():
    sim = EventSimulator(single_neuron(1))
    sim.run(as_events([(10, 0, 0, 0, 0)]))
    with pytest.raises(InvalidEventsError, match="earlier than the last event of the previous run"):
        sim.run(as_events([(9, 0, 0, 0, 0)]))
    with pytest.raises(InvalidEventsError, match="1-D numpy array of snnlib.EVENT_DTYPE"):
        sim.run(np.zeros(3))
    with pytest.raises(InvalidEventsError, match=r"until_us=5: expected an integer time \(µs\) at or after the last event \(t = 10\)"):
        sim.run(as_events([]), until_us=5)


def test_bad_networks_are_rejected():
    w = np.ones((1, 1, 1, 1), np.int8)
    loop = IntegerNetwork({0: CoreLayer(w, (1, 1, 1), 1, -1, destinations=[Destination(1)]),
                           1: CoreLayer(w, (1, 1, 1), 1, -1, destinations=[Destination(0)])})
    with pytest.raises(InvalidNetworkError, match="layers 0 -> 1 -> 0 form a cycle"):
        EventSimulator(loop)
    with pytest.raises(InvalidNetworkError, match=r"layers\[0\].threshold_high: 0; must be >= 1"):
        EventSimulator(single_neuron(1, thr=0, low=-1))
    with pytest.raises(InvalidNetworkError, match="id 13 is taken"):
        EventSimulator(IntegerNetwork({13: CoreLayer(w, (1, 1, 1), 1, -1)}, DVSInput()))
    with pytest.raises(InvalidNetworkError, match=r"dvs.cut: \(1, 1\); .* between origin \(3, 0\)"):
        EventSimulator(IntegerNetwork({}, DVSInput((2, 4, 4), origin=(3, 0), cut=(1, 1))))
    with pytest.raises(ValueError, match="overflow='clip'"):
        ChipModelOptions(overflow="clip")


def test_compile_ahead_leaves_the_event_loop_compiled_for_every_run():
    engine.compile_ahead()
    signatures = list(engine._run.signatures)
    assert signatures
    engine.simulate(single_neuron(7, thr=5), np.zeros(3, dtype=engine.EVENT_DTYPE))
    assert engine._run.signatures == signatures  # a real network's run compiled nothing more


def test_the_simulator_checks_its_arguments_and_the_default_rules_are_the_settled_ones():
    with pytest.raises(TypeError, match="network: got dict; expected an snnlib.IntegerNetwork"):
        EventSimulator({0: single_neuron(1).layers[0]})
    with pytest.raises(TypeError, match="options: got str; expected ChipModelOptions or None"):
        EventSimulator(single_neuron(1), "wrap")
    with pytest.raises(InvalidNetworkError, match="no layers and no DVS stage; nothing to simulate"):
        EventSimulator(IntegerNetwork({}))
    with pytest.raises(ValueError, match="lower_bound='floor'"):
        ChipModelOptions(lower_bound="floor")
    with pytest.raises(ValueError, match="leak_can_fire=1: expected True or False"):
        ChipModelOptions(leak_can_fire=1)
    assert ChipModelOptions() == ChipModelOptions("saturate", "clamp", True)
    assert ChipModelOptions().as_array().tolist() == [0, 0, 1]
    assert ChipModelOptions("wrap", "reject", False).as_array().tolist() == [1, 1, 0]


def test_a_run_may_start_at_the_last_time_and_end_at_its_last_event():
    sim = EventSimulator(single_neuron(4, thr=10))
    assert sim.last_t == np.iinfo(np.int64).min and sim.leak_ticks == (0, 0)  # no leak: no tick stepped
    assert sim.run(as_events([(10, 0, 0, 0, 0)]), until_us=10).size == 0 and sim.last_t == 10
    assert sim.run(as_events([(10, 0, 0, 0, 0), (10, 0, 0, 0, 0)])).tolist() == [(10, 0, 0, 0, 0)]
    for until in (True, 10.0, 9):
        with pytest.raises(InvalidEventsError, match=f"until_us={until!r}: expected an integer time"):
            sim.run(as_events([]), until_us=until)
    assert sim.run(as_events([]), until_us=np.int64(11)).size == 0


def test_set_state_takes_the_int16_range_and_states_are_f_h_w():
    w = np.arange(1, 5, dtype=np.int8).reshape(2, 2, 1, 1)
    sim = EventSimulator(IntegerNetwork({0: CoreLayer(w, (2, 1, 3), 100, -5, monitor=True)}))
    state = np.array([[[32767, 0, -32768]], [[1, 2, 3]]])
    sim.set_state(0, state)
    assert sim.states[0].shape == (2, 1, 3) and sim.states[0].tolist() == state.tolist()
    for value in (32768, -32769, 1.5):
        with pytest.raises(ValueError, match=r"state for layer 0: state\[0, 0, 0\] = .* is not an int16 value"):
            sim.set_state(0, np.full((2, 1, 3), value))
    sim.run(as_events([(0, 0, 1, 0, 2)]))  # channel 1 at x = 2: feature f gets w[f, 1] = 2 * f + 2
    assert sim.states[0][:, 0, 2].tolist() == [-5, 3 + 4]  # -32768 + 2 raised to threshold_low


def test_the_leak_clock_steps_only_with_a_leaking_layer():
    leaky = single_neuron(1, bias=np.array([1], np.int16), leak_enable=True)
    assert EventSimulator(IntegerNetwork(leaky.layers, slow_clock_period_us=250)).leak_ticks == (250, 250)
    assert EventSimulator(IntegerNetwork(single_neuron(1).layers, slow_clock_period_us=250)).leak_ticks == (0, 0)
    assert EventSimulator(leaky).leak_ticks == (0, 0)  # no slow clock: no tick
    for layer in (dict(bias=np.array([5], np.int16)), dict(leak_enable=True)):  # a bias that does not leak, a leak of nothing
        sim = EventSimulator(IntegerNetwork(single_neuron(1, **layer).layers, slow_clock_period_us=100))
        assert sim.leak_ticks == (0, 0) and sim.run(as_events([]), until_us=1000).size == 0
        assert sim.states[0].tolist() == [[[0]]]
