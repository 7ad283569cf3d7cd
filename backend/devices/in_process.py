"""``emu://``: the emulator in-process, as a :class:`~backend.devices.base.Device`.

The same :class:`~backend.emulator.chip.EmulatedChip` that ``spikeflash emulate`` serves over
the wire protocol, called directly: no link, so runs complete synchronously and nothing can
be lost in transit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from backend.devices.base import Device, DeviceInfo
from backend.emulator.chip import EmulatedChip
from backend.errors import DeviceDisconnected, UnsupportedURL

if TYPE_CHECKING:
    from mapper import ChipConfig

CAPABILITIES = ("flash-verify", "read-states", "reset-states", "bit-exact", "leak")


class EmulatorDevice(Device):
    """The in-process emulator. ``url`` must be ``"emu://"``; ``chip`` is the chip name it
    reports (``"speck2f"`` by default). What it holds lives as long as the object: another
    process (another command) opening ``emu://`` gets a fresh chip holding nothing."""

    holds_across_processes = False

    def __init__(self, url: str = "emu://", *, chip: str = "speck2f"):
        if url != "emu://":
            raise UnsupportedURL(
                f"EmulatorDevice(url={url!r}): the in-process emulator is opened as 'emu://'; "
                "for an emulator served on a pty or TCP port use its path or socket://host:port"
            )
        super().__init__(url)
        self._chip: Optional[EmulatedChip] = EmulatedChip(chip)

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

    def _close(self) -> None:
        self._chip = None

    def _open_chip(self) -> EmulatedChip:
        if self._chip is None:
            raise DeviceDisconnected(f"{self.url}: the device was closed; open a new one")
        return self._chip
