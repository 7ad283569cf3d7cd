"""Behaviour that users porting sinabs v0.2 code rely on but the seed page does not state, one
test per row of docs/seed-compatibility.md. The v0.2.1 values written here were measured by
running sinabs==0.2.1's own layers beside snnlib."""

import pytest
import torch

from snnlib import (
    Img2SpikeLayer,
    InputLayer,
    NeuromorphicReLU,
    Sig2SpikeLayer,
    SpikingLayer,
    SpikingMaxPooling2dLayer,
    SumPool2d,
    threshold_reset,
    threshold_subtract,
)


def test_row1_sig2spike_takes_channels_by_time_and_returns_time_by_channels():
    # v0.2.1: Sig2SpikeLayer(4, tw=5) on a (4, 3) signal gives (15, 4); each sample repeats tw times
    assert Sig2SpikeLayer(4, tw=5)(torch.rand(4, 3)).shape == (15, 4)
    signal = torch.tensor([[1.0, 0.5, 0.25], [0.0, 2.0, -1.0]])
    assert Sig2SpikeLayer(2, tw=2, spk_out=False)(signal).tolist() == [
        [1.0, 0.0], [1.0, 0.0], [0.5, 2.0], [0.5, 2.0], [0.25, -1.0], [0.25, -1.0]]


def test_row2_sig2spike_without_spikes_returns_the_signal_unscaled():
    # v0.2.1: spk_out=False, norm_level=2 on [1, .5] with tw=2 -> [1, 1, .5, .5]; norm_level
    # scales only the spike probability
    layer = Sig2SpikeLayer(1, tw=2, norm_level=2, spk_out=False)
    assert layer(torch.tensor([[1.0, 0.5]])).flatten().tolist() == [1.0, 1.0, 0.5, 0.5]


def _row(*steps):
    """(T, 1, 1, 2) spikes of neurons A and B in one pooling window, from (A, B) per step."""
    return torch.tensor(steps, dtype=torch.float32).reshape(len(steps), 1, 1, 2)


def test_row3_max_pooling_counts_restart_each_call_unless_carried():
    # v0.2.1: A spikes twice in call 1, B once in call 2 -> [[1, 1], [1]]
    layer = SpikingMaxPooling2dLayer((1, 2))
    assert [layer(_row((1, 0), (1, 0))).flatten().tolist(), layer(_row((0, 1))).flatten().tolist()] == [[1, 1], [1]]
    stream = SpikingMaxPooling2dLayer((1, 2), carry_counts=True)  # A leads by 2: B's spike is blocked
    assert [stream(_row((1, 0), (1, 0))).flatten().tolist(), stream(_row((0, 1))).flatten().tolist()] == [[1, 1], [0]]


def test_row4_max_pooling_passes_every_neuron_at_the_highest_count():
    # v0.2.1: A spikes at t0, B at t1 (both at count 1 then) -> [1, 1]
    assert SpikingMaxPooling2dLayer((1, 2))(_row((1, 0), (0, 1))).flatten().tolist() == [1.0, 1.0]


def test_row5_max_pooling_passes_the_windows_largest_input_when_a_leader_spikes():
    # v0.2.1: A = [3, 1], B = [0, 2] -> [3, 2]: A leads and spikes at t1, and the window's largest
    # input then is B's 2; the gradient goes to that input (torch's max_pool2d)
    x = _row((3, 0), (1, 2)).requires_grad_()
    out = SpikingMaxPooling2dLayer((1, 2))(x)
    assert out.flatten().tolist() == [3.0, 2.0]
    out.sum().backward()
    assert x.grad.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]


def test_row6_a_membrane_at_k_thresholds_emits_the_exact_floor_of_its_quotient():
    # float32 0.1 is 0.100000001490116..., so 1.0 / 0.1 is just below 10: v0.2.1 gives 9 spikes
    # (and so does threshold_subtract); a rounded product 10 * 0.1 == 1.0 used to give 10
    layer = SpikingLayer(threshold=0.1)
    assert layer(torch.tensor([[1.0]])).item() == 9.0
    assert threshold_subtract(torch.tensor([1.0]), 0.1).item() == 9.0
    # state holds 1.0 with 9 spikes pending (row 7); they leave at the next step: 1.0 - 9 x 0.1
    assert (layer.state.item(), layer.activations.item()) == (1.0, 9.0)
    assert layer(torch.tensor([[0.0]])).item() == 0.0
    assert layer.state.item() == (torch.tensor(1.0) - 9 * torch.tensor(0.1)).item() > 0


def test_row8_the_layer_surrogate_window_is_one_threshold():
    # v0.2.1: gradient 1 at membrane 0.3 with the defaults (window = 1.0 x threshold)
    x = torch.tensor([[0.3]], requires_grad=True)
    SpikingLayer()(x).sum().backward()
    assert x.grad.item() == 1.0
    x = torch.tensor([[-0.01, 0.0]], requires_grad=True)  # two neurons; the window starts at 2 - 1.0 x 2 = 0
    SpikingLayer(threshold=2.0)(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 0.5]  # 1 / threshold for multi-spike neurons


def test_row9_the_reset_mask_is_a_constant_in_the_backward_pass():
    # v0.2.1: x = [1.5, 0.8], loss = spikes at t1 -> dx = [0, 1]; the spike at t0 resets the
    # membrane, so x[0] has no influence on t1 (differentiating the mask gave dx[0] = -1.5)
    for threshold in (1.0, 2.0):
        x = (torch.tensor([[1.5], [0.8]]) * threshold).requires_grad_()
        out = SpikingLayer(threshold=threshold, membrane_reset=True)(x)
        out[1].sum().backward()
        assert x.grad.flatten().tolist() == [0.0, 1.0]


def test_row10_no_gradient_where_the_membrane_sits_exactly_at_threshold_low():
    # v0.2.1 clamps with relu(v - threshold_low) + threshold_low, whose gradient at 0 is 0:
    # x = [-1, 1.5] with threshold_low = -1 -> dx = [0, 1]
    x = torch.tensor([[-1.0], [1.5]], requires_grad=True)
    SpikingLayer()(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0]


def test_row7_state_holds_the_membrane_before_the_last_spikes_leave():
    # v0.2.1: SpikingLayer() on [0.4, 0.9] -> spikes [0, 1], state 1.3, activations 1; the spike
    # leaves at the next step (state 0.3 after an input of 0). Same in reset mode (state 1.3)
    for reset in (False, True):
        layer = SpikingLayer(membrane_reset=reset)
        assert layer(torch.tensor([[0.4], [0.9]])).flatten().tolist() == [0.0, 1.0]
        assert layer.state.item() == pytest.approx(1.3) and layer.activations.item() == 1.0
        assert layer(torch.tensor([[0.0]])).item() == 0.0
        assert layer.state.item() == pytest.approx(0.0 if reset else 0.3, abs=1e-6)


def test_row11_stochastic_rounding_relu_rounds_to_nearest_in_eval():
    # v0.2.1: NeuromorphicReLU(stochastic_rounding=True).eval() on [.7, 1.6, .5, 2.5] -> [1, 2, 0, 2]
    # (torch.round, halves to even); the seed page says "floored" (it would give [0, 1, 0, 2]).
    # v0.2.1's round passes no gradient; snnlib's passes it straight through, as in training
    x = torch.tensor([0.7, 1.6, 0.5, 2.5], requires_grad=True)
    y = NeuromorphicReLU(stochastic_rounding=True).eval()(x)
    assert y.tolist() == [1.0, 2.0, 0.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0] * 4
    assert NeuromorphicReLU().eval()(x).tolist() == [0.0, 1.0, 0.0, 2.0]  # without it: floor


def test_row12_sum_pool_with_ceil_mode_equals_lppool_p1():
    # v0.2.1 (= torch.nn.LPPool2d(1, ...)): ones(3, 3) pooled by 2 with ceil_mode -> [4, 4, 4, 4];
    # 3x3 windows at stride 2 over arange(16) as 4x4 -> [45, 58.5, 99, 112.5]
    assert SumPool2d(2, ceil_mode=True)(torch.ones(1, 1, 3, 3)).flatten().tolist() == [4.0] * 4
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert SumPool2d(3, stride=2, ceil_mode=True)(x).flatten().tolist() == [45.0, 58.5, 99.0, 112.5]
    torch.testing.assert_close(SumPool2d(3, stride=2, ceil_mode=True)(x), torch.nn.LPPool2d(1, 3, 2, ceil_mode=True)(x))


def test_input_layer_output_shape_is_its_own_shape():
    # v0.2.1: InputLayer((1, 5, 6)).get_output_shape((2, 3, 4)) -> (1, 5, 6)
    assert InputLayer((1, 5, 6)).get_output_shape((2, 3, 4)) == (1, 5, 6)


def test_img2spike_encodes_images_of_any_shape():
    # v0.2.1 ignores image_shape: Img2SpikeLayer((1, 3, 3), tw=4) on a (2, 2) image -> (4, 2, 2)
    assert Img2SpikeLayer((1, 3, 3), tw=4)(torch.full((2, 2), 255.0)).shape == (4, 2, 2)


def test_reset_states_randomize_draws_state_in_0_1():
    # v0.2.1 draws state (and activations) uniformly in [0, 1), whatever the threshold;
    # snnlib draws the state there and leaves no spikes pending
    layer = SpikingLayer(threshold=5.0)
    layer.reset_states((1000,), randomize=True)
    assert 0.0 <= layer.state.min() and layer.state.max() < 1.0 and layer.state.std() > 0.2
    assert layer.activations.abs().sum() == 0


def test_float64_input_gives_float64_spikes():
    # v0.2.1 returns float32 spikes for float64 input (its state is float64); snnlib keeps the
    # input's dtype, as torch layers do (and as gradcheck needs)
    layer = SpikingLayer()
    out = layer(torch.tensor([[1.5], [0.2]], dtype=torch.float64))
    assert out.dtype == layer.state.dtype == torch.float64 and out.flatten().tolist() == [1.0, 0.0]
    assert threshold_subtract(torch.tensor([2.5], dtype=torch.float64)).dtype == torch.float64
    assert threshold_reset(torch.tensor([2.5], dtype=torch.float64)).dtype == torch.float64
