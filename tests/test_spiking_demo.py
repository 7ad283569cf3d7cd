"""backend.demo: the interim demo simulates a small snnlib network and prints spike counts."""

import re

from backend.demo import run_demo


def test_demo_prints_spike_counts_per_spiking_layer(capsys):
    assert run_demo(time_steps=20) == 0
    out = capsys.readouterr().out
    counts = {name: int(n) for name, n in re.findall(r"^(spiking\d): (\d+) spikes", out, re.MULTILINE)}
    assert set(counts) == {"spiking1", "spiking2"}
    assert all(n > 0 for n in counts.values())
    assert re.search(r"^input: \d+ spikes over 20 steps", out, re.MULTILINE)
