"""snnlib.functional: quantization, thresholding, surrogate shapes and the compiled
integrate-and-fire operator (exactness against a plain integer loop, and gradients)."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from snnlib import (
    SURROGATE_SHAPES,
    IAFParameters,
    InputShapeError,
    InvalidParameterError,
    TensorTypeError,
    integrate_and_fire,
    quantize,
    stochastic_rounding,
    surrogate_gradient,
    threshold_reset,
    threshold_subtract,
)


def reference_iaf(x, v0, threshold, low, subtract, reset=False, negative=False, saturate=False):
    """Plain integer loop in Python ints (object arrays: no int64 wrap, however far the membrane
    runs): x (B, T, N) ints, v0 (B, N) ints -> spikes (B, T, N), final v, and the largest
    magnitude of any value the float kernel computes (membrane, spike count times subtract)."""
    v = v0.astype(object)
    spikes = np.zeros(x.shape, object)
    peak = 0
    for t in range(x.shape[1]):
        v = v + x[:, t].astype(object)
        peak = max(peak, int(np.abs(v).max()))
        if saturate:
            v = np.clip(v, -32768, 32767)
        if low is not None:
            v = np.maximum(v, low)
        if reset:
            s = (v >= threshold).astype(object)
            v = np.where(s > 0, 0, v)
        else:
            s = np.where(v >= threshold, v // threshold, 0)
            if negative:
                s = s - np.where(v <= -threshold, (-v) // threshold, 0)
            peak = max(peak, int(np.abs(s * subtract).max()))
            v = v - s * subtract
        spikes[:, t] = s
        peak = max(peak, int(np.abs(v).max()))
    return spikes, v, peak


EXACT_INTEGERS = {torch.float32: 2**24, torch.float64: 2**53}  # every integer below is a float


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 9)),
    threshold=st.integers(1, 300),
    low=st.one_of(st.none(), st.integers(-400, -1)),
    subtract=st.one_of(st.none(), st.integers(1, 300)),
    mode=st.sampled_from(["subtract", "reset", "negative"]),
    saturate=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_integer_inputs_give_exact_integers_equal_to_reference(data, shape, threshold, low, subtract, mode, saturate, dtype):
    amplitude = 40000 if saturate else 3000
    x = np.array(data.draw(st.lists(st.integers(-amplitude, amplitude), min_size=int(np.prod(shape)),
                                    max_size=int(np.prod(shape))))).reshape(shape)
    v0 = np.array(data.draw(st.lists(st.integers(-threshold, threshold - 1), min_size=shape[0] * shape[2],
                                     max_size=shape[0] * shape[2]))).reshape(shape[0], shape[2])
    if low is not None:
        v0 = np.maximum(v0, low)
    params = IAFParameters(threshold, low, subtract, membrane_reset=mode == "reset",
                           negative_spikes=mode == "negative", saturate_int16=saturate)
    expected, v_end, peak = reference_iaf(x, v0, threshold, low, params.subtract, mode == "reset", mode == "negative", saturate)
    # exact only while every value computed is an integer the dtype holds; with negative spikes
    # and membrane_subtract > threshold the membrane grows geometrically, past 2**53 in 12 steps
    assume(peak < EXACT_INTEGERS[dtype])
    state = torch.tensor(v0, dtype=dtype)
    spikes = integrate_and_fire(torch.tensor(x, dtype=dtype), state, params)
    np.testing.assert_array_equal(spikes.numpy(), expected.astype(np.int64))
    np.testing.assert_array_equal(state.numpy(), v_end.astype(np.int64))


def test_geometric_membrane_growth_stays_exact_up_to_float64_integers():
    # threshold 1, 300 subtracted per spike, negative spikes: each step v spikes v times and
    # becomes v - 300 v = -299 v; from 3000, the largest value computed is the subtraction
    # 300 * 3000 * 299**4 = 7.2e15 at step 4, between 2**52 and 2**53
    x = np.zeros((1, 5, 1), np.int64)
    x[0, 0, 0] = 3000
    params = IAFParameters(1, None, 300, negative_spikes=True)
    expected, v_end, peak = reference_iaf(x, np.zeros((1, 1), np.int64), 1, None, 300, negative=True)
    assert 2**52 < peak < 2**53
    state = torch.zeros(1, 1, dtype=torch.float64)
    spikes = integrate_and_fire(torch.tensor(x, dtype=torch.float64), state, params)
    assert spikes.flatten().tolist() == expected.flatten().tolist() == [3000 * (-299) ** t for t in range(5)]
    assert state.item() == v_end.item() == 3000 * (-299) ** 5


def _multiples(threshold: int, limit: int) -> np.ndarray:
    """Membranes k*threshold - 1, k*threshold, k*threshold + 1 for k = 1..40 and for the 3
    largest k with k*threshold + 1 below ``limit``, and their negatives."""
    ks = list(range(1, 41)) + [(limit - 2) // threshold - j for j in (2, 1, 0)]
    m = np.array([k * threshold + d for k in ks for d in (-1, 0, 1)], np.int64)
    return np.concatenate([m, -m])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["subtract", "reset", "negative"])
def test_membranes_at_exact_multiples_of_every_threshold_give_exact_spike_counts(dtype, mode):
    """A membrane of exactly k * threshold is k spikes (subtract), 1 (reset) or, negated, -k
    (negative spikes), for every integer threshold 1..300, near 1 and near the dtype's largest
    exact integer; the residue left is the membrane mod threshold."""
    limit = 2**24 if dtype == torch.float32 else 2**53
    for threshold in range(1, 301):
        m = _multiples(threshold, limit)
        params = IAFParameters(threshold, None, membrane_reset=mode == "reset", negative_spikes=mode == "negative")
        x = torch.tensor(np.stack([m, np.zeros_like(m)])[None], dtype=dtype)  # (1, 2, N): m, then nothing
        state = torch.zeros(1, m.size, dtype=dtype)
        spikes = integrate_and_fire(x, state, params)[0].to(torch.float64).numpy()
        n = np.abs(m) // threshold  # exact spike count of |m| (Python ints in int64)
        if mode == "reset":
            expected, residue = (m >= threshold).astype(np.int64), np.where(m >= threshold, 0, m)
        elif mode == "negative":
            expected = np.sign(m) * n
            residue = m - expected * threshold
        else:
            expected = np.where(m >= threshold, n, 0)
            residue = m - expected * threshold
        assert spikes[0].astype(np.int64).tolist() == expected.tolist(), f"threshold {threshold}"
        assert not spikes[1].any(), f"threshold {threshold}: the residue fired again"
        assert state[0].to(torch.float64).numpy().astype(np.int64).tolist() == residue.tolist(), f"threshold {threshold}"


def test_threshold_functions_at_exact_multiples_of_every_threshold():
    for threshold in range(1, 301):
        m = torch.tensor(_multiples(threshold, 2**24), dtype=torch.float64)
        n = torch.div(m.abs(), threshold, rounding_mode="floor")
        assert torch.equal(threshold_subtract(m, threshold), torch.where(m >= threshold, n, 0.0)), threshold
        assert torch.equal(threshold_reset(m, threshold), (m >= threshold).double()), threshold


def test_threshold_subtract_and_reset_forward():
    v = torch.tensor([-3.0, 0.0, 0.99, 1.0, 2.5, 7.0])
    assert threshold_subtract(v).tolist() == [0, 0, 0, 1, 2, 7]
    assert threshold_subtract(v, threshold=2).tolist() == [0, 0, 0, 0, 1, 3]
    assert threshold_reset(v).tolist() == [0, 0, 0, 1, 1, 1]


def test_threshold_backward_passes_gradient_at_and_above_threshold_minus_window():
    v = torch.tensor([0.0, 1.4, 1.5, 2.0, 9.0], requires_grad=True)
    threshold_subtract(v, threshold=2.0, window=0.5).sum().backward()
    assert v.grad.tolist() == [0.0, 0.0, 0.5, 0.5, 0.5]  # passed where v >= 1.5, divided by 2
    v.grad = None
    threshold_reset(v, threshold=2.0, window=0.5).sum().backward()
    assert v.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]  # undivided for reset


def test_quantize_floors_with_straight_through_gradient():
    x = torch.tensor([-1.5, 0.2, 2.9], requires_grad=True)
    y = quantize(x)
    assert y.tolist() == [-2.0, 0.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


def test_stochastic_rounding_is_unbiased_and_straight_through():
    torch.manual_seed(0)
    x = torch.full((20000,), 2.25, requires_grad=True)
    y = stochastic_rounding(x)
    assert set(y.tolist()) == {2.0, 3.0}
    assert abs(y.mean().item() - 2.25) < 0.02
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_surrogate_shapes_values():
    v = torch.tensor([0.0, 0.5, 1.0, 1.25, 2.0], dtype=torch.float64)
    expected = {
        "step": [0, 1, 1, 1, 1],
        "box": [0, 1, 1, 1, 0],
        "triangle": [0, 0, 1, 0.5, 0],
        "fast_sigmoid": [1 / 9, 1 / 4, 1, 1 / 2.25, 1 / 9],
        "gaussian": list(np.exp(-0.5 * (np.array([0, 0.5, 1, 1.25, 2]) - 1) ** 2 / 0.25)),
    }
    assert set(expected) == set(SURROGATE_SHAPES)
    for shape, values in expected.items():
        np.testing.assert_allclose(surrogate_gradient(v, 1.0, shape, 0.5).numpy(), values, err_msg=shape)


def _seed_loop_iaf(x, threshold, low, reset, subtract):
    """Autograd through sinabs v0.2.1's loop (its SpikingLayer.forward, restated): the
    subtraction (or reset) of step t-1 is applied at step t, the reset mask ``s == 0`` is a
    constant, the membrane is clamped as ``relu(v - low) + low`` and the surrogate window is
    1.0 x threshold."""
    v = torch.zeros_like(x[:, 0])
    s = torch.zeros_like(v)
    out = []
    for t in range(x.shape[1]):
        v = x[:, t] + v * (s == 0) if reset else x[:, t] + v - s * subtract
        if low is not None:
            v = torch.relu(v - low) + low
        s = (threshold_reset if reset else threshold_subtract)(v, threshold, threshold)
        out.append(s)
    return torch.stack(out, 1)


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("low", [None, -1.0])
@pytest.mark.parametrize("subtract", [None, 0.75, 3.0])
def test_whole_sequence_gradient_equals_autograd_through_the_seed_loop(reset, low, subtract):
    # x are multiples of 1/4 reaching the clamp value -1 exactly: every sum is exact, so the
    # two orders of addition agree bit for bit; subtract=3.0 = 2 x threshold is the largest
    # membrane_subtract whose gradient is not clipped (see iaf_backward)
    torch.manual_seed(1)
    x = (torch.randint(-6, 9, (2, 15, 11)) / 4).double().requires_grad_()
    weights = torch.randn(2, 15, 11, dtype=torch.float64)
    params = IAFParameters(threshold=1.5, threshold_low=low, membrane_subtract=subtract, membrane_reset=reset)
    spikes = integrate_and_fire(x, torch.zeros(2, 11, dtype=torch.float64), params)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), x)
    x_ref = x.detach().clone().requires_grad_()
    ref = _seed_loop_iaf(x_ref, 1.5, low, reset, params.subtract)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), x_ref)
    assert torch.equal(spikes, ref)
    torch.testing.assert_close(grad, grad_ref)
    assert grad.abs().sum() > 0


@settings(max_examples=120, deadline=None)
@given(
    threshold=st.floats(1e-3, 1e3),
    k=st.integers(0, 5000),
    nudge=st.integers(-2, 2),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_spike_count_is_the_exact_floor_of_the_quotient_of_membrane_and_threshold(threshold, k, nudge, dtype):
    # membranes at and a few ulps around k x threshold, where a rounded product or quotient
    # is most often one off; the truth is the floor of the exact rational quotient
    thr = torch.tensor(threshold, dtype=dtype)
    v = torch.tensor(k, dtype=dtype) * thr
    for _ in range(abs(nudge)):
        v = torch.nextafter(v, torch.tensor(np.sign(nudge) * np.inf, dtype=dtype))
    exact = Fraction(v.item()) // Fraction(thr.item())
    params = IAFParameters(threshold=thr.item(), threshold_low=None)
    spikes = integrate_and_fire(v.reshape(1, 1, 1), torch.zeros(1, 1, dtype=dtype), params)
    assert spikes.item() == max(exact, 0)
    assert threshold_subtract(v, thr.item()).item() == max(exact, 0)


class _ReferenceSpikes(torch.autograd.Function):
    """Spike count of w at threshold thr (a 0-dim tensor); surrogate f' in w and -(w / thr) f' in thr."""

    @staticmethod
    def forward(ctx, w, thr, reset, shape, window):
        ctx.save_for_backward(w, thr)
        ctx.options = reset, shape, window
        return (w >= thr).to(w.dtype) if reset else torch.div(w, thr, rounding_mode="floor").clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        w, thr = ctx.saved_tensors
        reset, shape, window = ctx.options
        t = thr.item()
        ds = surrogate_gradient(w, t, shape, window * t, 1.0 if reset else 1.0 / t)
        return grad * ds, (-(w / thr) * grad * ds).sum(), None, None, None


def reference(x, thr, low, subtract, reset, shape, window):
    v, out = torch.zeros_like(x[:, 0]), []
    for t in range(x.shape[1]):
        u = v + x[:, t]
        w = u if low is None else torch.where(u > low, u, torch.full_like(u, low))
        s = _ReferenceSpikes.apply(w, thr, reset, shape, window)
        out.append(s)
        v = w * (1 - s.detach()) if reset else w - (thr if subtract is None else subtract) * s
    return torch.stack(out, 1)


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("subtract", [None, 2.5])
@pytest.mark.parametrize("low", [None, -1.0])
@pytest.mark.parametrize("shape", ["step", "triangle", "gaussian"])
def test_threshold_gradient_equals_autograd_through_a_loop(reset, subtract, low, shape):
    torch.manual_seed(7)
    x = (torch.randint(-6, 12, (2, 20, 9)) / 4).double()
    weights = torch.randn(2, 20, 9, dtype=torch.float64)
    thr = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    params = IAFParameters(1.5, low, subtract, membrane_reset=reset, surrogate=shape)
    spikes = integrate_and_fire(x, torch.zeros(2, 9, dtype=torch.float64), params, threshold=thr)
    (grad,) = torch.autograd.grad((spikes * weights).sum(), thr)
    thr_ref = thr.detach().clone().requires_grad_()
    ref = reference(x, thr_ref, low, subtract, reset, shape, 1.0)
    (grad_ref,) = torch.autograd.grad((ref * weights).sum(), thr_ref)
    assert torch.equal(spikes, ref)
    torch.testing.assert_close(grad, grad_ref)
    assert grad != 0
    # one threshold per neuron: the same gradient, split by neuron
    per = thr.detach().expand(9).clone().requires_grad_()
    spikes = integrate_and_fire(x, torch.zeros(2, 9, dtype=torch.float64), params, threshold=per)
    (grad_per,) = torch.autograd.grad((spikes * weights).sum(), per)
    torch.testing.assert_close(grad_per.sum(), grad)


@pytest.mark.parametrize("mode", ["subtract", "reset", "negative", "subtract_3x"])
@pytest.mark.parametrize("shape", SURROGATE_SHAPES)
@pytest.mark.parametrize("threshold", [1.0, 40.0, 5000.0])
def test_gradient_stays_bounded_over_500_steps(mode, shape, threshold):
    # each step adds at most |grad_out| x the surrogate's peak (1 for reset, 1/threshold for
    # multi-spike neurons) and carries the later gradient with a factor in [-1, 1], so
    # |dL/dx[t]| <= (T - t) x peak for L = sum of all spikes. Differentiating the reset mask
    # instead multiplied it by about -threshold per step (at threshold 2 over 300 steps it
    # overflowed float32, where v0.2.1's largest is 7); an unclipped subtraction of
    # 3 x threshold (as v0.2.1 has it) multiplies it by -2 per step
    steps = 500
    torch.manual_seed(5)
    x = (torch.rand(2, steps, 16, dtype=torch.float64) * 1.6 - 0.3) * threshold
    if mode == "negative":
        x = x - 0.5 * threshold
    params = IAFParameters(threshold=threshold, threshold_low=None if mode == "negative" else -threshold,
                           membrane_subtract=3 * threshold if mode == "subtract_3x" else None,
                           membrane_reset=mode == "reset", negative_spikes=mode == "negative", surrogate=shape)
    x.requires_grad_()
    integrate_and_fire(x, torch.zeros(2, 16, dtype=torch.float64), params).sum().backward()
    peak = 1.0 if mode == "reset" else 1.0 / threshold
    bound = (steps - torch.arange(steps, dtype=torch.float64)).reshape(1, steps, 1) * peak
    assert torch.all(x.grad.abs() <= bound * (1 + 1e-9))
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", SURROGATE_SHAPES)
def test_backward_is_linear_in_the_incoming_gradient_and_nonzero(shape):
    torch.manual_seed(2)
    x = torch.randn(1, 6, 4, dtype=torch.float64) * 2
    params = IAFParameters(threshold=1.0, surrogate=shape)

    def vjp(grad_out):
        xr = x.clone().requires_grad_()
        spikes = integrate_and_fire(xr, torch.zeros(1, 4, dtype=torch.float64), params)
        return torch.autograd.grad(spikes, xr, grad_out)[0]

    g1, g2 = torch.randn(2, 1, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(vjp(g1 + 3 * g2), vjp(g1) + 3 * vjp(g2))
    assert vjp(g1).abs().sum() > 0


def test_float_inputs_match_threshold_subtract_loop():
    torch.manual_seed(3)
    x = torch.rand(2, 30, 50) * 1.3 - 0.3
    spikes = integrate_and_fire(x, torch.zeros(2, 50), IAFParameters(threshold=0.7, threshold_low=None))
    v, expected = torch.zeros(2, 50), []
    for t in range(30):
        v = v + x[:, t]
        expected.append(threshold_subtract(v, 0.7))
        v = v - expected[-1] * 0.7
    torch.testing.assert_close(spikes, torch.stack(expected, 1))


def test_out_buffer_is_reused_for_inference_only():
    x = torch.ones(1, 4, 3)
    out = torch.empty(1, 4, 3)
    assert integrate_and_fire(x, torch.zeros(1, 3), out=out).data_ptr() == out.data_ptr()
    assert out.sum() == 12 * 1  # threshold 1: one spike per step
    with pytest.raises(InvalidParameterError, match="out"):
        integrate_and_fire(x.clone().requires_grad_(), torch.zeros(1, 3), out=out)


@pytest.mark.parametrize("reset", [False, True])
def test_membrane_buffer_receives_the_last_steps_membrane_before_its_spikes_leave(reset):
    x = torch.tensor([[[0.5, -3.0, 2.5]], [[4.0, 1.0, 0.25]]]).repeat(1, 2, 1)  # (2, 2, 3)
    state, membrane = torch.zeros(2, 3), torch.full((2, 3), 7.0)
    params = IAFParameters(threshold=2.0, membrane_reset=reset)
    spikes = integrate_and_fire(x, state, params, membrane=membrane)
    # step 1 starts from step 0's membrane after its spikes left; the clamp at -1 applies
    before = torch.clamp(x[:, 0], min=-1.0)
    first = torch.div(before, 2, rounding_mode="floor").clamp(min=0)
    after = torch.where(first > 0, 0.0, before) if reset else before - 2.0 * first
    assert torch.equal(membrane, torch.clamp(after + x[:, 1], min=-1.0))
    last = torch.where(spikes[:, -1] > 0, 0.0, membrane) if reset else membrane - 2.0 * spikes[:, -1]
    assert torch.equal(state, last)
    with pytest.raises(InputShapeError, match=r"membrane: got shape \(3,\); expected a contiguous \(2, 3\) tensor"):
        integrate_and_fire(x, torch.zeros(2, 3), params, membrane=torch.zeros(3))
    with pytest.raises(TensorTypeError, match=r"membrane: dtype torch.float64; expected dtype torch.float32"):
        integrate_and_fire(x, torch.zeros(2, 3), params, membrane=torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(threshold=0), r"threshold=0: expected a positive number"),
        (dict(threshold=-2.0), r"threshold=-2.0"),
        (dict(threshold=1.0, threshold_low=1.0), r"threshold_low=1.0: expected None or a number below threshold=1.0"),
        (dict(membrane_subtract=0), r"membrane_subtract=0"),
        (dict(surrogate="sigmoidish"), r"surrogate='sigmoidish': expected one of"),
        (dict(surrogate_window=0.0), r"surrogate_window=0.0"),
    ],
)
def test_bad_parameters_name_argument_and_value(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        IAFParameters(**kwargs)


def test_bad_inputs_name_argument_and_expected_form():
    with pytest.raises(InputShapeError, match=r"x: got shape \(4, 3\).*expected a \(B, T, N\)"):
        integrate_and_fire(torch.zeros(4, 3), torch.zeros(1, 3))
    with pytest.raises(InputShapeError, match=r"state: got shape \(2, 3\).*expected a contiguous \(1, 3\)"):
        integrate_and_fire(torch.zeros(1, 4, 3), torch.zeros(2, 3))
    with pytest.raises(InvalidParameterError, match="threshold=0"):
        threshold_subtract(torch.zeros(3), threshold=0)
    with pytest.raises(InvalidParameterError, match="shape='bump'"):
        surrogate_gradient(torch.zeros(3), shape="bump")


def test_the_default_neuron_is_threshold_1_low_minus_1_subtracting_its_threshold_with_the_step_surrogate():
    assert IAFParameters() == IAFParameters(1.0, -1.0, None, False, False, False, "step", 1.0)
    assert IAFParameters().subtract == 1.0 and IAFParameters(2.0, membrane_subtract=3).subtract == 3.0


def test_each_argument_of_integrate_and_fire_is_checked_by_its_own_rule():
    x, state = torch.ones(1, 2, 3), torch.zeros(1, 3)
    with pytest.raises(InvalidParameterError, match=r"params=\{'threshold': 1.0\}: expected an IAFParameters"):
        integrate_and_fire(x, state, {"threshold": 1.0})
    with pytest.raises(TensorTypeError, match="x: dtype list"):
        integrate_and_fire([[[1.0]]], state)
    with pytest.raises(InputShapeError, match=r"state: got shape \(1, 3\); expected a contiguous \(1, 3\) tensor"):
        integrate_and_fire(x, torch.zeros(1, 6)[:, ::2])  # the right shape, not contiguous
    with pytest.raises(InputShapeError, match=r"out: got shape \(1, 2, 3\); expected a contiguous"):
        integrate_and_fire(x, state, out=torch.zeros(1, 3, 2).transpose(1, 2))
    with pytest.raises(TensorTypeError, match="out: dtype torch.float64"):
        integrate_and_fire(x, state, out=torch.zeros(1, 2, 3, dtype=torch.float64))
    with pytest.raises(InputShapeError, match="out: requires grad; expected a plain buffer"):
        integrate_and_fire(x, state, out=torch.zeros(1, 2, 3, requires_grad=True))
    with torch.no_grad():  # x may require grad when nothing is recorded
        out = torch.empty(1, 2, 3)
        assert integrate_and_fire(x.clone().requires_grad_(), state.clone(), out=out) is out and out.sum() == 6


@pytest.mark.parametrize("threshold, error, match", [
    (1.0, TensorTypeError, "threshold: float ; expected a floating-point tensor"),
    (torch.ones(3, dtype=torch.int64), TensorTypeError, "threshold: Tensor torch.int64; expected a floating-point tensor"),
    (torch.ones(3, device="meta"), TensorTypeError, "threshold: on device meta; expected device cpu"),
    (torch.ones(2), InputShapeError, r"threshold: got shape \(2,\); expected \(\) or \(3,\)"),
    (torch.ones(1, 3), InputShapeError, r"threshold: got shape \(1, 3\)"),
    (torch.tensor([1.0, 1.0, 2.0]), InvalidParameterError, "threshold: holds values other than params.threshold=1.0"),
    (torch.tensor(2.0), InvalidParameterError, "holds values other than"),
])
def test_a_threshold_tensor_is_a_float_tensor_of_the_params_threshold_per_neuron_or_one(threshold, error, match):
    with pytest.raises(error, match=match):
        integrate_and_fire(torch.ones(1, 2, 3), torch.zeros(1, 3), threshold=threshold)


@pytest.mark.parametrize("threshold", [torch.tensor(1.0), torch.ones(3)])
def test_a_threshold_tensor_of_either_shape_gets_its_gradient_in_its_shape(threshold):
    threshold = threshold.clone().requires_grad_()
    x = torch.tensor([[[0.5, 1.5, 2.5], [0.75, 0.0, 1.0]]])
    integrate_and_fire(x, torch.zeros(1, 3), threshold=threshold).sum().backward()
    assert threshold.grad.shape == threshold.shape and threshold.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes_fill_the_membrane_and_out_buffers(dtype):
    x = torch.tensor([[[0.75, 2.5], [0.75, 0.0]]], dtype=dtype)
    membrane, out = torch.full((1, 2), 9.0, dtype=dtype), torch.empty(1, 2, 2, dtype=dtype)
    spikes = integrate_and_fire(x, torch.zeros(1, 2, dtype=dtype), membrane=membrane, out=out)
    assert spikes is out and out.tolist() == [[[0.0, 2.0], [1.0, 0.0]]] and membrane.tolist() == [[1.5, 0.5]]


def test_negative_spikes_are_ignored_with_membrane_reset_forward_and_backward():
    x = torch.tensor([[[-5.0, 2.5, 0.5], [-3.0, -4.0, 1.0], [1.5, -2.0, -7.0]]], dtype=torch.float64)
    results = []
    for negative in (False, True):
        inputs = x.clone().requires_grad_()
        state = torch.zeros(1, 3, dtype=torch.float64)
        params = IAFParameters(1.0, None, membrane_reset=True, negative_spikes=negative, surrogate="triangle")
        spikes = integrate_and_fire(inputs, state, params)
        (spikes * torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 3, 3)).sum().backward()
        results.append((spikes.detach(), state, inputs.grad))
    assert results[0][0].tolist() == [[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]
    for a, b in zip(*results):
        assert torch.equal(a, b)
