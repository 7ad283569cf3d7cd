"""The end-to-end demo: handwritten digits from a trained ANN to a bit-exact run on a device.

1. Train a small convolutional ANN on scikit-learn's 8x8 digits (no download) and convert it
   to a spiking network (ReLU -> SpikingLayer, weights normalised on the training set).
2. Encode every image as events: pixel value v (0..16) becomes v events spread evenly over
   16 bins of 1 ms, so intensity is a spike count the chip's integer neurons can sum exactly.
3. Map the spiking network to speck2f and print the fit report with the per-core memory table.
4. Start ``spikeflash emulate --pty`` as a separate process, open its pty like a board's serial
   port, flash the configuration, and run the whole test set on it (reset between samples).
5. Print accuracy on the device, in the event-exact simulation of the same configuration and
   in the time-stepped float SNN; check that the device's output events equal the simulated
   ones for every sample; save PNG plots (event raster, memory use, confusion matrix).

The prediction for a sample is the output neuron with the most spikes (a tie goes to the one
that spiked first). Everything is seeded and training runs on TRAIN_THREADS threads with
deterministic algorithms, so two runs print the same numbers on any machine (same torch).
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from backend.analysis.compare import compare
from backend.analysis.runner import predict, winner
from backend.devices import Device, open_device
from backend.emulator.processes import emulator_on_pty
from backend.files.plots import plot_confusion_matrix, plot_event_raster, plot_memory_use
from mapper import ChipConfig, map_model
from mapper.report import FitReport
from snnlib import SpikingLayer, SumPool2d, from_torch, raster_to_events, simulate

SEED = 0
N_BINS = 16  #: time bins per sample; also the largest pixel value of load_digits
BIN_US = 1000  #: width of one bin in µs
INPUT_SHAPE = (1, 8, 8)
N_CLASSES = 10


#: threads training uses, whatever the machine has: results do not depend on the core count
TRAIN_THREADS = 1


def run_demo(output_dir: str | Path = "demo_output", n_test: int | None = None) -> int:
    """Run the demo (see the module docstring), writing PNG plots to ``output_dir``.

    ``n_test``: run only the first ``n_test`` test samples (None: the whole test set of 450).
    Returns the exit status: 0 when the device matched the simulation bit for bit, else 3.
    """
    if n_test is not None and (isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1):
        raise ValueError(f"run_demo(n_test={n_test!r}): expected None (whole test set) or an int >= 1")
    output_dir = Path(output_dir)
    torch.manual_seed(SEED)
    x_train, y_train, x_test, y_test = load_digit_rasters()
    if n_test is not None:
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    print(f"digits: {len(x_train)} training and {len(x_test)} test images of 8x8, "
          f"each as events over {N_BINS} bins of {BIN_US} µs")

    rates = x_train.mean(1)  # (n, 1, 8, 8) spikes per bin, the ANN's input
    ann = train_ann(rates, y_train)
    # a ReLU after the logits becomes the output SpikingLayer
    spiking_output = nn.Sequential(OrderedDict([*ann.named_children(), ("relu3", nn.ReLU())]))
    snn = from_torch(spiking_output, threshold=1.0, threshold_low=None, sample_data=rates)
    truth = y_test.numpy()
    float_accuracy = float(np.mean(predict_time_stepped(snn, x_test) == truth))

    mapping = map_model(snn, INPUT_SHAPE, "speck2f")
    print(f"\nmapped to {mapping.config.chip}:\n{mapping.report}\n")
    input_core = mapping.input
    samples = [raster_to_events(raster, input_core, BIN_US) for raster in x_test.numpy()]

    network = mapping.config.to_network()
    simulated = [simulate(network, events).events for events in tqdm(samples, desc="event-exact simulation")]
    with emulator_on_pty() as url, open_device(url) as device:
        print(f"emulator started as a separate process on {url}; flashing")
        device.flash(mapping.config)
        received = run_on_device(device, samples)
        agreement = check_agreement(mapping.config, device, samples, simulated, received)

    device_pred = np.array([predict(ev, N_CLASSES) for ev in received])
    sim_pred = np.array([predict(ev, N_CLASSES) for ev in simulated])
    print(f"\naccuracy on {len(truth)} test digits")
    print(f"  device (emulator over the serial wire protocol): {100 * np.mean(device_pred == truth):6.2f} %")
    print(f"  event-exact simulation of the same config:       {100 * np.mean(sim_pred == truth):6.2f} %")
    print(f"  time-stepped float SNN:                          {100 * float_accuracy:6.2f} %")
    print(f"\nhardware vs simulation: {agreement}")

    plots = save_plots(output_dir, samples[0], received[0], mapping.report, truth, device_pred)
    print("\nplots:")
    for path in plots:
        print(f"  {path}")
    return 0 if agreement.bit_exact else 3


def load_digit_rasters(test_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits as event-count rasters ``(n, N_BINS, 1, 8, 8)`` (0/1 per bin) and labels
    ``(n,)``, split into train and test with a fixed seed, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.int64)  # (n, 8, 8), values 0..16
    rasters = rate_code(images)[:, :, None]
    x_train, x_test, y_train, y_test = train_test_split(
        rasters, digits.target, test_size=test_fraction, random_state=SEED, stratify=digits.target)
    return (torch.from_numpy(x_train).float(), torch.from_numpy(y_train),
            torch.from_numpy(x_test).float(), torch.from_numpy(y_test))


def rate_code(images: np.ndarray) -> np.ndarray:
    """Pixel value v in 0..N_BINS -> v spikes spread evenly over N_BINS bins: bin i holds a
    spike when floor((i+1) v / N_BINS) > floor(i v / N_BINS). ``(n, h, w)`` -> ``(n, N_BINS, h, w)``."""
    if images.min() < 0 or images.max() > N_BINS:
        raise ValueError(f"images: values {images.min()}..{images.max()}; expected 0..{N_BINS}")
    edges = np.arange(N_BINS + 1)[None, :, None, None] * images[:, None] // N_BINS
    return np.diff(edges, axis=1).astype(np.uint8)


def build_ann() -> nn.Sequential:
    """conv 8 -> pool -> conv 16 -> pool -> linear 10, no biases (the chip's biases need the
    slow clock), so every layer maps to one core."""
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1, bias=False)), ("relu1", nn.ReLU()), ("pool1", SumPool2d(2)),
        ("conv2", nn.Conv2d(8, 16, 3, padding=1, bias=False)), ("relu2", nn.ReLU()), ("pool2", SumPool2d(2)),
        ("flatten", nn.Flatten()), ("fc", nn.Linear(64, N_CLASSES, bias=False)),
    ]))


def train_ann(rates: torch.Tensor, labels: torch.Tensor, epochs: int = 20) -> nn.Sequential:
    """Train :func:`build_ann` on ``rates`` ``(n, 1, 8, 8)`` (spikes per bin, 0..1) with Adam
    and cross-entropy on its outputs (logits)."""
    model = build_ann()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with deterministic_torch():
        for _ in tqdm(range(epochs), desc="training the ANN"):
            for batch in torch.randperm(len(rates)).split(64):
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(rates[batch]), labels[batch]).backward()
                optimizer.step()
    return model.eval()


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """Inside the block torch runs on TRAIN_THREADS threads with deterministic algorithms
    (float sums in one order on every machine); both settings are restored afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def predict_time_stepped(snn: nn.Module, rasters: torch.Tensor) -> np.ndarray:
    """Predictions of the time-stepped float SNN for ``rasters`` ``(n, T, 1, 8, 8)``."""
    out = []
    with torch.no_grad():
        for raster in rasters:
            for layer in snn.modules():
                if isinstance(layer, SpikingLayer):
                    layer.reset_states()
            counts = snn(raster).reshape(len(raster), N_CLASSES)  # (T, classes)
            out.append(winner(counts.sum(0).numpy(), first_step(counts.numpy())))
    return np.array(out)


def first_step(counts: np.ndarray) -> np.ndarray:
    """The first time step each output neuron spiked in ``counts`` ``(T, classes)`` (never: the
    largest int64), for :func:`backend.analysis.runner.winner`'s tie-break."""
    fired = counts > 0
    return np.where(fired.any(0), fired.argmax(0), np.iinfo(np.int64).max)


def run_on_device(device: Device, samples: list[np.ndarray]) -> list[np.ndarray]:
    """Each sample's output events from ``device``, with a reset before every sample."""
    received = []
    for events in tqdm(samples, desc="running the test set on the device"):
        device.reset()
        received.append(device.run(events).events)
    return received


@dataclass
class Agreement:
    """Device versus simulation over a test set: ``bit_exact`` when every sample's output
    events are equal; ``n_events`` events on ``n_layers`` monitored layers compared;
    ``divergence``: the :func:`backend.analysis.compare.compare` report of the first differing sample."""

    bit_exact: bool
    n_samples: int
    n_events: int
    n_layers: int
    first_bad_sample: int | None = None
    divergence: str = ""

    def __str__(self) -> str:
        if self.bit_exact:
            return (f"BIT-EXACT: all {self.n_events} output events on {self.n_layers} monitored "
                    f"layer(s) of {self.n_samples} samples agree")
        return f"DIVERGED on sample {self.first_bad_sample} of {self.n_samples}:\n{self.divergence}"


def check_agreement(config: ChipConfig, device: Device, samples: list[np.ndarray],
                    simulated: list[np.ndarray], received: list[np.ndarray]) -> Agreement:
    """Compare per sample; the first sample whose events differ is re-run through
    :func:`backend.analysis.compare.compare`, which names the layer, neuron and time that diverged."""
    n_layers = len(config.monitored_layer_names())
    for index, (expected, got) in enumerate(zip(simulated, received)):
        if not np.array_equal(expected, got):
            report = compare(config, device, samples[index], flash=False)
            if not report.bit_exact:
                return Agreement(False, len(samples), 0, n_layers, index, str(report))
    return Agreement(True, len(samples), sum(len(e) for e in simulated), n_layers)


def save_plots(output_dir: Path, sample_in: np.ndarray, sample_out: np.ndarray, report: FitReport,
               truth: np.ndarray, predicted: np.ndarray) -> list[Path]:
    """The event raster of one sample in and out, the per-core memory use and the confusion
    matrix of the device's predictions, as PNG files in ``output_dir``."""
    memory_rows = [{"core": u.core, "layer": u.layer,
                    "kernel_used": u.need.kernel, "kernel_available": u.have.kernel_words,
                    "neuron_used": u.need.neuron, "neuron_available": u.have.neuron_words,
                    "bias_used": u.need.bias, "bias_available": u.have.bias_words}
                   for u in report.memory]
    return [
        plot_event_raster(output_dir / "raster_sample0.png", sample_in, sample_out,
                          title=f"Test digit 0 (label {truth[0]}): input and device output"),
        plot_memory_use(output_dir / "memory_per_core.png", memory_rows, title="speck2f memory use per core"),
        plot_confusion_matrix(output_dir / "confusion_device.png", truth, predicted,
                              class_names=[str(i) for i in range(N_CLASSES)],
                              title="Digits on the device"),
    ]
