"""Leak ticks in an idle gap: 20,000 ticks of one leaking 16x62x62 layer (61,504 neurons), for a
network that fires on its own (bias +1: never at rest) and one whose leak settles (bias -1:
at rest after its membranes reach threshold_low). Best of ``--repeats``, one thread.

    PYTHONPATH=$PWD python benchmarks/bench_leak_rest.py --repeats 5
"""
import argparse
import time

import numpy as np

from snnlib import CoreLayer, EventSimulator, IntegerNetwork
from snnlib.events import empty_events

TICKS, PERIOD_US = 20_000, 100


def network(bias: int) -> IntegerNetwork:
    core = CoreLayer(np.ones((16, 1, 3, 3), np.int8), (1, 64, 64), 100, -100,
                     bias=np.full(16, bias, np.int16), leak_enable=True, monitor=False)
    return IntegerNetwork({0: core}, slow_clock_period_us=PERIOD_US).validate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    events = empty_events(2)
    events["t"] = [0, TICKS * PERIOD_US]
    for bias in (1, -1):
        net = network(bias)
        EventSimulator(net).run(events[:1])  # compile
        best = float("inf")
        for _ in range(repeats):
            engine = EventSimulator(net)
            start = time.perf_counter()
            engine.run(events)
            best = min(best, time.perf_counter() - start)
        print(f"bias {bias:+d}: {best * 1e3:8.1f} ms for {TICKS} ticks ({best / TICKS * 1e6:.2f} µs/tick)")


if __name__ == "__main__":
    main()
