"""GRPO in two processes (gloo on CPU), as `accelerate launch --config_file configs/accelerate/ddp.yaml` runs it
on two GPUs: both ranks train the same replica, rank 0 alone writes checkpoints, TensorBoard and the summary.

accelerate 1.15's `accelerate launch --cpu --num_processes 2` starts a single process (several CPU processes need
mpirun there), so the test starts the two ranks with torchrun, which accelerate's multi-GPU launcher wraps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_grpo_two_processes_train_together_and_write_once(run, tmp_path):
    run_dir, _ = run
    out = tmp_path / "grpo"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29561",
           str(ROOT / "rl" / "grpo.py"), "--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name",
           run_dir.name, "--output_dir", str(out), "--max_steps", "2", "--save_steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("[grpo] weights moved") == 2, proc.stdout[-3000:]         # both ranks trained
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 2 and summary["update_check"]["weights_moved"]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    writers = {p.name.split(".")[-2] for p in (out / "tb").iterdir()}                  # events.out.tfevents.T.host.PID.N
    assert len(writers) == 1, writers                                                  # one process wrote TensorBoard
    assert (out / "final" / "adapter_model.safetensors").is_file()
