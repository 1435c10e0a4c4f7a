"""GPU presets resolve on a machine without their weights (--dry_run), and GPU-only flags fail clearly on CPU."""

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(str(p) for p in (ROOT / "configs").glob("gpu_*.yaml"))


@pytest.mark.e2e
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


def _shipped_reward_weights() -> list[tuple[str, object]]:
    """(where, reward_weights) of every weighting the project ships: the named presets and every reward_weights
    value anywhere in a YAML file under configs/ (presets, stage sections, sweep settings)."""
    import yaml

    from common.stage_configs import REWARD_WEIGHT_PRESETS

    found = [(f"preset {name}", name) for name in REWARD_WEIGHT_PRESETS]

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reward_weights":
                    found.append((where, value))
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")), str(path.relative_to(ROOT)))
    return found


def test_every_shipped_weighting_has_penalties_that_lower_the_total():
    """Each weighting the project ships is accepted by the config (a *_penalty weighted > 0 or a *_reward < 0 is
    refused), and in each, for each prompt type, garbage appended to a clean joke lowers the total."""
    from common.stage_configs import RewardArgs
    from reward.composite import COMPONENTS, MODEL_COMPONENTS, score

    shipped = _shipped_reward_weights()
    assert len(shipped) >= 6 and any("sweeps" in where for where, _ in shipped)
    clean = "The cactus filed a lawsuit against the desert for emotional damages."
    garbage = clean + " tolua createStackNavigatorFecha /******** x2y {{}} ;;"
    for where, weights in shipped:
        cfg = RewardArgs(reward_weights=weights)
        names = {n for per_type in cfg.reward_weights.values() for n in per_type}
        constant = lambda completions, **kw: [0.8] * len(completions)      # a model's score: the same for both texts
        fns = {n: constant if n in MODEL_COMPONENTS or n.startswith("ensemble") else COMPONENTS[n](cfg, None)
               for n in names}
        for prompt_type, per_type in cfg.reward_weights.items():
            for name, w in per_type.items():
                assert not (name.endswith("_penalty") and w > 0), (where, prompt_type, name, w)
            words = [["cactus", "lawsuit"]] * 2 if prompt_type == "words" else [None, None]
            out = score(fns, [clean, garbage], [prompt_type] * 2, cfg.reward_weights, lang=["en", "en"], words=words,
                        finished=[True, True], instruction=["", ""])
            if "gibberish_penalty" in per_type:
                assert out["gibberish_penalty"][1] > out["gibberish_penalty"][0], where
                assert out["total"][1] < out["total"][0], (where, prompt_type, out["total"])


@pytest.mark.parametrize("weights, message", [
    ({"headline": {"rm_reward": 1.0, "gibberish_penalty": 0.2}}, "gibberish_penalty: 0.2 has the wrong sign"),
    ({"words": {"coverage_reward": -0.5}}, "coverage_reward: -0.5 has the wrong sign"),
    ({"words": {"coverage_reward": float("nan")}}, "must be a finite number"),
    ({"words": {"coverage_reward": "0.5"}}, "must be a finite number"),
])
def test_a_weight_of_the_wrong_sign_or_kind_is_refused(weights, message):
    from common.stage_configs import RewardArgs

    with pytest.raises(ValueError, match=message):
        RewardArgs(reward_weights=weights)
