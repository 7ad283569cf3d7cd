"""Behaviour that users porting sinabs v0.2 code rely on but the seed page does not state, one
test per row of docs/seed-compatibility.md. The v0.2.1 values written here were measured by
running sinabs==0.2.1's own layers beside snnlib."""

import torch

from snnlib import SpikingLayer, threshold_subtract


def test_row6_a_membrane_at_k_thresholds_emits_the_exact_floor_of_its_quotient():
    # float32 0.1 is 0.100000001490116..., so 1.0 / 0.1 is just below 10: v0.2.1 gives 9 spikes
    # (and so does threshold_subtract); a rounded product 10 * 0.1 == 1.0 used to give 10
    layer = SpikingLayer(threshold=0.1)
    assert layer(torch.tensor([[1.0]])).item() == 9.0
    assert threshold_subtract(torch.tensor([1.0]), 0.1).item() == 9.0
    # the membrane keeps 1.0 - 9 x 0.1 in float32 (v0.2.1 holds 1.0 until its next step, row 7)
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
