"""examples/train_conv_snn.py under torchrun with 2 CPU processes (gloo): DDP keeps the ranks'
weights equal while each trains on its own shard, and the loss falls."""

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_two_cpu_ranks_keep_equal_weights_and_the_loss_falls(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "examples" / "train_conv_snn.py"), "--max-steps", "12", "--batch-size", "16",
         "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, weight in ranks[0]["weights"].items():
        assert torch.equal(weight, ranks[1]["weights"][name]), name
    for rank in ranks:
        losses = rank["losses"]
        assert len(losses) == 12 and sum(losses[-4:]) < 0.7 * sum(losses[:4])
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank saw its own shard
    assert "test accuracy" in done.stdout
