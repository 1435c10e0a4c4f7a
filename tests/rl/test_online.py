"""The online RL seam (rl/online.py): every algorithm on it (GRPO, RLOO) runs with the same composite reward,
monitor, alarms, checkpoints, update check and report, and logs every key the alarms read."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.stages import POLICY_STAGES, RL_STAGES, stage
from tests.conftest import TINY


def sampling_settings(processors) -> dict:
    """The temperature, top-k and top-p a list of logits processors applies, whichever classes carry them."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from common.generation import FastTopP
    found = {"temperature": 1.0, "top_k": None, "top_p": 1.0}
    for p in processors:
        if isinstance(p, TemperatureLogitsWarper):
            found["temperature"] *= p.temperature
        elif isinstance(p, (TopPLogitsWarper, FastTopP)):
            found["top_p"] = min(found["top_p"], p.top_p)
        elif isinstance(p, TopKLogitsWarper):
            found["top_k"] = p.top_k if found["top_k"] is None else min(found["top_k"], p.top_k)
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_each_online_algorithm_trains_through_the_seam_and_logs_what_the_alarms_read(run, tmp_path, monkeypatch, name):
    """Also a contract with TRL's sampling: the processors generate really samples with (our fast nucleus swaps
    TRL's for its own while TRL samples) apply the configured temperature and top-p at every sampling call, and
    TRL's generation config is put back after each."""
    import importlib
    import shutil

    from transformers.generation.utils import GenerationMixin

    from common.config import parse_config
    from common.stage_configs import GRPOArgs
    from rl.monitor import Alarms

    run_dir, _ = run
    runs = tmp_path / "runs"
    for part in ("sft", "rm"):                   # the shared run's SFT policy and reward model, copied
        shutil.copytree(run_dir / part, runs / "t" / part)
    used = []
    original = GenerationMixin._get_logits_processor
    def recording(self, generation_config, *args, **kwargs):
        processors = original(self, generation_config, *args, **kwargs)
        used.append(sampling_settings(processors))
        return processors
    monkeypatch.setattr(GenerationMixin, "_get_logits_processor", recording)
    common = ["--config", TINY, "--runs_dir", str(runs), "--run_name", "t"]
    summary = importlib.import_module(stage(name).module).main(
        common + ["--max_steps", "2", "--logging_steps", "1", "--temperature", "0.7", "--top_p", "0.9"])
    assert len(used) >= 3                          # two training steps, then the held-out samples
    assert all(u["temperature"] == pytest.approx(0.7) and u["top_p"] == pytest.approx(0.9) for u in used), used

    assert summary["algorithm"] == name and summary["steps"] == 2
    assert summary["update_check"]["weights_moved"] and summary["update_check"]["output_change_max"] > 0
    out = runs / "t" / name
    assert (out / "final" / "adapter_config.json").is_file() and (out / "report.md").is_file()
    assert json.loads((out / "summary.json").read_text())["algorithm"] == name

    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    cfg = parse_config(GRPOArgs, stage(name).section, ["--config", TINY])
    missing = [key for key in Alarms(cfg).read_keys() if f"train/{key}" not in tags]
    assert not missing, f"{name} logs no {missing}: those alarms would never fire"
    for component in ("rm_reward", "coverage_reward", "degenerate_penalty"):
        assert f"train/rewards/{component}/mean" in tags


def test_rloo_is_a_policy_stage_and_an_rl_stage_sweeps_can_run():
    assert "rloo" in POLICY_STAGES and "rloo" in RL_STAGES
    assert stage("rloo").section == "grpo"            # it reads GRPO's preset section: same budget, same reward
