"""One worker's job in a dataset evaluation: run samples through the event-exact simulation
and/or one device, and turn each into a result record (a JSON-ready dict).

A :class:`RunnerSpec` is plain data (picklable, sent to worker processes and Ray); a
:class:`SampleRunner` built from it opens and flashes its device once and then runs any number
of samples. A device failure raises :class:`backend.errors.WorkerLost` (the scheduler gives the
sample to another worker); a sample the simulation or device refuses is a record with
``error`` set.

The prediction is the output neuron (channel of the output layer) that spiked most; a tie goes
to the one that spiked first, a silent output to class 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from backend.errors import DeviceError, WorkerLost
from snnlib.errors import SpikeflashError

if TYPE_CHECKING:
    from backend.analysis.datasets import Sample


@dataclass(frozen=True)
class RunnerSpec:
    """What a worker runs: ``config_json`` (``ChipConfig.to_json()``), the ``output_layer``
    (core id) whose spikes give the prediction, ``simulate`` (run the event-exact simulation),
    ``device`` (a device URL, or None), ``timeout`` (seconds per device run, None: automatic)."""

    config_json: str
    output_layer: int
    simulate: bool = True
    device: Optional[str] = None
    timeout: Optional[float] = None


class SampleRunner:
    """Runs samples for one :class:`RunnerSpec`; the device (if any) is opened and flashed
    here, once. Use :meth:`close` (or ``with``) to release it."""

    def __init__(self, spec: RunnerSpec):
        from mapper import ChipConfig

        self.spec = spec
        self.config = ChipConfig.from_json(spec.config_json)
        self.network = self.config.to_network()
        self.n_classes = self.network.layers[spec.output_layer].output_shape[0]
        self.device = None
        if spec.device is not None:
            self._open()

    def _open(self) -> None:
        from backend.devices import open_device

        try:
            self.device = open_device(self.spec.device)
            self.device.flash(self.config)
        except DeviceError as exc:
            self.close()
            raise WorkerLost(f"device {self.spec.device}: {exc.message}") from exc

    def __enter__(self) -> "SampleRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the device (if open); the runner cannot run device samples afterwards."""
        device, self.device = self.device, None
        if device is not None:
            try:
                device.close()
            except DeviceError:
                pass  # a lost device cannot be closed more than it is

    def run_all(self, samples: list[Sample]) -> list[dict]:
        """:meth:`run` for each sample, in order."""
        return [self.run(sample) for sample in samples]

    def run(self, sample: Sample) -> dict:
        """The result record of ``sample``: index, name, label, sample digest, prediction,
        counts (spikes per output channel), synops (synaptic updates in simulation), bit_exact
        and divergence (when simulation and device both ran), error (None when it ran)."""
        record = blank_record(sample, sample.error)
        if sample.error is not None:
            return record
        try:
            expected = received = None
            if self.spec.simulate:
                from snnlib import simulate

                result = simulate(self.network, sample.events)
                expected = result.events
                record["synops"] = sum(c["synaptic_updates"] for c in result.counters.values())
            if self.spec.device is not None:
                received = self._run_on_device(sample.events)
        except WorkerLost:
            raise
        except SpikeflashError as exc:
            record["error"] = f"{sample.name}: {exc}"
            return record
        output = received if received is not None else expected
        output = output[output["layer"] == self.spec.output_layer]
        record["counts"] = np.bincount(output["channel"], minlength=self.n_classes).tolist()
        record["prediction"] = predict(output, self.n_classes)
        if expected is not None and received is not None:
            from backend.analysis.compare import compare_outputs

            found = compare_outputs(expected, received, self.config)
            record["bit_exact"] = found.bit_exact
            d = found.first_divergence
            if d is not None:
                record["divergence"] = {"layer": d.layer, "name": d.name, "neuron": list(d.neuron),
                                        "t_us": d.t_us, "expected": d.expected, "received": d.received}
        return record

    def _run_on_device(self, events: np.ndarray) -> np.ndarray:
        if self.device is None:
            raise WorkerLost(f"device {self.spec.device}: closed after an earlier failure")
        try:
            self.device.reset()
            return self.device.run(events, timeout=self.spec.timeout).events
        except DeviceError as exc:
            self.close()
            raise WorkerLost(f"device {self.spec.device}: {exc.message}") from exc


def blank_record(sample: Sample, error: Optional[str] = None) -> dict:
    """The record of ``sample`` before it ran (or of one that failed with ``error``)."""
    return {"index": sample.index, "name": sample.name, "label": sample.label, "sample": sample.digest(),
            "prediction": None, "counts": None, "synops": None, "bit_exact": None, "divergence": None,
            "error": error}


def predict(output_events: np.ndarray, n_classes: int) -> int:
    """The class whose output neuron (channel) spiked most in ``output_events`` (one layer's
    EVENT_DTYPE events); a tie goes to the earliest first spike, a silent output to class 0."""
    counts = np.bincount(output_events["channel"], minlength=n_classes)
    first = np.full(len(counts), np.iinfo(np.int64).max)
    np.minimum.at(first, output_events["channel"], output_events["t"])
    return winner(counts, first)


def winner(counts: np.ndarray, first_time: np.ndarray) -> int:
    """The index with the highest count, ties to the lowest ``first_time``, then the lowest index."""
    return int(np.lexsort((first_time, -counts))[0])


def default_output_layer(config) -> int:
    """The monitored core that sends to no other core: the network's output (``config``: a
    ``mapper.ChipConfig``). Raises EvaluationError when there is not exactly one."""
    from backend.errors import EvaluationError

    ends = [cid for cid, core in sorted(config.cores.items()) if core.monitor and not core.destinations]
    if len(ends) != 1:
        raise EvaluationError(
            f"config: {len(ends)} monitored cores send to no other core ({ends}); cannot tell "
            "which one is the output", hint="pass output_layer=<core id> (--output-layer CORE)")
    return ends[0]
