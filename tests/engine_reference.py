"""A deliberately simple pure-Python model of the chip rules (docs/chip-model.md), written
independently of snnlib.engine: plain recursion, dicts of Python ints, every neuron of a layer
checked against the receptive field. Slow; for tiny networks in tests only."""

from __future__ import annotations

from snnlib.network import DVS_LAYER_ID

COUNTERS = ("events_in", "synaptic_updates", "spikes_out", "dropped")


class ReferenceChip:
    def __init__(self, network, overflow="saturate", lower_bound="clamp", leak_can_fire=True):
        self.net = network
        self.overflow, self.lower_bound, self.leak_can_fire = overflow, lower_bound, leak_can_fire
        self.v = {}
        for lid, layer in network.layers.items():
            f, h, w = layer.output_shape
            init = layer.initial_state
            self.v[lid] = [[[0 if init is None else int(init[a][b][c]) for c in range(w)]
                            for b in range(h)] for a in range(f)]
        ids = list(network.layers) + ([DVS_LAYER_ID] if network.dvs is not None else [])
        self.count = {lid: dict.fromkeys(COUNTERS, 0) for lid in ids}
        self.period = network.slow_clock_period_us
        self.next_tick = self.period
        self.out = []

    # one update of one neuron: saturate (or wrap), lower bound, threshold, reset
    def update(self, lid, f, y, x, w, test=True):
        layer = self.net.layers[lid]
        old = self.v[lid][f][y][x]
        v = old + w
        if self.overflow == "wrap":
            v = (v + 2**15) % 2**16 - 2**15
        else:
            v = min(32767, max(-32768, v))
        if v < layer.threshold_low:
            v = old if self.lower_bound == "reject" else layer.threshold_low
        fired = test and v >= layer.threshold_high
        if fired:
            v = 0 if layer.reset == "zero" else v - layer.threshold_high
        self.v[lid][f][y][x] = v
        return fired

    def deliver(self, lid, c, y, x, t):
        layer = self.net.layers[lid]
        self.count[lid]["events_in"] += 1
        n_f, h_out, w_out = layer.output_shape
        k = layer.weights.shape[2]
        spikes = []
        for f in range(n_f):
            for yo in range(h_out):
                for xo in range(w_out):
                    ky = y + layer.padding[0] - yo * layer.stride[0]
                    kx = x + layer.padding[1] - xo * layer.stride[1]
                    if 0 <= ky < k and 0 <= kx < k:
                        self.count[lid]["synaptic_updates"] += 1
                        if self.update(lid, f, yo, xo, int(layer.weights[f][c][ky][kx])):
                            spikes.append((f, yo, xo))
        self.fire(lid, layer.monitor, layer.destinations, spikes, t)

    def fire(self, lid, monitor, destinations, spikes, t):
        self.count[lid]["spikes_out"] += len(spikes)
        if monitor:
            self.out.extend((t, lid, f, y, x) for f, y, x in spikes)
        for f, y, x in spikes:
            for d in destinations:
                target = self.net.layers[d.layer]
                _, h, w = target.input_shape
                if y // d.pooling < h and x // d.pooling < w:
                    self.deliver(d.layer, f + d.feature_shift, y // d.pooling, x // d.pooling, t)
                else:
                    self.count[d.layer]["dropped"] += 1

    def tick(self, t):
        for lid in sorted(self.net.layers):
            layer = self.net.layers[lid]
            if not layer.leak_enable or layer.bias is None:
                continue
            n_f, h_out, w_out = layer.output_shape
            spikes = [(f, y, x) for f in range(n_f) for y in range(h_out) for x in range(w_out)
                      if self.update(lid, f, y, x, int(layer.bias[f]), self.leak_can_fire)]
            self.fire(lid, layer.monitor, layer.destinations, spikes, t)

    def dvs_event(self, p, y, x, t):
        d = self.net.dvs
        self.count[DVS_LAYER_ID]["events_in"] += 1
        keep = d.on_channel if p == 1 else d.off_channel
        c = 0 if d.merge_polarities else p
        y, x = y // d.pooling[0], x // d.pooling[1]
        ph, pw = d.input_shape[1] // d.pooling[0], d.input_shape[2] // d.pooling[1]
        (oy, ox), (cy, cx) = d.origin, (d.cut or (ph - 1, pw - 1))
        if not keep or not (oy <= y <= cy and ox <= x <= cx):
            self.count[DVS_LAYER_ID]["dropped"] += 1
            return
        y, x = y - oy, x - ox
        if d.mirror_y:
            y = cy - oy - y
        if d.mirror_x:
            x = cx - ox - x
        if d.mirror_diagonal:
            y, x = x, y
        self.fire(DVS_LAYER_ID, d.monitor, d.destinations, [(c, y, x)], t)

    def advance(self, t):
        while self.period and self.next_tick <= t:
            self.tick(self.next_tick)
            self.next_tick += self.period

    def run(self, events, until_us=None):
        """events: iterable of (t, layer, channel, y, x); returns the output tuples of this run."""
        start = len(self.out)
        last = None
        for t, lid, c, y, x in events:
            t, lid, c, y, x = int(t), int(lid), int(c), int(y), int(x)
            self.advance(t)
            if lid == DVS_LAYER_ID and self.net.dvs is not None:
                self.dvs_event(c, y, x, t)
            else:
                self.deliver(lid, c, y, x, t)
            last = t
        if until_us is not None:
            self.advance(until_us)
        elif last is not None:
            self.advance(last)
        return self.out[start:]

    def states(self):
        return {lid: v for lid, v in self.v.items()}
