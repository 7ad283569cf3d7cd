"""Wire-protocol throughput through a pseudo-terminal, side by side with the raw pty rate.

Measures, in one run: the raw pty byte rate (best of 3; two threads, os.write/os.read of
64 KiB chunks), host -> emulator input events/s, emulator -> host output events/s, the round
trip of a single event, the soak (``--soak``: 1,000 consecutive runs, >= 1e7 events, counters
checked), and, as the reference for the object-per-event style (sinabs builds one samna
event object per event), the rate of merely building one Python object per event.
The emulator runs in its own process behind a real pty (as ``spikeflash emulate --pty``);
the host opens the pty with pyserial exactly as it would a board. To time the link and not
the neuron engine, the device core here is a link-test core (``LinkTestChip``): it discards
the input, or answers each input event with ``fanout`` output events. Run:

    .venv/bin/python benchmarks/bench_link.py [--events 4000000] [--soak]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tty
import types

import numpy as np

from backend.emulator.server import EmulatorServer, ServedEmulator
from backend.protocol.session import HostSession
from backend.devices.serial_port import open_port
from snnlib.events import EVENT_DTYPE

BYTES_PER_EVENT = 8


class LinkTestChip:
    """Device core for link measurements: output = ``fanout`` copies of each input event
    (moved to layer 1), made with numpy; fanout 0 discards the input. The configuration is
    the JSON ``{"fanout": k}``."""

    info = types.SimpleNamespace(chip="linktest", firmware="bench")

    def __init__(self):
        self.config, self.fanout = None, 0

    def apply_config(self, config_json: bytes) -> str:
        self.fanout = int(json.loads(config_json)["fanout"])
        self.config = types.SimpleNamespace(to_json=lambda: config_json.decode())
        return hashlib.sha256(config_json).hexdigest()

    def reset(self) -> None:
        pass

    def read_states(self) -> dict:
        return {}

    def run(self, events: np.ndarray):
        out = np.repeat(events, self.fanout)
        out["layer"] = 1
        stats = types.SimpleNamespace(events_in={0: len(events)}, events_out={1: len(out)}, dropped=0,
                                      last_t=int(events["t"].max()) if len(events) else -1)
        return out, stats


def serve_pty() -> None:
    """The device process: serve a LinkTestChip on a pty, print ``PTY <path>``, run until killed."""
    with ServedEmulator(EmulatorServer(LinkTestChip), "pty") as served:
        print(f"PTY {served.url}", flush=True)
        threading.Event().wait()


def start_device() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve-pty"], stdout=subprocess.PIPE, text=True)
    kind, path = proc.stdout.readline().split()
    return proc, path


def make_events(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    events = np.zeros(n, EVENT_DTYPE)
    events["t"] = np.arange(n)
    events["channel"] = rng.integers(0, 1024, n)
    events["y"] = rng.integers(0, 128, n)
    events["x"] = rng.integers(0, 128, n)
    return events


def raw_pty_rate(n_bytes: int) -> float:
    """Bytes/s through a raw pty, writer and reader on two threads."""
    master, slave = os.openpty()
    tty.setraw(slave)
    chunk = bytes(65536)

    def write():
        for _ in range(n_bytes // len(chunk)):
            os.write(master, chunk)

    writer = threading.Thread(target=write)
    start = time.perf_counter()
    writer.start()
    got = 0
    while got < n_bytes // len(chunk) * len(chunk):
        got += len(os.read(slave, 1 << 20))
    writer.join()
    elapsed = time.perf_counter() - start
    os.close(master)
    os.close(slave)
    return got / elapsed


class SpikeObject:
    """One Python object per event, as an object-per-event transport needs."""

    __slots__ = ("timestamp", "layer", "feature", "y", "x")

    def __init__(self, timestamp, layer, feature, y, x):
        self.timestamp, self.layer, self.feature, self.y, self.x = timestamp, layer, feature, y, x


def object_per_event_rate(events: np.ndarray) -> float:
    """Events/s for only creating one :class:`SpikeObject` per event (no transport at all)."""
    columns = [events[name].tolist() for name in ("t", "layer", "channel", "y", "x")]
    start = time.perf_counter()
    objects = [SpikeObject(*fields) for fields in zip(*columns)]
    return len(objects) / (time.perf_counter() - start)


def best_of(repeats: int, fn) -> float:
    return min(_timed(fn) for _ in range(repeats))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=4_000_000, help="events per throughput run")
    parser.add_argument("--soak", action="store_true", help="also run the 1,000-run soak")
    parser.add_argument("--serve-pty", action="store_true", help=argparse.SUPPRESS)  # the device process
    args = parser.parse_args()
    if args.serve_pty:
        return serve_pty()
    n = args.events
    events = make_events(n)

    raw = max(raw_pty_rate(8 * n) for _ in range(3))
    print(f"raw pty:            {raw / 1e6:7.1f} MB/s = {raw / BYTES_PER_EVENT / 1e6:5.2f} M events/s "
          "at 8 B/event")
    proc, path = start_device()
    try:
        session = HostSession(open_port(path), path)
        session.handshake()
        session.flash(b'{"fanout": 0}')
        t_in = best_of(3, lambda: session.run(events))
        rate_in = n / t_in
        print(f"host -> emulator:   {rate_in / 1e6:5.2f} M events/s ({n} events in {t_in:.3f} s), "
              f"{rate_in * BYTES_PER_EVENT / raw:.0%} of the raw pty rate")
        fanout = 64
        session.flash(b'{"fanout": %d}' % fanout)
        small = events[: n // fanout]
        t_out = best_of(3, lambda: session.run(small))
        rate_out = len(small) * fanout / t_out
        print(f"emulator -> host:   {rate_out / 1e6:5.2f} M events/s ({len(small) * fanout} events in "
              f"{t_out:.3f} s, {len(small)} in), {rate_out * BYTES_PER_EVENT / raw:.0%} of the raw pty rate")
        session.flash(b'{"fanout": 1}')
        one = events[:1]
        rtts = [_timed(lambda: session.run(one)) for _ in range(200)]
        print(f"single-event round trip: median {np.median(rtts) * 1e3:.3f} ms, "
              f"p99 {np.percentile(rtts, 99) * 1e3:.3f} ms (200 runs)")
        objects = object_per_event_rate(events[:1_000_000])
        print(f"reference, one Python object per event (creation only): {objects / 1e6:5.2f} M events/s; "
              f"packed buffers are {min(rate_in, rate_out) / objects:.1f}x faster each way")
        if args.soak:
            soak(session)
        print("link counters:", session.link.stats())
        session.close()
    finally:
        proc.terminate()
        proc.wait()


def soak(session: HostSession, runs: int = 1000, per_run: int = 10_000) -> None:
    """1,000 consecutive runs of ``per_run`` events each way; every event accounted for."""
    events = make_events(per_run)
    sent = received = 0
    start = time.perf_counter()
    for i in range(runs):
        events["t"] += per_run
        out, end = session.run(events)
        if len(out) != per_run or end.events_in != per_run or not np.array_equal(out["x"], events["x"]):
            raise AssertionError(f"soak run {i}: {len(out)} events out of {per_run}, end-of-run {end}")
        sent += end.events_in
        received += len(out)
    elapsed = time.perf_counter() - start
    status = session.status()
    print(f"soak: {runs} runs, {sent} events in, {received} out in {elapsed:.1f} s "
          f"({(sent + received) / elapsed / 1e6:.2f} M events/s both ways); lost 0; device status {status}")


if __name__ == "__main__":
    main()
