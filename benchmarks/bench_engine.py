"""Event-exact engine throughput, side by side with a numpy-per-event implementation and
sinabs 3.x's time-stepped simulation of the same network on the same input; plus raster <->
events conversion rates. One core (numba and torch limited to one thread).

    .venv/bin/python benchmarks/bench_engine.py [--repeats 3] [--numpy-events 1000]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from snnlib import (  # noqa: E402
    CoreLayer, Destination, EventSimulator, IntegerNetwork, events_to_raster, raster_to_events,
)

DT_US, STEPS, THRESHOLD = 1000, 100, 64


def conv_weights(rng, f, c):
    return rng.integers(-12, 15, (f, c, 3, 3)).astype(np.int8)


def networks(rng):
    """name -> (IntegerNetwork, input shape, [(weights, pooling before)] for the sinabs copy)."""
    w_dvs = conv_weights(rng, 16, 2)
    dvs = IntegerNetwork({0: CoreLayer(w_dvs, (2, 64, 64), THRESHOLD, -THRESHOLD, padding=(1, 1), monitor=True)})
    w_a, w_b = conv_weights(rng, 16, 8), conv_weights(rng, 32, 16)
    deep = IntegerNetwork({
        0: CoreLayer(w_a, (8, 64, 64), THRESHOLD, -THRESHOLD, padding=(1, 1), destinations=[Destination(1, 2)]),
        1: CoreLayer(w_b, (16, 32, 32), THRESHOLD, -THRESHOLD, padding=(1, 1), monitor=True),
    })
    return {"dvs 2x64x64->16": (dvs, (2, 64, 64), [(w_dvs, 1)]),
            "deep 8x64x64->16->32": (deep, (8, 64, 64), [(w_a, 1), (w_b, 2)])}


def best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def engine_rate(net, events, repeats):
    sim = EventSimulator(net)
    sim.run(events[:10])  # compile / load the cache

    def once():
        sim.reset()
        sim.run(events)

    seconds = best_time(once, repeats)
    updates = sum(c["synaptic_updates"] for c in sim.counters.values())
    return updates, seconds


def numpy_per_event_rate(net, events):
    """The straightforward implementation: a Python loop over events, numpy per receptive field,
    first layer only (so it is an upper bound on its speed)."""
    layer = net.layers[0]
    w = layer.weights.astype(np.int32)
    f, h, wd = layer.output_shape
    v = np.zeros((f, h + 2, wd + 2), np.int32)  # padded by 1 on each side (3x3, padding 1)
    updates = 0
    start = time.perf_counter()
    for e in events:
        c, y, x = int(e["channel"]), int(e["y"]), int(e["x"])
        # output (yo, xo) = (y + 1 - ky, x + 1 - kx): a flipped 3x3 window around (y, x)
        window = v[:, y:y + 3, x:x + 3]
        window += w[:, c, ::-1, ::-1]
        np.clip(window, max(-32768, layer.threshold_low), 32767, out=window)
        fired = window >= layer.threshold_high
        window -= fired * layer.threshold_high
        updates += window.size
    return updates, time.perf_counter() - start


def sinabs_seconds(layers, raster, repeats):
    import sinabs.layers as sl

    torch.set_num_threads(1)
    modules = []
    for weights, pool in layers:
        if pool > 1:
            modules.append(sl.SumPool2d(pool))
        conv = torch.nn.Conv2d(weights.shape[1], weights.shape[0], 3, padding=1, bias=False)
        conv.weight.data = torch.from_numpy(weights.astype(np.float32))
        modules += [conv, sl.IAFSqueeze(num_timesteps=raster.shape[0], spike_threshold=float(THRESHOLD),
                                        min_v_mem=-float(THRESHOLD))]
    model = torch.nn.Sequential(*modules)
    x = torch.from_numpy(raster.astype(np.float32))

    def once():
        for m in model:
            if hasattr(m, "reset_states"):
                m.reset_states()
        with torch.no_grad():
            model(x)

    once()
    return best_time(once, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--numpy-events", type=int, default=1000, help="events for the numpy baseline")
    parser.add_argument("--densities", type=float, nargs="+", default=[0.01, 0.05, 0.20])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{STEPS} bins of {DT_US} us, threshold {THRESHOLD}, weights in [-12, 14], best of {args.repeats}")
    print(f"{'network':22} {'density':>7} {'events':>8} {'updates':>10} {'engine':>9} {'M upd/s':>8} "
          f"{'numpy M/s':>9} {'x numpy':>8} {'sinabs ms':>9} {'x sinabs':>8}")
    for name, (net, shape, layers) in networks(rng).items():
        for density in args.densities:
            raster = (rng.random((STEPS, *shape)) < density).astype(np.uint8)
            events = raster_to_events(raster, 0, DT_US)
            updates, seconds = engine_rate(net, events, args.repeats)
            np_updates, np_seconds = numpy_per_event_rate(net, events[: args.numpy_events])
            sinabs_s = sinabs_seconds(layers, raster, args.repeats)
            rate, np_rate = updates / seconds, np_updates / np_seconds
            print(f"{name:22} {density:7.0%} {len(events):8d} {updates:10d} {seconds * 1e3:7.2f}ms "
                  f"{rate / 1e6:8.0f} {np_rate / 1e6:9.2f} {rate / np_rate:8.0f} {sinabs_s * 1e3:9.1f} "
                  f"{sinabs_s / seconds:8.1f}")
    raster = (rng.random((STEPS, 2, 64, 64)) < 0.05).astype(np.uint8)
    events = raster_to_events(raster, 0, DT_US)
    to_events = best_time(lambda: raster_to_events(raster, 0, DT_US), 5 * args.repeats)
    to_raster = best_time(lambda: events_to_raster(events, (2, 64, 64), DT_US, n_steps=STEPS), 5 * args.repeats)
    print(f"raster -> events at 5 %: {len(events) / to_events / 1e6:.0f} M events/s "
          f"({to_events * 1e3:.2f} ms for {len(events)} events)")
    print(f"events -> raster at 5 %: {len(events) / to_raster / 1e6:.0f} M events/s ({to_raster * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
