"""snnlib.encoders: rate coding of images and signals."""

import pytest
import torch

from snnlib import Img2SpikeLayer, InputShapeError, InvalidParameterError, Sig2SpikeLayer


def test_img2spike_rate_follows_pixel_value_and_max_rate():
    layer = Img2SpikeLayer((1, 2, 2), tw=4000, max_rate=500, seed=0)
    image = torch.tensor([[[0.0, 255.0], [127.5, 255.0]]])
    spikes = layer(image)
    assert spikes.shape == (4000, 1, 2, 2)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rates = spikes.mean(0).flatten()  # expected per-step probabilities 0, 0.5, 0.25, 0.5
    assert rates[0] == 0
    torch.testing.assert_close(rates[1:], torch.tensor([0.5, 0.25, 0.5]), atol=0.03, rtol=0)


def test_img2spike_is_seedable_and_handles_negative_and_squeeze():
    image = torch.full((1, 1, 3, 3), -127.5)
    kept = Img2SpikeLayer((1, 3, 3), tw=20, squeeze=False, seed=5)(image)
    assert kept.shape == (20, 1, 1, 3, 3)  # any image shape is encoded, as in sinabs v0.2
    silent = Img2SpikeLayer((3, 3), tw=20, squeeze=True, seed=5)(image)
    assert silent.shape == (20, 3, 3) and silent.abs().sum() == 0  # negative pixels are silent by default
    negative = Img2SpikeLayer((3, 3), tw=20, squeeze=True, negative_spikes=True, seed=5)(image)
    assert negative.min() == -1 and negative.max() == 0
    again = Img2SpikeLayer((3, 3), tw=20, squeeze=True, negative_spikes=True, seed=5)(image)
    assert torch.equal(negative, again)


def test_sig2spike_upsamples_channels_by_time_signals():
    signal = torch.tensor([[0.0, 1.0], [2.0, 0.5]])  # (channels, T)
    layer = Sig2SpikeLayer(2, tw=3, norm_level=2, spk_out=False)
    assert layer.get_output_shape((2, 2)) == (6, 2)
    assert layer(signal).tolist() == [[0.0, 2.0]] * 3 + [[1.0, 0.5]] * 3  # not scaled by norm_level
    spikes = Sig2SpikeLayer(2, tw=2000, norm_level=2, seed=1)(signal)
    assert spikes.shape == (4000, 2)
    assert spikes[:2000, 1].mean() == 1.0 and spikes[:2000, 0].sum() == 0
    torch.testing.assert_close(spikes[2000:].mean(0), torch.tensor([0.5, 0.25]), atol=0.04, rtol=0)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Img2SpikeLayer((1, 0, 3)), r"image_shape=\(1, 0, 3\)"),
        (lambda: Img2SpikeLayer((1, 3, 3), tw=0), r"tw=0"),
        (lambda: Img2SpikeLayer((1, 3, 3), max_rate=-5), r"max_rate=-5: expected a positive number"),
        (lambda: Img2SpikeLayer((1, 3, 3), norm=0), r"norm=0"),
        (lambda: Sig2SpikeLayer(0), r"channels_in=0"),
        (lambda: Sig2SpikeLayer(2, norm_level=0), r"norm_level=0"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(InvalidParameterError, match=match):
        make()


def test_bad_signal_shape():
    with pytest.raises(InputShapeError, match=r"signal: got shape \(5, 3\); expected \(2, T\)$"):
        Sig2SpikeLayer(2)(torch.zeros(5, 3))
    with pytest.raises(InputShapeError, match=r"got shape \(5, 2\); expected \(2, T\) \(a \(T, channels\) signal: transpose it\)"):
        Sig2SpikeLayer(2)(torch.zeros(5, 2))


def test_img2spike_defaults_are_100_steps_1000_hz_at_255_positive_only_unsqueezed():
    image = (torch.rand((1, 30, 40), generator=torch.Generator().manual_seed(0)) * 510 - 255).round()
    default = Img2SpikeLayer((1, 30, 40), seed=3)
    explicit = Img2SpikeLayer((1, 30, 40), tw=100, max_rate=1000, norm=255.0, squeeze=False,
                              negative_spikes=False, seed=3)
    assert default.layer_name == "img2spike" and Img2SpikeLayer(5).image_shape == (5,)
    assert torch.equal(default(image), explicit(image)) and default(image).shape == (100, 1, 30, 40)


def test_img2spike_negative_pixels_spike_minus_one_where_their_magnitude_spikes():
    image = torch.rand((2, 30, 30), generator=torch.Generator().manual_seed(1)) * 255
    image[0, 0, :5] = 0.0
    positive = Img2SpikeLayer((2, 30, 30), tw=50, seed=7)(image)
    assert set(positive.unique().tolist()) == {0.0, 1.0} and not positive[:, 0, 0, :5].any()
    assert torch.equal(Img2SpikeLayer((2, 30, 30), tw=50, negative_spikes=True, seed=7)(image), positive)
    negative = Img2SpikeLayer((2, 30, 30), tw=50, negative_spikes=True, seed=7)(-image)
    assert torch.equal(negative, -positive)
    assert not Img2SpikeLayer((2, 30, 30), tw=50, seed=7)(-image).any()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float16, torch.bfloat16])
def test_img2spike_draws_as_for_float32_for_integer_and_half_images(dtype):
    image = torch.randint(0, 256, (1, 20, 20), generator=torch.Generator().manual_seed(2))
    expected = Img2SpikeLayer((1, 20, 20), tw=30, norm=256.0, seed=4)(image.float())  # rates exact in every dtype
    got = Img2SpikeLayer((1, 20, 20), tw=30, norm=256.0, seed=4)(image.to(dtype))
    assert got.dtype == (torch.float32 if not dtype.is_floating_point else dtype)
    assert torch.equal(got.float(), expected) and 0 < expected.mean() < 1


def test_encoders_draw_float64_data_in_float64():
    image = torch.rand((1, 20, 20), generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 255
    draws = torch.rand((30, 1, 20, 20), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = Img2SpikeLayer((1, 20, 20), tw=30, max_rate=400, seed=4)(image)
    assert got.dtype == torch.float64 and torch.equal(got, (draws < image / 255 * 0.4).double())
    signal = torch.rand((3, 40), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    draws = torch.rand((40, 3), generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    got = Sig2SpikeLayer(3, seed=6)(signal)
    assert got.dtype == torch.float64 and torch.equal(got, (draws < signal.t()).double())


def test_sig2spike_defaults_are_one_step_per_sample_norm_1_spikes_out_and_ints_read_as_floats():
    signal = torch.randint(-1, 3, (1, 500), generator=torch.Generator().manual_seed(3))
    default = Sig2SpikeLayer(1, seed=8)
    assert default.layer_name == "sig2spike" and default.get_output_shape((1, 500)) == (500, 1)
    expected = Sig2SpikeLayer(1, tw=1, norm_level=1, spk_out=True, seed=8)(signal.float())
    assert torch.equal(default(signal), expected) and expected.dtype == torch.float32
    assert torch.equal(expected.flatten(), (signal.flatten() >= 1).float())  # p = clip(sample, 0, 1): 0 or 1


def test_encoders_take_one_step_and_one_channel():
    assert Img2SpikeLayer((1, 1, 1), tw=1, seed=0)(torch.tensor([[[255.0]]])).tolist() == [[[[1.0]]]]
    assert Sig2SpikeLayer(1, tw=1, seed=0)(torch.tensor([[1.0, 0.0]])).tolist() == [[1.0], [0.0]]
