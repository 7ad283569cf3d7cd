"""The DVS demo: shapes moving in front of a simulated event camera, from training to a
bit-exact run through the chip's DVS stage on a device.

1. Generate recordings on the spot (:mod:`backend.app.dvs_shapes`, no download): a square, a
   frame or a cross moving right, left, down or up in front of a 128x128 DVS sensor, 12 classes,
   ON/OFF events with absolute timestamps. The first ``n_train`` are the training set, the rest
   the test set.
2. Train a convolutional SNN (snnlib ``SpikingLayer``s, surrogate gradients) on the recordings
   binned into ``N_BINS`` time steps; its first layer, a 4x4 sum pooling of the sensor, runs in
   the chip's DVS stage, so training sees the pooled 32x32 frames.
3. Map it with the DVS stage (``map_model(..., dvs=True)``) and print the fit report.
4. Start ``spikeflash emulate --pty --sensor FILE --fast`` as a separate process, its sensor
   replaying the test recordings (DVS events, layer 13) one per stream; flash it over the pty
   as a board and stream each recording through the sensor (``Device.stream``), a reset before
   each.
5. Print accuracy on the device, in the event-exact simulation of the same configuration and in
   the time-stepped float SNN, whether every sample's output was bit-exact, and save plots:
   event frames of a test recording, per-layer firing rates, simulation vs device output of
   that recording, and the confusion matrix.

The prediction is the output neuron with the most spikes (a tie goes to the one that spiked
first). Everything is seeded and training runs on ``digits_demo.TRAIN_THREADS`` threads with
deterministic algorithms, so two runs print the same numbers (same torch).
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from backend.analysis.runner import default_output_layer, predict, winner
from backend.app.digits_demo import check_agreement, deterministic_torch, first_step
from backend.app.dvs_shapes import Recording, class_names, make_recordings
from backend.devices import Device, open_device
from backend.emulator.processes import emulator_on_pty
from backend.files.events import save_events, xytp_to_events
from backend.files.plots import plot_confusion_matrix, plot_divergence, plot_event_frames, plot_firing_rates
from mapper import map_model
from mapper.report import FitReport
from snnlib import (DVS_LAYER_ID, IntegerNetwork, SimulationResult, SpikingLayer, SumPool2d, events_to_raster,
                    simulate)

SEED = 0
SENSOR = (128, 128)  #: (height, width) of the DVS sensor, pixels
DVS_POOLING = 4  #: the DVS stage's sum pooling: 128x128 -> 32x32
N_BINS = 10  #: time steps per recording in training
DURATION_US = 100_000  #: length of one recording, µs
COUNT_SCALE = 0.5  #: training's logits are the output spike counts times this
#: the full demo: 80 training and 20 test recordings per class
FULL = {"n_train": 960, "n_test": 240, "epochs": 10}


def run_dvs_demo(output_dir: str | Path = "demo_output/dvs", n_train: int = FULL["n_train"],
                 n_test: int = FULL["n_test"], epochs: int = FULL["epochs"]) -> int:
    """Run the demo (see the module docstring), writing PNG plots to ``output_dir``.

    ``n_train`` / ``n_test``: recordings in the training and test sets (ints >= 1; multiples of
    12 keep the classes balanced); ``epochs``: passes over the training set.
    Returns the exit status: 0 when the device matched the simulation bit for bit, else 3.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("epochs", epochs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"run_dvs_demo({name}={value!r}): expected an int >= 1")
    output_dir = Path(output_dir)
    names = class_names()
    recordings = make_recordings(n_train + n_test, SEED, sensor_size=SENSOR, duration_us=DURATION_US)
    train, test = recordings[:n_train], recordings[n_train:]
    n_events = sum(len(r.events) for r in recordings)
    print(f"DVS shapes: {len(train)} training and {len(test)} test recordings of {DURATION_US // 1000} ms "
          f"on a {SENSOR[1]}x{SENSOR[0]} sensor, {len(names)} classes, {n_events / len(recordings):.0f} "
          f"events per recording on average; the first starts at t = {recordings[0].t0_us} µs")

    torch.manual_seed(SEED)
    x_train, y_train = pooled_frames(train), torch.tensor([r.label for r in train])
    model = train_snn(x_train, y_train, len(names), epochs)
    x_test, truth = pooled_frames(test), np.array([r.label for r in test])
    float_accuracy = float(np.mean(predict_time_stepped(model[1:], x_test) == truth))

    mapping = map_model(model, (2, *SENSOR), "speck2f", dvs=True)
    print(f"\nmapped to {mapping.config.chip} through the DVS stage:\n{mapping.report}\n")
    samples = [xytp_to_events(r.events) for r in test]  # DVS input events: layer 13, channel = polarity
    network = mapping.config.to_network()
    results = [simulate(network, events) for events in tqdm(samples, desc="event-exact simulation")]
    simulated = [result.events for result in results]
    with tempfile.TemporaryDirectory() as folder:
        playlist = save_events(Path(folder) / "test_recordings.npz",
                               {f"recording{i:04d}": events for i, events in enumerate(samples)})
        with emulator_on_pty(options=("--sensor", str(playlist), "--fast")) as url, open_device(url) as device:
            print(f"emulator started as a separate process on {url}, its sensor replaying the "
                  f"{len(samples)} test recordings; flashing")
            device.flash(mapping.config)
            received = stream_from_sensor(device, len(samples))
            agreement = check_agreement(mapping.config, device, samples, simulated, received)

    device_pred = np.array([predict(ev, len(names)) for ev in received])
    sim_pred = np.array([predict(ev, len(names)) for ev in simulated])
    print(f"\naccuracy on {len(truth)} test recordings ({len(names)} classes)")
    print(f"  device (emulator over the serial wire protocol): {100 * np.mean(device_pred == truth):6.2f} %")
    print(f"  event-exact simulation of the same config:       {100 * np.mean(sim_pred == truth):6.2f} %")
    print(f"  time-stepped float SNN:                          {100 * float_accuracy:6.2f} %")
    print(f"\nhardware vs simulation: {agreement}")

    rates = firing_rates(mapping.report, network, results)
    output_layer = default_output_layer(mapping.config)
    plots = [
        plot_event_frames(output_dir / "event_frames_sample0.png", samples[0], SENSOR, n_frames=5,
                          title=f"Test recording 0: {names[truth[0]]}"),
        plot_firing_rates(output_dir / "firing_rates.png", rates,
                          title=f"Mean firing rate per layer over {len(test)} test recordings"),
        plot_divergence(output_dir / "simulation_vs_device_sample0.png",
                        *_from(test[0].t0_us, simulated[0], received[0]), output_layer, title=f"Test recording 0 ({names[truth[0]]}, time from its start)"),
        plot_confusion_matrix(output_dir / "confusion_device.png", truth, device_pred,
                              class_names=names, title="DVS shapes on the device"),
    ]
    print("\nplots:")
    for path in plots:
        print(f"  {path}")
    return 0 if agreement.bit_exact else 3


def stream_from_sensor(device: Device, n: int) -> list[np.ndarray]:
    """The output events of ``n`` streams from ``device``'s sensor, which plays the next
    recording of its playlist in each (as fast as the chip takes them), a reset before each."""
    received = []
    for _ in tqdm(range(n), desc="streaming the test recordings through the sensor"):
        device.reset()
        with device.stream() as stream:
            received.append(stream.collect())
    return received


def pooled_frames(recordings: list[Recording]) -> torch.Tensor:
    """The recordings as event-count frames ``(n, N_BINS, 2, 32, 32)`` (channel = polarity),
    summed over DVS_POOLING x DVS_POOLING pixels as the DVS stage does."""
    h, w = SENSOR[0] // DVS_POOLING, SENSOR[1] // DVS_POOLING
    out = torch.zeros(len(recordings), N_BINS, 2, h, w)
    for i, recording in enumerate(recordings):
        raster = events_to_raster(xytp_to_events(recording.events), (2, *SENSOR),
                                  DURATION_US // N_BINS, t0_us=recording.t0_us, n_steps=N_BINS)
        raster = raster.reshape(N_BINS, 2, h, DVS_POOLING, w, DVS_POOLING).sum((3, 5))
        out[i] = torch.from_numpy(np.asarray(raster, dtype=np.float32))
    return out


def build_snn(n_classes: int) -> nn.Sequential:
    """DVS pooling -> conv 8 -> pool -> conv 16 -> pool -> conv 16 -> pool -> linear, each conv
    followed by a SpikingLayer over N_BINS steps; no biases (they need the slow clock)."""
    def spiking():
        return SpikingLayer(threshold=1.0, threshold_low=-1.0, num_timesteps=N_BINS)

    return nn.Sequential(OrderedDict([
        ("dvs_pool", SumPool2d(DVS_POOLING)),
        ("conv1", nn.Conv2d(2, 8, 3, padding=1, bias=False)), ("spk1", spiking()), ("pool1", SumPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1, bias=False)), ("spk2", spiking()), ("pool2", SumPool2d(2)),
        ("conv3", nn.Conv2d(16, 16, 3, padding=1, bias=False)), ("spk3", spiking()), ("pool3", SumPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(16 * 4 * 4, n_classes, bias=False)), ("spk4", spiking()),
    ]))


def spike_counts(body: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Output spike counts ``(B, classes)`` of ``body`` (the model after the DVS pooling) for
    pooled frames ``(B, N_BINS, 2, 32, 32)``, from fresh membranes."""
    for layer in body.modules():
        if isinstance(layer, SpikingLayer):
            layer.reset_states()
    return body(frames.flatten(0, 1)).reshape(len(frames), N_BINS, -1).sum(1)


def train_snn(frames: torch.Tensor, labels: torch.Tensor, n_classes: int, epochs: int) -> nn.Sequential:
    """Train :func:`build_snn` on pooled ``frames`` with Adam and cross-entropy on the output
    spike counts (surrogate gradients through the SpikingLayers)."""
    model = build_snn(n_classes)
    body = model[1:]  # the DVS pooling is done: frames are pooled
    optimizer = torch.optim.Adam(model.parameters(), lr=0.003)
    with deterministic_torch():
        for _ in tqdm(range(epochs), desc="training the SNN"):
            for batch in torch.randperm(len(frames)).split(32):
                optimizer.zero_grad()
                counts = spike_counts(body, frames[batch])
                nn.functional.cross_entropy(counts * COUNT_SCALE, labels[batch]).backward()
                optimizer.step()
    return model.eval()


def predict_time_stepped(body: nn.Module, frames: torch.Tensor) -> np.ndarray:
    """Predictions of the time-stepped float SNN ``body`` for pooled ``frames``."""
    out = []
    with torch.no_grad():
        for batch in frames.split(64):
            for layer in body.modules():
                if isinstance(layer, SpikingLayer):
                    layer.reset_states()
            steps = body(batch.flatten(0, 1)).reshape(len(batch), N_BINS, -1).numpy()
            out += [winner(counts.sum(0), first_step(counts)) for counts in steps]
    return np.array(out)


def firing_rates(report: FitReport, network: IntegerNetwork, results: list[SimulationResult]) -> dict[str, float]:
    """Mean firing rate (events per neuron per second) of every core in the simulation
    ``results`` of test recordings, by the layer's name in ``report``; first the DVS stage's
    input events per pixel."""
    seconds = len(results) * DURATION_US * 1e-6
    dvs_events = sum(r.counters[DVS_LAYER_ID]["events_in"] for r in results)
    rates = {"DVS input (per pixel)": dvs_events / (SENSOR[0] * SENSOR[1] * seconds)}
    name_of = {usage.core: usage.layer for usage in report.memory}
    for core, layer in sorted(network.layers.items()):
        neurons = int(np.prod(layer.output_shape))
        spikes = sum(r.counters[core]["spikes_out"] for r in results)
        rates[name_of.get(core, f"core {core}")] = spikes / (neurons * seconds)
    return rates


def _from(t0_us: int, *arrays: np.ndarray) -> list[np.ndarray]:
    """Copies of the event ``arrays`` with time counted from ``t0_us``."""
    shifted = [events.copy() for events in arrays]
    for events in shifted:
        events["t"] -= t0_us
    return shifted
