"""Mapper speed: a 9-layer network end to end (extraction, legalization, checks, allocation,
quantization, JSON), a failing model, and sinabs' own per-layer discretization + memory
summary + Edmonds core mapping on the same network, side by side in one run.

sinabs' ``DynapcnnNetwork`` cannot be built here: ``import sinabs.backend.dynapcnn`` imports
samna, whose PyPI stub downloads at import. So this script loads only the samna-free sinabs
modules (``dynapcnn_layer``, ``discretize``, ``mapping``) without running that package's
``__init__``, and checks that samna stays unimported.

Run: ``.venv/bin/python benchmarks/bench_mapper.py``
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

from mapper import MappingError, get_chip, map_model
from snnlib import SpikingLayer, SumPool2d

CHANNELS = [2, 8, 16, 16, 32, 32, 64, 64, 64]
INPUT = (2, 64, 64)


def nine_layers(spiking) -> nn.Sequential:
    """9 conv layers, 64x64 input, pooling after layers 1, 3, 5 and 7 (3x3 kernels)."""
    layers, c = [], INPUT[0]
    for i, f in enumerate(CHANNELS):
        layers += [nn.Conv2d(c, f, 3, padding=1, bias=False), spiking()]
        if i in (0, 2, 4, 6):
            layers.append(SumPool2d(2))
        c = f
    return nn.Sequential(*layers)


def best_of(fn, repeat=7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ours() -> tuple[float, float]:
    torch.manual_seed(0)
    model = nine_layers(lambda: SpikingLayer(1.0, -1.0))
    mapped = best_of(lambda: map_model(model, INPUT).config.to_json())
    bad = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), SpikingLayer(), nn.Conv2d(32, 1100, 17, stride=3), SpikingLayer())

    def failing():
        try:
            map_model(bad, (16, 64, 64))
        except MappingError:
            return
        raise AssertionError("expected a MappingError")
    return mapped, best_of(failing)


def sinabs_mapping() -> float:
    import sinabs
    import sinabs.layers as sl

    pkg_dir = Path(sinabs.__file__).parent / "backend" / "dynapcnn"
    stub = types.ModuleType("sinabs.backend.dynapcnn")
    stub.__path__ = [str(pkg_dir)]  # skip the package __init__, which imports samna
    sys.modules["sinabs.backend.dynapcnn"] = stub
    from sinabs.backend.dynapcnn.dynapcnn_layer import DynapcnnLayer
    from sinabs.backend.dynapcnn.mapping import LayerConstraints, get_valid_mapping
    assert "samna" not in sys.modules, "samna was imported"
    torch.manual_seed(0)
    model = nine_layers(lambda: sl.IAFSqueeze(batch_size=1, min_v_mem=-1.0))
    constraints = [LayerConstraints(c.kernel_words, c.neuron_words, c.bias_words)
                   for c in get_chip("speck2f").cores.values()]

    def run():
        layers, shape, mods, i = {}, INPUT, list(model), 0
        while i < len(mods):
            conv, spk, pool = mods[i], mods[i + 1], [[1, 1]]
            i += 2
            if i < len(mods) and isinstance(mods[i], SumPool2d):
                pool, i = [[2, 2]], i + 1
            layer = DynapcnnLayer(conv, spk, shape, pool, discretize=True)
            layers[len(layers)] = layer
            f, h, w = layer.get_neuron_shape()
            shape = (f, h // pool[0][0], w // pool[0][1])
        return get_valid_mapping(layers, constraints)
    result = run()
    assert len(result) == 9
    return best_of(run)


if __name__ == "__main__":
    mapped, failing = ours()
    print(f"spikeflash map_model, 9 layers -> JSON : {mapped * 1e3:8.1f} ms")
    print(f"spikeflash map_model, failing model    : {failing * 1e3:8.1f} ms")
    reference = sinabs_mapping()
    print(f"sinabs DynapcnnLayer x9 + get_valid_mapping: {reference * 1e3:8.1f} ms")
    print(f"ratio spikeflash / sinabs (mapping)        : {mapped / reference:8.2f}")
