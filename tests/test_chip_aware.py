"""mapper.chip_aware: inside the block each core computes with the integer weights, thresholds
and scale that map_model chooses; gradients pass straight through; on leaving, the float model
is back, trained."""

import numpy as np
import pytest
import torch
from torch import nn

from mapper import map_model
from mapper.chip_aware import chip_aware
from mapper.chip_in_the_loop import chip_in_the_loop
from snnlib import InvalidParameterError, SpikingLayer, SumPool2d, events_to_raster, raster_to_events, simulate


def model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), SpikingLayer(threshold=0.7, threshold_low=-0.3), SumPool2d(2),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 4, bias=False), SpikingLayer(threshold=1.3, threshold_low=None),
    )
    with torch.no_grad():
        net[0].weight.uniform_(-0.2, 0.6)
    return net


def test_cores_compute_with_the_mappers_integers_and_the_float_model_comes_back():
    net = model()
    floats = [p.detach().clone() for p in net.parameters()]
    cores = sorted(map_model(net, (1, 8, 8), "speck2f").config.cores.values(), key=lambda c: c.layer_names[0])
    x = (torch.rand(6, 1, 8, 8) < 0.4).float()
    with chip_aware(net):
        out = net(x)
        for layer, spiking, core in ((net[0], net[1], cores[0]), (net[4], net[5], cores[1])):
            weight = layer.weight.detach().numpy()
            assert np.array_equal(weight.reshape(core.weights.shape), core.weights)
            assert (spiking.threshold, spiking.threshold_low) == (core.threshold_high, core.threshold_low)
            assert not spiking.saturate_int16  # the chip never clips a bin's sum: see chip_aware
        out.sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(floats, net.parameters()))
    assert net[1].threshold == 0.7 and net[5].threshold_low is None and not net[1].saturate_int16
    assert net[0].weight.grad is not None and net[0].weight.grad.abs().sum() > 0


def test_a_layer_with_a_bias_is_refused():
    with pytest.raises(InvalidParameterError, match="bias"):
        with chip_aware(nn.Sequential(nn.Linear(2, 2), SpikingLayer())):
            pass


def test_a_conv_not_directly_followed_by_a_spiking_layer_stays_float():
    """A core layer is a Conv2d/Linear *directly* followed by a SpikingLayer (docs/mapping.md):
    a conv whose BatchNorm comes first, and a final Linear with no spiking layer, keep their
    float weights inside the block, while the first conv computes in chip units."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), SpikingLayer(threshold=0.7, threshold_low=-0.3),
        nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), SpikingLayer(threshold=1.0),
        nn.Flatten(), nn.Linear(3 * 8 * 8, 4, bias=False),
    ).eval()
    floats = {name: p.detach().clone() for name, p in net.named_parameters()}
    with chip_aware(net):
        net((torch.rand(6, 1, 8, 8) < 0.4).float()).sum().backward()
        chip_units = net[0].weight.detach()
        assert torch.equal(chip_units, chip_units.round()) and chip_units.abs().max() > 100  # int8 grid
        assert torch.equal(net[2].weight, floats["2.weight"]) and torch.equal(net[6].weight, floats["6.weight"])
        assert net[4].threshold == 1.0 and not net[4].saturate_int16
    assert all(torch.equal(p, floats[name]) for name, p in net.named_parameters())
    assert net[2].weight.grad is not None


def test_the_chip_aware_forward_spikes_as_the_mapped_chip_does_bin_by_bin():
    """Where the time-stepped and the event rules coincide (weights in [0, threshold],
    docs/chip-model.md), the fake-quantized forward gives the spike counts per bin of every core
    that the event-exact simulation of map_model's configuration gives: mapping adds nothing."""
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False), SpikingLayer(threshold=0.7), SumPool2d(2),
        nn.Flatten(), nn.Linear(3 * 4 * 4, 4, bias=False), SpikingLayer(threshold=1.3, threshold_low=None),
    )
    with torch.no_grad():
        net[0].weight.uniform_(0.0, 0.7)
        net[4].weight.uniform_(0.0, 0.4)
    raster = torch.randint(0, 3, (12, 1, 8, 8)).float()  # (T, C, H, W) counts, 1 ms bins
    mapping = map_model(net, (1, 8, 8), "speck2f", monitor="all")
    chip = simulate(mapping.config.to_network(), raster_to_events(raster, mapping.input, 1000)).events
    with torch.no_grad(), chip_aware(net):
        first = net[:2](raster)
        steps = [first, net[2:](first)]
    cores = sorted(mapping.config.cores.items(), key=lambda item: item[1].layer_names[0])
    for (cid, _), spikes in zip(cores, steps):
        shape = spikes.shape[1:] if spikes.ndim == 4 else (spikes.shape[1], 1, 1)
        counts = events_to_raster(chip, shape, 1000, n_steps=len(raster), layer=cid)
        assert spikes.sum() > 20
        assert np.array_equal(counts.reshape(spikes.shape), spikes.numpy())


def test_a_threshold_parameter_trains_through_the_chips_rounding():
    net = model()
    threshold = nn.Parameter(torch.tensor(0.7))
    net[1].threshold = threshold
    core = min(map_model(net, (1, 8, 8), "speck2f").config.cores.values(), key=lambda c: c.layer_names[0])
    with chip_aware(net):
        assert any(p is threshold for p in net.parameters())  # an optimizer made in the block trains it
        net((torch.rand(6, 1, 8, 8) < 0.4).float()).sum().backward()
        assert net[1].threshold.item() == core.threshold_high and net[1].membrane_subtract.item() == core.threshold_high
    assert net[1].threshold is threshold and threshold.grad is not None and threshold.grad != 0
    assert net[1].membrane_subtract is threshold


def test_per_channel_thresholds_are_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), SpikingLayer(threshold=torch.tensor([1.0, 2.0])))
    with pytest.raises(InvalidParameterError, match="one threshold per channel"):
        with chip_aware(net):
            pass


def timed_model():
    """model() on (B*T, 1, 8, 8) batch-major inputs of 6 bins, with weights of both signs and
    above the threshold, where the time-stepped layers differ from the chip."""
    net = model()
    for spiking in (net[1], net[5]):
        spiking.num_timesteps = 6
    with torch.no_grad():
        net[0].weight.uniform_(-0.5, 1.2)
        net[4].weight.uniform_(-0.6, 1.0)
    return net


def chip_rasters(net, rasters):
    """The event-exact simulation's counts ``(B, T, C, H, W)`` of both cores for rasters
    ``(B, T, 1, 8, 8)``, mapped independently of chip_in_the_loop."""
    mapping = map_model(net, (1, 8, 8), "speck2f", monitor="all")
    network = mapping.config.to_network()
    cores = sorted(mapping.config.cores.items(), key=lambda item: item[1].layer_names[0])
    out = [simulate(network, raster_to_events(raster, mapping.input, 1000)).events for raster in rasters]
    return [np.stack([events_to_raster(o, core.output_shape, 1000, n_steps=rasters.shape[1], layer=cid) for o in out])
            for cid, core in cores]


def test_chip_in_the_loop_forwards_the_chips_counts_bin_by_bin_and_trains_through_the_layers():
    """Each core's spiking layer outputs exactly the chip's counts per bin (the next layer gets
    them), where the time-stepped model differs; gradients reach every weight, finite."""
    net = timed_model()
    rasters = torch.randint(0, 4, (3, 6, 1, 8, 8)).float()
    expected = chip_rasters(net, rasters.numpy())
    with torch.no_grad():
        time_stepped = [net[:2](rasters.flatten(0, 1))]
        time_stepped.append(net[2:](time_stepped[0]))
    seen = []
    with chip_in_the_loop(net) as loop:  # hooks run in order: these see chip_in_the_loop's outputs
        hooks = [net[i].register_forward_hook(lambda _m, _i, out: seen.append(out)) for i in (1, 5)]
        out = net(rasters.flatten(0, 1))
        (out * torch.arange(1.0, 5.0)).sum().backward()
    for hook in hooks:
        hook.remove()
    for spikes, chip, ts in zip(seen, expected, time_stepped):
        assert chip.sum() > 20 and not np.array_equal(ts.numpy().reshape(chip.shape), chip)
        assert np.array_equal(spikes.detach().numpy().reshape(chip.shape), chip)
    assert np.array_equal(loop.last["5"], expected[1]) and torch.equal(out, seen[1])
    for weight in (net[0].weight, net[4].weight):
        assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0
    net[1].reset_states(), net[5].reset_states()
    assert torch.equal(net(rasters.flatten(0, 1)), time_stepped[1])  # hooks gone on leaving


def test_chip_in_the_loop_takes_each_samples_recorded_event_order():
    """A recording's own order within a bin reaches the chip: reversed events (same bins) give
    the simulation of the reversed events, and a recording that does not bin to its raster is
    refused."""
    net = timed_model()
    raster = torch.randint(0, 4, (1, 6, 1, 8, 8)).float()
    mapping = map_model(net, (1, 8, 8), "speck2f", monitor="all")
    events = raster_to_events(raster[0], mapping.input, 1000)
    events = events[np.lexsort((-np.arange(len(events)), events["t"]))]  # reversed within each bin
    (out_cid,) = [cid for cid, core in mapping.config.cores.items() if not core.destinations]
    expected = events_to_raster(simulate(mapping.config.to_network(), events).events, (4, 1, 1), 1000,
                                n_steps=6, layer=out_cid)
    assert not np.array_equal(expected, chip_rasters(net, raster.numpy())[1][0])  # the order matters
    with chip_in_the_loop(net) as loop:
        loop.recordings = [events]
        assert np.array_equal(net(raster.flatten(0, 1)).detach().numpy().reshape(expected.shape), expected)
        assert loop.recordings is None
        loop.recordings = [events[1:]]
        with pytest.raises(InvalidParameterError, match="differ from its sample's input raster"):
            net(raster.flatten(0, 1))
