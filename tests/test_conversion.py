"""snnlib.ann, snnlib.conversion and snnlib.synops: ANN layers, ANN-to-SNN conversion with
weight normalisation, and SynOp counting."""

import numpy as np
import pytest
import torch

from snnlib import (
    InvalidParameterError,
    NeuromorphicReLU,
    QuantizeLayer,
    SpikingLayer,
    SumPool2d,
    SynOpCounter,
    from_torch,
    normalize_weights,
)


def test_sum_pool_equals_lppool_p1_and_is_exact_for_integers():
    x = torch.randint(-50, 50, (3, 2, 9, 9)).float()
    pool = SumPool2d(3)
    assert (pool.kernel_size, pool.stride) == (3, None)
    expected = torch.nn.LPPool2d(1, 3)(x)
    torch.testing.assert_close(pool(x), expected)
    assert torch.equal(pool(x), x.unfold(2, 3, 3).unfold(3, 3, 3).sum((-1, -2)))
    assert SumPool2d((2, 1), stride=(1, 1))(torch.ones(1, 1, 3, 3)).tolist() == [[[[2.0] * 3] * 2]]
    assert torch.autograd.gradcheck(SumPool2d(2), (torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True),))
    with pytest.raises(InvalidParameterError, match=r"kernel_size=0"):
        SumPool2d(0)


def test_neuromorphic_relu_quantizes_counts_activity_and_passes_gradient():
    relu = NeuromorphicReLU(fanout=4)
    x = torch.tensor([[-1.0, 0.5, 2.7], [3.2, 1.0, -0.1]], requires_grad=True)
    y = relu(x)
    assert y.tolist() == [[0.0, 0.0, 2.0], [3.0, 1.0, 0.0]]
    assert relu.activity.item() == pytest.approx((2 + 3 + 1) / 2 * 4)
    y.sum().backward()
    assert x.grad.tolist() == [[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]  # ReLU gradient, floor straight through
    assert NeuromorphicReLU(quantize=False)(x).tolist()[0][1] == 0.5


def test_neuromorphic_relu_takes_fanout_0_refuses_negative_and_averages_a_batch_of_one():
    assert NeuromorphicReLU(fanout=0).fanout == 0
    with pytest.raises(InvalidParameterError, match=r"fanout=-1: expected a number >= 0"):
        NeuromorphicReLU(fanout=-1)
    relu = NeuromorphicReLU(fanout=3)
    relu(torch.tensor([[2.5, 1.0, -4.0]]))
    assert relu.activity.item() == 9.0  # (2 + 1) per sample, one sample, times 3


def test_neuromorphic_relu_floors_unless_told_to_round_and_only_when_quantizing():
    torch.manual_seed(1)
    x = torch.full((2000,), 0.9)
    assert NeuromorphicReLU().train()(x).sum() == 0 and NeuromorphicReLU().eval()(x).sum() == 0
    assert torch.equal(NeuromorphicReLU(quantize=False, stochastic_rounding=True).train()(x), x)
    assert torch.equal(NeuromorphicReLU(quantize=False, stochastic_rounding=True).eval()(x), x)


def test_sum_pool_is_lppool_with_p_1_and_a_1x1_window_with_ceil_mode_is_the_identity():
    assert isinstance(SumPool2d(2), torch.nn.LPPool2d) and SumPool2d(2).norm_type == 1
    x = torch.randint(-9, 9, (2, 3, 5, 4)).float()
    assert torch.equal(SumPool2d(1, ceil_mode=True)(x), x) and torch.equal(SumPool2d((1, 1), stride=1)(x), x)
    assert SumPool2d(2)(torch.ones(1, 1, 5, 5)).tolist() == [[[[4.0, 4.0], [4.0, 4.0]]]]  # the edge left out


def test_neuromorphic_relu_rounds_stochastically_only_in_training():
    torch.manual_seed(0)
    relu = NeuromorphicReLU(stochastic_rounding=True)
    x = torch.full((10000,), 0.5)
    assert 0.45 < relu.train()(x).mean() < 0.55
    assert relu.eval()(x).sum() == 0


def test_quantize_layer():
    x = torch.tensor([1.7, -0.2])
    assert QuantizeLayer()(x).tolist() == [1.0, -1.0]
    assert QuantizeLayer(quantize=False)(x) is x


def _ann():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), SumPool2d(2),
        torch.nn.Conv2d(4, 4, 3, padding=1), NeuromorphicReLU(quantize=False), torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 3),
    )


def test_from_torch_replaces_relus_and_keeps_the_original():
    ann = _ann()
    snn = from_torch(ann, threshold=2.0, batch_size=2, membrane_reset=True, saturate_int16=True)
    spiking = [m for m in snn if isinstance(m, SpikingLayer)]
    assert len(spiking) == 2 and isinstance(ann[1], torch.nn.ReLU)
    assert all(s.threshold == 2.0 and s.batch_size == 2 and s.membrane_reset and s.saturate_int16 for s in spiking)
    assert [s.layer_name for s in spiking] == ["1", "4"]
    assert snn(torch.rand(2 * 5, 1, 8, 8)).shape == (10, 3)


def test_normalized_snn_rates_approximate_the_ann():
    ann = _ann()
    torch.manual_seed(1)
    image = torch.rand(1, 1, 8, 8)
    sample = torch.rand(16, 1, 8, 8)
    snn = from_torch(ann, threshold_low=None, sample_data=sample, percentile=99.0)
    normalized = normalize_weights(_ann(), sample, 99.0)
    with torch.no_grad():
        hidden = normalized[:2](sample)
        assert np.percentile(hidden.numpy(), 99.0) == pytest.approx(1.0, rel=1e-4)
        steps = 400
        rate_out = snn(image.repeat(steps, 1, 1, 1)).mean(0)
        torch.testing.assert_close(rate_out, normalized(image)[0], atol=0.06, rtol=0.05)
        torch.testing.assert_close(normalized(image), ann(image))  # the output layer keeps the scale


def test_normalize_weights_rejects_bad_arguments():
    with pytest.raises(InvalidParameterError, match=r"percentile=0: expected a number in \(0, 100\]"):
        normalize_weights(_ann(), torch.rand(2, 1, 8, 8), 0)
    with pytest.raises(InvalidParameterError, match="no Conv2d/Linear followed by a ReLU"):
        normalize_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.rand(1, 2))


def test_normalize_weights_takes_percentile_100_as_the_maximum_and_refuses_more():
    sample = torch.rand(4, 1, 8, 8)
    normalized = normalize_weights(_ann(), sample, 100)
    with torch.no_grad():
        assert normalized[:2](sample).max().item() == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(InvalidParameterError, match=r"percentile=100.5: expected a number in \(0, 100\]"):
        normalize_weights(_ann(), sample, 100.5)


def test_normalize_weights_reads_the_scale_at_the_relu_past_modules_between():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 50), torch.nn.Identity(), torch.nn.ReLU(), torch.nn.Linear(50, 2))
    with torch.no_grad():
        model[0].bias.fill_(-0.5)  # most outputs negative: the ReLU's median is 0, a silent ReLU
    before = [model[0].weight.clone(), model[0].bias.clone(), model[3].weight.clone()]
    normalize_weights(model, torch.rand(20, 3) * 0.1, 50)
    assert all(torch.equal(a, b) for a, b in zip(before, [model[0].weight, model[0].bias, model[3].weight]))


def test_synop_counter_counts_spikes_and_exact_conv_synops():
    conv = torch.nn.Conv2d(1, 2, 3, padding=1, bias=False)
    torch.nn.init.ones_(conv.weight)
    model = torch.nn.Sequential(conv, SpikingLayer(threshold=1e9, layer_name="s"), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 4 * 4, 5))
    x = torch.zeros(3, 1, 4, 4)
    x[0, 0, 0, 0] = 1  # a corner spike reaches 2 channels x 4 neurons
    x[1, 0, 1, 1] = 2  # two interior spikes reach 2 x 9 neurons each
    with SynOpCounter(model) as counter:
        model(x)
        assert counter.activity["0"].synops == 2 * 4 + 2 * 2 * 9
        assert counter.activity["1"].spikes == 0 and counter.activity["1"].spike_rate == 0
        assert counter.activity["3"].synops == 0
        model[1].threshold = model[1].membrane_subtract = 0.5
        model[1].reset_states()
        counter.reset()
        model(x)
        spikes = counter.activity["1"].spikes
        assert spikes == 2 * (2 * 4) + 4 * (2 * 9)  # threshold 0.5: two spikes per unit of current
        assert counter.activity["1"].spike_rate == spikes / (3 * 2 * 4 * 4)
        assert counter.activity["3"].synops == spikes * 5
        assert counter.total_synops() == counter.activity["0"].synops + counter.activity["3"].synops
    model(x)  # detached: the counts stay
    assert counter.activity["1"].spikes == spikes


def test_synop_counter_sums_over_calls_counts_negative_spikes_by_size_and_checks_its_inputs():
    linear = torch.nn.Linear(3, 2, bias=False)
    model = torch.nn.Sequential(linear, SpikingLayer(threshold=1.0, threshold_low=None, negative_spikes=True))
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    x = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    with SynOpCounter(model) as counter:
        assert counter.activity["1"].spike_rate is None and counter.activity["0"].spike_rate is None
        model(x)
        model(x)
        assert counter.activity["0"].synops == 2 * (4.0 * 2)  # input sum 4 to 2 outputs, twice
        assert counter.activity["0"].spikes is None and counter.activity["0"].spike_rate is None
        assert counter.activity["1"].spikes == 2 * (2 + 2 + 1 + 1)  # spikes of -2 and -1 count as 2 and 1
        assert counter.activity["1"].neuron_steps == 2 * 4 and counter.activity["1"].spike_rate == 12 / 8
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")
    with SynOpCounter(torch.nn.Sequential(conv)) as counter, pytest.raises(InvalidParameterError, match="padding_mode='circular'"):
        conv(torch.zeros(1, 1, 4, 4))
    with pytest.raises(InvalidParameterError, match=r"model=\[\]: expected a torch.nn.Module"):
        SynOpCounter([])
