"""Hardware versus simulation: run the same input through the event-exact simulation and a
device, align the output events per layer and time, and report bit-exact agreement or the
first divergence.

Alignment: for every monitored layer, the events of each timestamp are compared as a
multiset of neurons ``(channel, y, x)``; the chip's order of events inside one timestamp is
reported separately (``same_order``), since only their set is guaranteed by the chip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from snnlib.events import EVENT_DTYPE

if TYPE_CHECKING:
    from backend.devices.base import Device
    from mapper import ChipConfig

#: how many events of the divergent timestamp the report prints per side
SHOWN_EVENTS = 8


@dataclass
class LayerSummary:
    """One monitored layer: events expected (simulation) vs received (device); ``mismatches``:
    how many (time, neuron) pairs have different event counts; first/last of them in µs."""

    layer: int
    name: str
    expected: int
    received: int
    mismatches: int
    first_mismatch_us: Optional[int]
    last_mismatch_us: Optional[int]


@dataclass
class Divergence:
    """The earliest disagreement: at time ``t_us`` neuron ``(channel, y, x)`` of ``layer``
    spiked ``expected`` times in simulation and ``received`` times on the device.
    ``expected_events`` / ``received_events``: all of that layer's events at ``t_us``.
    ``state_expected`` / ``state_received``: the neuron's state after the input events up to
    ``t_us``, replayed from reset (None for a layer that is not a core, e.g. DVS)."""

    layer: int
    name: str
    neuron: tuple[int, int, int]
    t_us: int
    expected: int
    received: int
    expected_events: np.ndarray
    received_events: np.ndarray
    state_expected: Optional[int] = None
    state_received: Optional[int] = None


@dataclass
class Comparison:
    """Result of :func:`compare`. ``str()`` gives the report."""

    bit_exact: bool
    same_order: bool
    n_expected: int
    n_received: int
    layers: list[LayerSummary]
    first_divergence: Optional[Divergence]

    def __str__(self) -> str:
        if self.bit_exact:
            head = f"bit-exact: {self.n_expected} events on {len(self.layers)} layers agree"
            if not self.same_order:
                head += " (same events per timestamp, in a different order)"
        else:
            d = self.first_divergence
            c, y, x = d.neuron
            head = (
                f"DIVERGED at t={d.t_us} µs, layer {d.layer} ({d.name}), neuron "
                f"(channel={c}, y={y}, x={x}): expected {d.expected} event(s), received {d.received}"
            )
            if d.state_expected is not None or d.state_received is not None:
                head += f"; state after t: simulation {d.state_expected}, device {d.state_received}"
            head += (f"\n  expected at t: {_event_text(d.expected_events)}"
                     f"\n  received at t: {_event_text(d.received_events)}")
        rows = [f"  layer {s.layer:>2} {s.name:<16} expected {s.expected:>8}  received "
                f"{s.received:>8}  mismatches {s.mismatches:>6}"
                + (f"  first {s.first_mismatch_us} µs, last {s.last_mismatch_us} µs"
                   if s.mismatches else "")
                for s in self.layers]
        return "\n".join([head, *rows])


def compare(
    config_or_model: Any,
    device: Device,
    events: np.ndarray,
    *,
    input_shape: Optional[tuple[int, int, int]] = None,
    flash: bool = True,
    timeout: Optional[float] = None,
) -> Comparison:
    """Run ``events`` (EVENT_DTYPE) through the simulation of ``config_or_model`` and through
    ``device``, and compare the output events per layer and time.

    ``config_or_model``: a ``mapper.ChipConfig``, or a torch model that is mapped first with
    ``mapper.map_model(model, input_shape, chip=<the device's chip>)``. ``flash``: write the
    configuration to the device first; False uses the configuration the device already holds
    (flashed earlier, e.g. by another command), which must be this one
    (:meth:`Device.adopt <backend.devices.base.Device.adopt>`: ``ConfigNotHeld`` naming both
    digests otherwise). Either way the run starts from the initial states (``reset()``).
    ``timeout``: seconds for the device run.
    """
    from snnlib import simulate

    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE:
        raise TypeError(
            f"compare(events): expected an EVENT_DTYPE event array, got "
            f"{type(events).__name__}{'' if not isinstance(events, np.ndarray) else ' of dtype ' + str(events.dtype)}"
            "; build one with snnlib.raster_to_events or snnlib.empty_events"
        )
    config = _as_config(config_or_model, device, input_shape)
    if flash:
        device.flash(config)
    else:
        device.adopt(config)
    device.reset()
    expected = simulate(config.to_network(), events).events
    received = device.run(events, timeout=timeout, rasters=False).events
    result = compare_outputs(expected, received, config)
    if result.first_divergence is not None:
        _add_states(result.first_divergence, config, device, events, timeout)
    return result


def compare_outputs(expected: np.ndarray, received: np.ndarray,
                    config: Optional[ChipConfig] = None) -> Comparison:
    """Compare two output event arrays (EVENT_DTYPE) per layer and time, without running
    anything: ``expected`` (the simulation), ``received`` (the device). ``config``: names the
    layers in the report and lists every monitored one, even without events. The divergence
    carries no neuron states (:func:`compare` adds them)."""
    names = {} if config is None else config.layer_display_names()
    monitored = set() if config is None else set(config.monitored_layer_names())
    layers = sorted(monitored | set(np.unique(expected["layer"]).tolist())
                    | set(np.unique(received["layer"]).tolist()))
    summaries, first = [], None
    for layer in layers:
        summary, mismatch = _compare_layer(layer, names.get(layer, f"core {layer}"),
                                           expected[expected["layer"] == layer],
                                           received[received["layer"] == layer])
        summaries.append(summary)
        if mismatch is not None and (first is None or mismatch.t_us < first.t_us):
            first = mismatch
    same_order = len(expected) == len(received) and bool(np.all(expected == received))
    return Comparison(first is None, same_order, len(expected), len(received), summaries, first)


def _as_config(config_or_model: Any, device: Device, input_shape) -> ChipConfig:
    from mapper import ChipConfig

    if isinstance(config_or_model, ChipConfig):
        return config_or_model
    import torch

    if not isinstance(config_or_model, torch.nn.Module):
        raise TypeError(
            f"compare(config_or_model): expected a mapper.ChipConfig or a torch.nn.Module, got "
            f"{type(config_or_model).__name__}"
        )
    if input_shape is None:
        raise ValueError("compare(model, ...) needs input_shape=(channels, height, width) to map the model")
    from mapper import map_model

    return map_model(config_or_model, input_shape, chip=device.info().chip).config


def _neuron_counts(events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows ``(t, channel, y, x)`` (sorted) and how often each occurs."""
    rows = np.stack([events["t"], events["channel"], events["y"], events["x"]], axis=1).astype(np.int64)
    if len(rows) == 0:
        return rows.reshape(0, 4), np.zeros(0, np.int64)
    return np.unique(rows, axis=0, return_counts=True)


def _compare_layer(layer: int, name: str, expected: np.ndarray, received: np.ndarray):
    exp_rows, exp_n = _neuron_counts(expected)
    rec_rows, rec_n = _neuron_counts(received)
    rows, inverse = np.unique(np.concatenate([exp_rows, rec_rows]), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n_exp = np.zeros(len(rows), np.int64)
    n_rec = np.zeros(len(rows), np.int64)
    np.add.at(n_exp, inverse[:len(exp_rows)], exp_n)
    np.add.at(n_rec, inverse[len(exp_rows):], rec_n)
    bad = np.flatnonzero(n_exp != n_rec)  # rows are sorted by t first
    summary = LayerSummary(layer, name, len(expected), len(received), len(bad),
                           int(rows[bad[0], 0]) if len(bad) else None,
                           int(rows[bad[-1], 0]) if len(bad) else None)
    if not len(bad):
        return summary, None
    t, c, y, x = (int(v) for v in rows[bad[0]])
    return summary, Divergence(layer, name, (c, y, x), t, int(n_exp[bad[0]]), int(n_rec[bad[0]]),
                               expected[expected["t"] == t], received[received["t"] == t])


def _add_states(d: Divergence, config: ChipConfig, device: Device, events: np.ndarray,
                timeout: Optional[float]) -> None:
    """Replay the input up to the divergence on a fresh simulation and the reset device,
    and read the divergent neuron's state on both."""
    from snnlib import EventSimulator

    if d.layer not in config.to_network().layers:
        return
    prefix = events[events["t"] <= d.t_us]
    engine = EventSimulator(config.to_network())
    engine.run(prefix)
    d.state_expected = int(engine.states[d.layer][d.neuron])
    device.reset()
    device.run(prefix, timeout=timeout, rasters=False)
    d.state_received = int(device.read_states()[d.layer][d.neuron])


def _event_text(events: np.ndarray) -> str:
    shown = ", ".join(f"(ch={e['channel']}, y={e['y']}, x={e['x']})" for e in events[:SHOWN_EVENTS])
    more = f", ... {len(events) - SHOWN_EVENTS} more" if len(events) > SHOWN_EVENTS else ""
    return f"{len(events)} event(s): {shown}{more}" if len(events) else "none"
