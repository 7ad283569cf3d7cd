"""The live mode's cost: the same DVS recording through ``Device.stream()`` (the emulator's
sensor replaying it as fast as possible) and through ``Device.run()`` (the host sending it),
on one ``spikeflash emulate --pty --sensor FILE --fast`` process, and on ``emu://``.

Prints, best of ``--repeat``, seconds and output events/s for each, the ratio stream / run,
and checks both outputs against the event-exact simulation. Run:

    .venv/bin/python benchmarks/bench_stream.py [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.devices import open_device
from backend.emulator.processes import emulator_on_pty
from backend.files.events import save_events
from backend.testing.qualification import qualification_config, random_input
from snnlib import simulate


def best_of(repeat: int, device, config, recording, how: str) -> tuple[float, np.ndarray]:
    """The fastest of ``repeat`` runs of ``how`` ("stream" or "run"); its seconds and output."""
    best, out = float("inf"), None
    for _ in range(repeat):
        device.reset()
        start = time.perf_counter()
        if how == "stream":
            with device.stream() as stream:
                out = stream.collect()
        else:
            out = device.run(recording, rasters=False).events
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="recording length (DVS events)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (best kept)")
    args = parser.parse_args()
    config = qualification_config("dvs_input")
    recording = random_input(config.to_network(), args.events, duration_us=10 * args.events, seed=0)
    expected = simulate(config.to_network(), recording).events
    print(f"{len(recording)} DVS events in, {len(expected)} output events (dvs_input, speck2f)")
    print(f"{'device':<8} {'mode':<7} {'s':>8} {'out events/s':>14}  bit-exact")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recording.npz"
        save_events(path, recording)
        with emulator_on_pty(options=("--sensor", str(path), "--fast")) as pty:
            for url in (pty, "emu://"):
                options = {} if url != "emu://" else {"sensor": recording, "fast": True}
                with open_device(url, **options) as device:
                    device.flash(config)
                    times = {}
                    for how in ("run", "stream"):
                        seconds, out = best_of(args.repeat, device, config, recording, how)
                        times[how] = seconds
                        exact = len(out) == len(expected) and bool((out == expected).all())
                        print(f"{'pty' if url == pty else url:<8} {how:<7} {seconds:8.3f} "
                              f"{len(out) / seconds:14,.0f}  {exact}")
                    print(f"{'':<8} ratio stream / run time: {times['stream'] / times['run']:.2f}")


if __name__ == "__main__":
    main()
