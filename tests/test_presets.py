"""GPU presets resolve on a machine without their weights (--dry_run), and GPU-only flags fail clearly on CPU."""

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(str(p) for p in (ROOT / "configs").glob("gpu_*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_gpu_presets_dry_run_every_stage(preset, data_dir):
    from reward.train_rm import main as rm
    from rl.grpo import main as grpo
    from rl.pgcl import main as pgcl
    from rl.ppo import main as ppo
    from sft.sft import main as sft

    common = ["--config", preset, "--data_dir", str(data_dir), "--dry_run", "true"]
    plans = {"sft": sft(common), "rm": rm(common), "grpo": grpo(common), "ppo": ppo(common),
             "pgcl": pgcl(common)}
    assert plans["sft"]["labeled_rows"] > 1000 and plans["grpo"]["prompts"] > 100
    assert plans["pgcl"]["puns"] > 100 if "pun" in preset else True
    assert "rm_reward" in plans["grpo"]["reward_components"]
    assert plans["sft"]["config"]["policy_model"].startswith("Qwen/")
    assert not any((ROOT / "runs" / plans["sft"]["config"]["run_name"]).glob("*/summary.json"))   # nothing written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
@pytest.mark.parametrize("flag", ["use_unsloth", "use_vllm"])
def test_gpu_only_flags_fail_clearly_on_cpu(flag, tmp_path):
    from rl.grpo import main as grpo

    with pytest.raises(SystemExit, match=f"{flag}: needs a CUDA GPU"):
        grpo(["--config", str(ROOT / "configs" / "tiny.yaml"), "--runs_dir", str(tmp_path), f"--{flag}", "true"])
