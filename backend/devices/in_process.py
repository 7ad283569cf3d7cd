"""``emu://``: the emulator in-process, as a :class:`~backend.devices.base.Device`.

The same :class:`~backend.emulator.chip.EmulatedChip` that ``spikeflash emulate`` serves over
the wire protocol, called directly: no link, so runs complete synchronously and nothing can
be lost in transit. Opened with ``sensor=`` it has the same replaying sensor as
``spikeflash emulate --sensor`` for :meth:`~backend.devices.base.Device.stream`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

import numpy as np

from backend.devices.base import Device, DeviceInfo
from backend.emulator.chip import EmulatedChip, RunStats
from backend.emulator.sensor import ReplaySensor
from backend.errors import DeviceDisconnected, UnsupportedURL
from backend.protocol.timing import POLL_SLICE_S

if TYPE_CHECKING:
    from backend.devices.stream import DVSFilter
    from mapper import ChipConfig

CAPABILITIES = ("flash-verify", "read-states", "reset-states", "bit-exact", "leak")


class EmulatorDevice(Device):
    """The in-process emulator. ``url`` must be ``"emu://"``; ``chip`` is the chip name it
    reports (``"speck2f"`` by default). What it holds lives as long as the object: another
    process (another command) opening ``emu://`` gets a fresh chip holding nothing.
    ``sensor``: a recording its sensor replays in :meth:`stream` (an event file path, an
    EVENT_DTYPE array, or a :class:`~backend.emulator.sensor.ReplaySensor`); ``fast``: replay
    it as fast as the chip takes it instead of at its recorded pace."""

    holds_across_processes = False

    def __init__(self, url: str = "emu://", *, chip: str = "speck2f",
                 sensor: Union[str, Path, np.ndarray, ReplaySensor, None] = None, fast: bool = False):
        if url != "emu://":
            raise UnsupportedURL(
                f"EmulatorDevice(url={url!r}): the in-process emulator is opened as 'emu://'; "
                "for an emulator served on a pty or TCP port use its path or socket://host:port"
            )
        super().__init__(url)
        if isinstance(sensor, (str, Path)):
            sensor = ReplaySensor.load(sensor, fast=fast)
        elif sensor is not None and not isinstance(sensor, ReplaySensor):
            sensor = ReplaySensor(sensor, fast=fast)
        self._chip: Optional[EmulatedChip] = EmulatedChip(chip, sensor)

    def info(self) -> DeviceInfo:
        chip = self._open_chip()
        return DeviceInfo(self.url, "emulator", chip.info.chip, chip.info.firmware,
                          capabilities=CAPABILITIES)

    def _flash(self, config: ChipConfig) -> str:
        return self._open_chip().apply_config(config.to_json().encode("utf-8"))

    def _held_digest(self) -> Optional[str]:
        held = self._open_chip().config
        return None if held is None else held.digest()

    def _reset(self) -> None:
        self._open_chip().reset()

    def _read_states(self) -> dict[int, np.ndarray]:
        return self._open_chip().read_states()

    def _run_events(self, events: np.ndarray, timeout: Optional[float],
                    until_us: Optional[int] = None) -> np.ndarray:
        """Runs synchronously to completion (Ctrl-C interrupts it between bounded steps);
        ``timeout`` does not apply in-process."""
        out, stats = self._open_chip().run(events, until_us)
        self.counters.add_run(len(events), len(out), stats.dropped, stats.events_in, stats.events_out)
        return out

    def _stream(self, stop: threading.Event, dvs_filter: Optional[DVSFilter]) -> Iterator[np.ndarray]:
        if dvs_filter is not None:
            raise ValueError("stream(dvs_filter=...): the emulator's sensor replays a recording; only a "
                             "samna devkit's sensor has a DVS filter")
        steps = self._open_chip().stream(lambda s: stop.wait(min(s, POLL_SLICE_S)))
        stats, n_out = RunStats(), 0
        try:
            for out, step in steps:
                stats.add(step)
                n_out += len(out)
                if len(out):
                    yield out
                if stop.is_set():
                    return
        finally:
            self.counters.add_run(stats.n_in, 0, stats.dropped, stats.events_in, stats.events_out)

    def _close(self) -> None:
        self._chip = None

    def _open_chip(self) -> EmulatedChip:
        if self._chip is None:
            raise DeviceDisconnected(f"{self.url}: the device was closed; open a new one")
        return self._chip
