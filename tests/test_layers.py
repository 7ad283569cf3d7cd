"""snnlib.layers: the seed's spiking layers, their defaults, state handling and errors."""

import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import snnlib
from snnlib import (
    Cropping2dLayer,
    InputLayer,
    InputShapeError,
    InvalidParameterError,
    SpikingLayer,
    SpikingMaxPooling2dLayer,
)

SEED_SIGNATURES = {
    "SpikingLayer": dict(threshold=1.0, threshold_low=-1.0, membrane_subtract=None, batch_size=None, membrane_reset=False),
    "Cropping2dLayer": dict(cropping=((0, 0), (0, 0))),
    "SpikingMaxPooling2dLayer": dict(pool_size=inspect.Parameter.empty, strides=None, padding=(0, 0, 0, 0)),
    "InputLayer": dict(input_shape=inspect.Parameter.empty, layer_name="input"),
    "Img2SpikeLayer": dict(image_shape=inspect.Parameter.empty, tw=100, max_rate=1000, norm=255.0, squeeze=False,
                           negative_spikes=False),
    "Sig2SpikeLayer": dict(channels_in=inspect.Parameter.empty, tw=1, norm_level=1, spk_out=True),
    "NeuromorphicReLU": dict(quantize=True, fanout=1, stochastic_rounding=False),
    "QuantizeLayer": dict(quantize=True),
    "SumPool2d": dict(kernel_size=inspect.Parameter.empty, stride=None, ceil_mode=False),
    "threshold_subtract": dict(data=inspect.Parameter.empty, threshold=1, window=0.5),
    "threshold_reset": dict(data=inspect.Parameter.empty, threshold=1, window=0.5),
    "quantize": dict(x=inspect.Parameter.empty),
    "stochastic_rounding": dict(x=inspect.Parameter.empty),
}


@pytest.mark.parametrize("name", sorted(SEED_SIGNATURES))
def test_every_seed_name_is_importable_with_the_seed_defaults(name):
    params = inspect.signature(getattr(snnlib, name)).parameters
    positional = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == list(SEED_SIGNATURES[name])
    assert {p.name: p.default for p in positional} == SEED_SIGNATURES[name]


def test_seed_keyword_options_and_contract_attributes():
    layer = SpikingLayer(negative_spikes=True, layer_name="l1")
    assert (layer.negative_spikes, layer.layer_name) == (True, "l1")
    layer = SpikingLayer(threshold=3.0)
    assert layer.membrane_subtract == 3.0  # resolved from None
    assert (layer.threshold, layer.threshold_low, layer.membrane_reset, layer.batch_size) == (3.0, -1.0, False, None)
    assert SpikingLayer(threshold_low=None).threshold_low is None
    assert isinstance(layer, torch.nn.Module) and isinstance(layer.state, torch.Tensor)
    assert layer.get_output_shape((2, 5, 5)) == (2, 5, 5)


def test_forward_counts_multi_spikes_and_state_persists_until_reset():
    layer = SpikingLayer(threshold=2.0)
    out = layer(torch.tensor([[5.0], [1.0], [0.0]]))
    assert out.flatten().tolist() == [2.0, 1.0, 0.0]  # 5 -> 2 spikes, v 1; +1 -> 2 -> 1 spike
    assert layer.state.tolist() == [0.0] and layer.activations.tolist() == [0.0]
    layer(torch.tensor([[3.0]]))
    assert layer.state.tolist() == [3.0] and layer.activations.tolist() == [1.0]  # the spike leaves next call
    assert layer(torch.tensor([[0.0]])).tolist() == [[0.0]] and layer.state.tolist() == [1.0]
    layer.reset_states()
    assert layer.state.tolist() == [0.0] and layer.activations.tolist() == [0.0]
    layer.reset_states(shape=(3, 4), randomize=True)
    assert layer.state.shape == layer.activations.shape == (3, 4)
    assert layer.state.min() >= 0.0 and layer.state.max() < 1.0 and layer.activations.abs().sum() == 0


def test_membrane_reset_and_threshold_low():
    layer = SpikingLayer(threshold=2.0, threshold_low=-3.0, membrane_reset=True)
    assert layer(torch.tensor([[5.0], [-10.0], [5.0]])).flatten().tolist() == [1.0, 0.0, 1.0]  # -10 clamps at -3, then -3 + 5 = 2 fires
    assert layer.state.tolist() == [2.0] and layer.activations.tolist() == [1.0]  # the reset is pending
    assert layer(torch.tensor([[1.5]])).tolist() == [[0.0]] and layer.state.tolist() == [1.5]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), splits=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       saturate=st.booleans())
def test_t_steps_in_one_call_equal_several_calls(seed, splits, saturate):
    generator = torch.Generator().manual_seed(seed)
    steps = sum(splits)
    x = torch.randint(-30000, 30000, (steps, 2, 3, 3), generator=generator).float()
    whole = SpikingLayer(threshold=7.0, threshold_low=-20.0, membrane_subtract=5.0, saturate_int16=saturate)
    parts = SpikingLayer(threshold=7.0, threshold_low=-20.0, membrane_subtract=5.0, saturate_int16=saturate)
    expected = whole(x)
    got = torch.cat([parts(chunk) for chunk in torch.split(x, splits)])
    assert torch.equal(got, expected)
    assert torch.equal(parts.state, whole.state) and torch.equal(parts.activations, whole.activations)
    assert torch.equal(expected, expected.round())


def test_batch_major_rows_match_separate_samples():
    torch.manual_seed(0)
    x = torch.randint(0, 4, (3 * 5, 2, 4)).float()  # B=3, T=5
    batched = SpikingLayer(threshold=3.0, batch_size=3)
    out = batched(x)
    assert batched.state.shape == (3, 2, 4)
    for b in range(3):
        assert torch.equal(out[b * 5:(b + 1) * 5], SpikingLayer(threshold=3.0)(x[b * 5:(b + 1) * 5]))


def test_saturate_int16_clips_membrane():
    layer = SpikingLayer(threshold=32767.0, threshold_low=None, saturate_int16=True)
    layer(torch.full((3, 1), -30000.0))
    assert layer.state.tolist() == [-32768.0]
    layer(torch.full((2, 1), 30000.0))
    assert layer.state.tolist() == [27232.0]  # -32768 + 30000 + 30000: no spike yet
    unbounded = SpikingLayer(threshold=32767.0, threshold_low=None)
    unbounded(torch.full((3, 1), -30000.0))
    assert unbounded.state.tolist() == [-90000.0]


class ConvSpiking(SpikingLayer):
    """A subclass whose synaptic output is a convolution (the documented override hook)."""

    def __init__(self):
        super().__init__(threshold=1.0, batch_size=2)
        self.conv = torch.nn.Conv2d(1, 3, 3, padding=1)

    def synaptic_output(self, input_spikes):
        return self.conv(input_spikes)


def test_gradients_flow_to_inputs_and_weights_through_conv_and_spiking_layers():
    torch.manual_seed(0)
    x = (torch.rand(2 * 6, 1, 5, 5) < 0.5).float().requires_grad_()  # B=2, T=6
    model = torch.nn.Sequential(ConvSpiking(), torch.nn.Conv2d(3, 2, 3, padding=1), SpikingLayer(batch_size=2))
    out = model(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for conv in (model[0].conv, model[1]):
        assert conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SpikingLayer(threshold=0), r"threshold=0: expected a positive number"),
        (lambda: SpikingLayer(threshold=1.0, threshold_low=2.0), r"threshold_low=2.0: expected None or a number below threshold=1.0"),
        (lambda: SpikingLayer(batch_size=0), r"batch_size=0: expected None or a positive int"),
        (lambda: Cropping2dLayer(((1, 2), 3)), r"cropping=\(\(1, 2\), 3\): expected \(\(top, bottom\), \(left, right\)\)"),
        (lambda: Cropping2dLayer(((1, -2), (0, 0))), r"cropping=\(1, -2, 0, 0\)"),
        (lambda: SpikingMaxPooling2dLayer(0), r"pool_size=0: expected an int or 2 ints, each >= 1"),
        (lambda: InputLayer((2, 3)), r"input_shape=\(2, 3\): expected an int or 3 ints"),
    ],
)
def test_bad_parameters_raise_specific_errors(make, match):
    with pytest.raises(InvalidParameterError, match=match):
        make()


def test_bad_input_shapes_raise_specific_errors():
    with pytest.raises(InputShapeError, match=r"7 rows do not split into batch_size=2"):
        SpikingLayer(batch_size=2)(torch.zeros(7, 3))
    with pytest.raises(InputShapeError, match=r"input: got shape \(4, 2, 5\); expected \(T, 1, 5, 5\)"):
        InputLayer((1, 5, 5))(torch.zeros(4, 2, 5))
    with pytest.raises(InputShapeError, match=r"expected \(T, channels, height, width\)"):
        Cropping2dLayer()(torch.zeros(3, 4))
    layer = SpikingLayer()
    layer.threshold = -1.0
    with pytest.raises(InvalidParameterError, match="threshold=-1.0"):
        layer(torch.zeros(2, 2))


def test_cropping_and_input_layer():
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    crop = Cropping2dLayer(((1, 2), (0, 3)))
    assert crop.get_output_shape((1, 5, 6)) == (1, 2, 3)
    assert torch.equal(crop(x), x[:, :, 1:3, 0:3])
    assert torch.equal(Cropping2dLayer()(x), x)
    layer = InputLayer((1, 5, 6))
    assert layer(x) is x and layer.get_output_shape((1, 5, 6)) == (1, 5, 6) and layer.layer_name == "input"


def reference_spiking_max_pool(x, pool, stride):
    """Loop over steps and windows: the window's largest input at t passes if a neuron with the
    highest count so far spikes at t (sinabs v0.2's rule, written out)."""
    steps, channels, height, width = x.shape
    out_h, out_w = (height - pool) // stride + 1, (width - pool) // stride + 1
    counts = np.zeros(x.shape[1:])
    out = np.zeros((steps, channels, out_h, out_w))
    for t in range(steps):
        counts += x[t]
        for c in range(channels):
            for i in range(out_h):
                for j in range(out_w):
                    rows, cols = slice(i * stride, i * stride + pool), slice(j * stride, j * stride + pool)
                    window, now = counts[c, rows, cols], x[t, c, rows, cols]
                    if (now[window == window.max()] > 0).any():
                        out[t, c, i, j] = now.max()
    return out


def test_spiking_max_pooling_passes_the_most_active_inputs_spikes():
    rng = np.random.default_rng(0)
    x = (rng.random((12, 2, 6, 6)) < 0.3).astype(np.float32) * rng.integers(1, 3, (12, 2, 6, 6))
    expected = reference_spiking_max_pool(x, 2, 2)
    layer = SpikingMaxPooling2dLayer((2, 2))
    assert layer.get_output_shape((2, 6, 6)) == (2, 3, 3)
    np.testing.assert_array_equal(layer(torch.from_numpy(x)).numpy(), expected)
    np.testing.assert_array_equal(layer(torch.from_numpy(x[5:])).numpy(), reference_spiking_max_pool(x[5:], 2, 2))
    streaming = SpikingMaxPooling2dLayer((2, 2), carry_counts=True)
    chunks = [streaming(torch.from_numpy(part)) for part in (x[:5], x[5:9], x[9:])]
    np.testing.assert_array_equal(torch.cat(chunks).numpy(), expected)  # counts carried across calls
    streaming.reset_states()
    np.testing.assert_array_equal(streaming(torch.from_numpy(x[5:])).numpy(), reference_spiking_max_pool(x[5:], 2, 2))


def test_spiking_max_pooling_padding_and_strides():
    layer = SpikingMaxPooling2dLayer(3, strides=(1, 2), padding=(1, 1, 0, 2))
    assert layer.get_output_shape((4, 5, 6)) == (4, 5, 3)
    assert layer(torch.ones(2, 4, 5, 6)).shape == (2, 4, 5, 3)


def test_auxiliary_layers_are_differentiable():
    x = torch.randn(2, 1, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Cropping2dLayer(((1, 0), (2, 1))), (x,))


def test_threshold_as_float_tensor_or_parameter_gives_the_same_spikes():
    torch.manual_seed(6)
    x = torch.randint(-2, 5, (2 * 7, 3, 4)).float() / 2
    results = []
    for threshold in (1.5, torch.tensor(1.5), torch.nn.Parameter(torch.tensor(1.5)),
                      torch.nn.Parameter(torch.full((3,), 1.5))):
        layer = SpikingLayer(threshold=threshold, num_timesteps=7)
        inputs = x.clone().requires_grad_()
        out = layer(inputs)
        (out * torch.arange(out.numel()).reshape(out.shape)).sum().backward()
        grad = threshold.grad if isinstance(threshold, torch.nn.Parameter) else None
        results.append((out, inputs.grad, layer.state, layer.activations, grad))
    for other in results[1:]:
        for a, b in zip(results[0][:4], other[:4]):
            assert torch.equal(a, b)
    scalar_grad, channel_grads = results[2][4], results[3][4]
    assert scalar_grad.shape == () and channel_grads.shape == (3,) and scalar_grad < 0
    torch.testing.assert_close(channel_grads.sum(), scalar_grad)
    layer = SpikingLayer(threshold=torch.nn.Parameter(torch.tensor(2.0)))
    assert [name for name, _ in layer.named_parameters()] == ["threshold"]
    assert layer.membrane_subtract is layer.threshold  # None given: follows the trained threshold


def test_per_channel_thresholds_equal_one_layer_per_channel():
    # two calls, so that the spikes pending between them leave with each channel's threshold
    torch.manual_seed(7)
    x = torch.randint(-3, 9, (12, 3, 2, 2)).float() / 4
    weights = torch.randn(x.shape)
    thresholds = torch.nn.Parameter(torch.tensor([1.0, 2.0, 1.0]))
    layer = SpikingLayer(threshold=thresholds, surrogate="triangle")
    inputs = x.clone().requires_grad_()
    out = torch.cat([layer(inputs[:5]), layer(inputs[5:])])
    (out * weights).sum().backward()
    for channel in range(3):
        threshold = torch.nn.Parameter(thresholds.detach()[channel].clone())
        single = SpikingLayer(threshold=threshold, surrogate="triangle")
        part = x[:, channel:channel + 1].clone().requires_grad_()
        expected = torch.cat([single(part[:5]), single(part[5:])])
        (expected * weights[:, channel:channel + 1]).sum().backward()
        assert torch.equal(out[:, channel:channel + 1], expected)
        assert torch.equal(layer.state[channel:channel + 1], single.state)
        assert torch.equal(layer.activations[channel:channel + 1], single.activations)
        torch.testing.assert_close(inputs.grad[:, channel:channel + 1], part.grad)
        torch.testing.assert_close(thresholds.grad[channel], threshold.grad)
    assert out[:, 1].sum() < out[:, 0].sum()


def test_a_trained_threshold_moves_spike_counts_towards_a_target():
    torch.manual_seed(8)
    x = torch.rand(40, 16) * 1.2
    threshold = torch.nn.Parameter(torch.tensor(0.5))
    layer = SpikingLayer(threshold=threshold)
    optimizer = torch.optim.SGD([threshold], lr=0.002)
    losses = []
    for _ in range(15):
        layer.reset_states()
        loss = (layer(x).sum() - 200.0) ** 2 / 1e4  # about 900 spikes at 0.5: far too many
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert threshold.item() > 0.5 and losses[-1] < 0.1 * losses[0]


def test_num_timesteps_takes_any_batch_size():
    torch.manual_seed(9)
    layer = SpikingLayer(threshold=2.0, num_timesteps=5)
    for batch in (3, 2, 1):
        x = torch.randint(0, 4, (batch * 5, 2, 3)).float()
        assert torch.equal(layer(x), SpikingLayer(threshold=2.0, batch_size=batch)(x))
        assert layer.state.shape == (batch, 2, 3)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: SpikingLayer(batch_size=2, num_timesteps=5), InvalidParameterError, r"give one of them"),
        (lambda: SpikingLayer(num_timesteps=0), InvalidParameterError, r"num_timesteps=0: expected None or a positive int"),
        (lambda: SpikingLayer(threshold=torch.tensor([1.0, -1.0])), InvalidParameterError, r"threshold=-1.0"),
        (lambda: SpikingLayer(threshold=torch.ones(2, 2)), InvalidParameterError, r"shape \(2, 2\)"),
        (lambda: SpikingLayer(num_timesteps=4)(torch.zeros(7, 3)), InputShapeError, r"7 rows do not split into num_timesteps=4"),
        (lambda: SpikingLayer(threshold=torch.ones(3))(torch.zeros(4, 2, 5)), InputShapeError,
         r"neuron shape \(2, 5\); expected 3 channels"),
        (lambda: SpikingLayer(threshold=torch.ones(3)).neuron_parameters(), InvalidParameterError, r"3 values"),
    ],
)
def test_threshold_and_time_step_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_state_dict_holds_parameters_not_the_running_state():
    """The membrane and pending spikes are run-time state, not saved with a model: a state_dict
    saved before any input loads into a layer that has run, and the other way round."""
    layer = SpikingLayer(threshold=torch.nn.Parameter(torch.tensor(1.0)))
    layer(torch.ones(4, 3))
    assert set(layer.state_dict()) == {"threshold"}
    SpikingLayer(threshold=torch.nn.Parameter(torch.tensor(2.0))).load_state_dict(layer.state_dict())


def test_cropping_may_leave_one_row_and_column_but_not_none():
    crop = Cropping2dLayer(((2, 1), (0, 3)))
    assert crop.get_output_shape((2, 4, 4)) == (2, 1, 1)
    assert crop(torch.ones(3, 2, 4, 4)).shape == (3, 2, 1, 1)
    for shape in [(2, 3, 4), (2, 4, 3)]:
        with pytest.raises(InputShapeError, match="leaves nothing"):
            crop.get_output_shape(shape)


def test_a_default_spiking_layer_has_the_default_neuron_and_keyword_options():
    layer = SpikingLayer()
    assert layer.neuron_parameters() == snnlib.IAFParameters(1.0, -1.0, None, False, False, False, "step", 1.0)
    assert (layer.negative_spikes, layer.saturate_int16, layer.layer_name, layer.num_timesteps) == (False, False, "spiking", None)
    out = layer(torch.tensor([[40000.5, -7.0, 0.5], [0.0, -7.0, 0.25]]))
    assert out.tolist() == [[40000.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # no saturation, no negative spikes
    assert layer.state.tolist() == [0.5, -1.0, 0.75] and layer.activations.tolist() == [0.0, 0.0, 0.0]


def test_batch_size_and_num_timesteps_of_1_are_taken_and_bools_are_refused():
    x = torch.tensor([[0.6, 1.5], [0.6, 0.0]])
    expected = SpikingLayer()(x)
    assert torch.equal(SpikingLayer(batch_size=1)(x), expected) and torch.equal(SpikingLayer(num_timesteps=1)(x), x.floor())
    assert SpikingLayer(batch_size=1)(x).shape == (2, 2) and SpikingLayer(num_timesteps=2)(x).tolist() == expected.tolist()
    for kw in (dict(batch_size=True), dict(num_timesteps=True), dict(batch_size=0), dict(batch_size=2.0)):
        with pytest.raises(InvalidParameterError, match="expected None or a positive int"):
            SpikingLayer(**kw)


def test_one_time_step_runs_and_reset_states_takes_an_int_shape():
    layer = SpikingLayer(threshold=2.0)
    assert layer(torch.tensor([[4.5, 1.0]])).tolist() == [[2.0, 0.0]]
    assert layer.state.tolist() == [4.5, 1.0] and layer.activations.tolist() == [2.0, 0.0]
    layer.reset_states(5)
    assert layer.state.shape == (5,) and not layer.state.any() and layer.activations.shape == (5,)
    layer.reset_states((1, 3))
    assert layer.state.shape == (1, 3) and layer.activations.shape == (1, 3)
    with pytest.raises(InvalidParameterError, match=r"shape=\(0, 3\)"):
        layer.reset_states((0, 3))
    assert SpikingLayer()(torch.tensor([1.5, 0.5])).tolist() == [1.0, 1.0]  # (T,): one neuron
    for bad in (torch.tensor(1.0), torch.zeros(0, 3)):
        with pytest.raises(InputShapeError, match=r"expected \(T, ...\) with T >= 1"):
            SpikingLayer()(bad)


def test_spiking_max_pooling_takes_1x1_windows_and_refuses_a_window_too_wide_or_too_high():
    x = (torch.rand(4, 2, 3, 5, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    assert torch.equal(SpikingMaxPooling2dLayer(1, strides=1)(x), x)
    assert SpikingMaxPooling2dLayer((3, 5)).get_output_shape((2, 3, 5)) == (2, 1, 1)
    assert SpikingMaxPooling2dLayer(2).state_dict() == {} and SpikingLayer().state_dict() == {}
    for shape in [(2, 3, 4), (2, 2, 5)]:
        with pytest.raises(InputShapeError, match="smaller than pool_size"):
            SpikingMaxPooling2dLayer((3, 5)).get_output_shape(shape)
