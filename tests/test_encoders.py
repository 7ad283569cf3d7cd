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
