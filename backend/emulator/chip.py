"""The device side of the emulator: a chip in software, with no transport.

:class:`EmulatedChip` holds what a board holds: the applied configuration and the neuron
states, and runs input events through the event-exact engine (``snnlib.EventSimulator``,
the chip semantics of ``docs/chip-model.md``). The wire-protocol server
(``backend.emulator.server``) and the in-process ``emu://`` device
(``backend.devices.in_process``) both wrap it, so there is one emulator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np

from backend.errors import NoSensor, NotFlashed
from snnlib.events import EVENT_DTYPE, InvalidEventsError

if TYPE_CHECKING:
    from mapper import ChipConfig
    from backend.emulator.sensor import Playback, ReplaySensor
    from snnlib import EventSimulator

#: what the emulator reports as its firmware
FIRMWARE = "spikeflash-emulator 0.1"
#: the most input events one step of a run processes (output streams between steps)
STEP_EVENTS = 65536
#: the most leak ticks one step of a run applies; with leaking layers a tick costs one update
#: of every neuron in them, so a step is bounded by STEP_EVENTS events plus STEP_TICKS ticks
STEP_TICKS = 4096


@dataclass
class ChipInfo:
    """What the emulated chip says about itself."""

    chip: str
    firmware: str = FIRMWARE


@dataclass
class RunStats:
    """Device-side counters of one :meth:`EmulatedChip.run`.

    ``events_in`` / ``events_out``: per core id, events that entered the core / spikes it
    produced. ``dropped``: events the router dropped (pooled coordinates outside the
    destination map). ``last_t``: timestamp (µs) of the last input
    event processed, -1 when there was none. ``n_in``: input events processed.
    """

    events_in: dict[int, int] = field(default_factory=dict)
    events_out: dict[int, int] = field(default_factory=dict)
    dropped: int = 0
    last_t: int = -1
    n_in: int = 0

    def add(self, other: "RunStats") -> None:
        """Add the counters of a later step of the same run."""
        for total, step in ((self.events_in, other.events_in), (self.events_out, other.events_out)):
            for core, n in step.items():
                total[core] = total.get(core, 0) + n
        self.dropped += other.dropped
        self.last_t = max(self.last_t, other.last_t)
        self.n_in += other.n_in


class EmulatedChip:
    """A chip in software: ``apply_config`` a ChipConfig's JSON (or ``apply_image`` its wire
    image), then ``run`` events.

    ``chip``: the chip name it reports before and after configuration (e.g. ``"speck2f"``).
    ``sensor``: its own sensor (a :class:`~backend.emulator.sensor.ReplaySensor`) for
    :meth:`stream`, or None.
    """

    def __init__(self, chip: str = "speck2f", sensor: Optional[ReplaySensor] = None):
        if not isinstance(chip, str) or not chip:
            raise ValueError(f"EmulatedChip(chip={chip!r}): expected a chip name such as 'speck2f'")
        self.info = ChipInfo(chip)
        self.sensor = sensor
        self.config: Optional[ChipConfig] = None
        self._engine: Optional[EventSimulator] = None

    def apply_config(self, config_json: bytes) -> str:
        """Parse and apply a configuration (UTF-8 JSON of ``ChipConfig.to_json()``).

        Returns the sha256 hex digest of the configuration as applied (its canonical JSON),
        so the host can verify it against what it sent. Raises ``mapper.ConfigError`` (a
        ValueError) for an invalid configuration; the previous one then stays in force.
        """
        from mapper import ChipConfig

        if not isinstance(config_json, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"apply_config(config_json): expected bytes, got {type(config_json).__name__}"
            )
        config = ChipConfig.from_json(bytes(config_json).decode("utf-8"))
        self._load(config)
        return config.digest()

    def apply_image(self, image: bytes) -> str:
        """Apply a configuration image (docs/protocol.md, what the wire carries); return the
        sha256 hex digest of the image. Raises ``ConfigImageError`` / ``mapper.ConfigError``
        (ValueErrors) for an invalid image; the previous configuration then stays in force."""
        from backend.protocol.config_image import decode_image, image_digest

        self._load(decode_image(bytes(image)))
        return image_digest(bytes(image))

    def _load(self, config: ChipConfig) -> None:
        from mapper import ConfigError
        from snnlib import EventSimulator

        if config.chip != self.info.chip:  # as a board refuses an image for another chip
            raise ConfigError("chip", f"{config.chip!r}: this device is a {self.info.chip}")

        engine = EventSimulator(config.to_network())
        self.config, self._engine = config, engine

    def check_input(self, events: np.ndarray) -> None:
        """Raise ``InvalidEventsError`` for input events the configured chip cannot take: time
        going back, a layer that takes no input, a channel or coordinate outside its input."""
        from snnlib.events import check_events

        if self.config is None:
            raise NotFlashed("emulated chip: check_input() needs a configuration; apply one first")
        check_events(events, self.config.to_network().input_shapes())

    def reset(self) -> None:
        """Set every neuron state back to its initial value (zero unless configured)."""
        self._require_engine("reset").reset()

    def read_states(self) -> dict[int, np.ndarray]:
        """Copies of the neuron states per core id, int16 ``(f, h, w)``."""
        states = self._require_engine("read_states").states
        return {core: np.array(state, dtype=np.int16) for core, state in states.items()}

    def run(self, events: np.ndarray, until_us: Optional[int] = None) -> tuple[np.ndarray, RunStats]:
        """Process input ``events`` (EVENT_DTYPE, ordered by ``t``), then the leak ticks up to
        ``until_us`` (µs, None: none after the last event); states persist.

        Returns the monitored output events in production order and this run's counters.
        """
        outs, stats = [], RunStats()
        for out, step in self.steps(events, until_us):
            outs.append(out)
            stats.add(step)
        return (np.concatenate(outs) if outs else events[:0].copy()), stats

    def steps(self, events: np.ndarray, until_us: Optional[int] = None) -> Iterator[tuple[np.ndarray, RunStats]]:
        """:meth:`run` in bounded steps (at most :data:`STEP_EVENTS` events and
        :data:`STEP_TICKS` leak ticks each), yielding each step's output and counters, so a
        caller can stream output and abandon a run between steps (idle stretches without
        leaking layers cost nothing)."""
        engine = self._require_engine("run")
        if until_us is not None and len(events) and until_us < int(events["t"][-1]):
            raise ValueError(f"until_us={until_us}: earlier than the last event (t = {int(events['t'][-1])})")
        start = 0
        while start < len(events):
            yield from self._ticks_until(engine, int(events["t"][start]))
            end = min(start + STEP_EVENTS, len(events))
            _, period = engine.leak_ticks
            if period:  # stop the step where its gaps would hold more than STEP_TICKS ticks
                tick_of = events["t"][start:end] // period
                end = start + max(1, int(np.searchsorted(tick_of, tick_of[0] + STEP_TICKS, "right")))
            yield self._step(engine, events[start:end], None)
            start = end
        if until_us is not None:
            yield from self._ticks_until(engine, until_us)

    def stream(self, wait: Callable[[float], None],
               clock: Callable[[], float] = time.monotonic) -> Iterator[tuple[np.ndarray, RunStats]]:
        """Run the chip on the sensor's next recording as it plays (the live mode): checks the
        recording against the configuration at once (``NoSensor``, ``NotFlashed``,
        ``InvalidEventsError``), then returns an iterator of ``(output, counters)`` steps, as
        :meth:`steps`. While no event is due it calls ``wait(seconds)`` (which may return
        early) and yields an empty step, so the caller can stop between steps. The output
        equals :meth:`run` of the whole recording, however it is cut into steps."""
        engine = self._require_engine("stream")
        if self.sensor is None:
            raise NoSensor("emulated chip: stream() needs a sensor, and this emulator has none",
                           hint="serve one with `spikeflash emulate --pty --sensor FILE` and stream from its "
                                "pty; in Python open_device('emu://', sensor=FILE)")
        playback = self.sensor.play(clock())
        self.check_input(playback.events)
        if len(playback.events) and int(playback.events["t"][0]) < engine.last_t:
            raise InvalidEventsError(
                f"the sensor's recording starts at t = {int(playback.events['t'][0])} µs, before the "
                f"chip's last event (t = {engine.last_t} µs); reset the states first", "t")
        return self._play(playback, wait, clock)

    def _play(self, playback: Playback, wait: Callable[[float], None],
              clock: Callable[[], float]) -> Iterator[tuple[np.ndarray, RunStats]]:
        while not playback.done:
            due = playback.take(clock(), STEP_EVENTS)
            if len(due):
                yield from self.steps(due)
            else:
                wait(playback.wait_s(clock()))
                yield _NO_EVENTS, RunStats()

    def _ticks_until(self, engine: EventSimulator, t_us: int) -> Iterator[tuple[np.ndarray, RunStats]]:
        """Apply the leak ticks due up to ``t_us`` in steps of at most STEP_TICKS; a network at
        rest skips them all in one step (they change nothing)."""
        next_tick, period = engine.leak_ticks
        while period and next_tick <= t_us:
            end = t_us if engine.at_rest else min(t_us, next_tick + (STEP_TICKS - 1) * period)
            yield self._step(engine, _NO_EVENTS, end)
            next_tick, period = engine.leak_ticks

    def _step(self, engine: EventSimulator, events: np.ndarray, until_us: Optional[int]) -> tuple[np.ndarray, RunStats]:
        before = _snapshot(engine.counters)
        out = engine.run(events, until_us)
        after = _snapshot(engine.counters)
        delta = {core: after[core] - before.get(core, 0) for core in after}
        return out, RunStats(
            events_in={core: int(d[0]) for core, d in delta.items()},
            events_out={core: int(d[1]) for core, d in delta.items()},
            dropped=int(sum(d[2] for d in delta.values())),
            last_t=int(events["t"].max()) if len(events) else -1,
            n_in=len(events),
        )

    def _require_engine(self, what: str) -> EventSimulator:
        if self._engine is None:
            raise NotFlashed(f"emulated chip: {what}() needs a configuration; apply one first")
        return self._engine


_NO_EVENTS = np.zeros(0, EVENT_DTYPE)


def _snapshot(counters: dict) -> dict[int, np.ndarray]:
    """Engine counters as ``{core: [events_in, spikes_out, dropped]}`` (int64)."""
    return {
        int(core): np.array([c["events_in"], c["spikes_out"], c["dropped"]], dtype=np.int64)
        for core, c in counters.items()
    }
