"""Latency of one request (STATUS -> STATUS_DATA) to an emulator on a pty and on TCP.

    PYTHONPATH=$PWD python benchmarks/bench_request_latency.py
"""
import time, statistics
from backend.devices import open_device
from backend.emulator.server import EmulatorServer, ServedEmulator
for kind in ("pty", "tcp"):
    with ServedEmulator(EmulatorServer(), kind) as served, open_device(served.url) as dev:
        dev.status()
        ts = []
        for _ in range(200):
            t = time.perf_counter(); dev.status(); ts.append(time.perf_counter() - t)
        print(kind, f"median {statistics.median(ts)*1e3:.2f} ms, p90 {sorted(ts)[180]*1e3:.2f} ms")
