"""The three stages end to end on tiny random models and the sample data (configs/tiny.yaml): seconds each."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common.models import load_base_policy, load_policy
from reward.model import HumorRewardModel

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny.yaml")


def scalars(stage_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(stage_dir / "tb"))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_sft_learns_with_eos_and_reports_stop_rate(run):
    run_dir, s = run
    sft = s["sft"]
    assert sft["update_check"]["weights_moved"] and sft["eos_token_id"] in sft["stop_token_ids"]
    assert 0.0 <= sft["stop_rate"] <= 1.0 and len(sft["samples"]) == 6
    losses = scalars(run_dir / "sft")["train/loss"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses   # the loss falls
    for name in ("summary.json", "report.md", "config.yaml", "final/lineage.json", "final/adapter_config.json"):
        assert (run_dir / "sft" / name).is_file(), name
    assert json.loads((run_dir / "sft" / "summary.json").read_text())["stop_rate"] == sft["stop_rate"]


def test_trl_keeps_our_eos_at_the_end_of_every_target_inside_the_loss(tmp_path):
    from trl import SFTConfig, SFTTrainer

    from data.loaders import load_headline_demonstrations
    from sft.sft import check_eos_in_targets, sft_dataset

    model, tok = load_base_policy("tiny:llama")
    demos = load_headline_demonstrations(["en"])[:4]
    trainer = SFTTrainer(model=model, processing_class=tok, train_dataset=sft_dataset(demos, tok),
                         args=SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_length=512))
    for ex in trainer.train_dataset:
        assert ex["input_ids"][-1] == tok.eos_token_id and ex["labels"][-1] == tok.eos_token_id  # in the loss
        assert ex["labels"][0] == -100                                                           # prompt is not
        assert ex["input_ids"].count(tok.eos_token_id) == 1 and tok.pad_token_id != tok.eos_token_id
    assert check_eos_in_targets(trainer.train_dataset, tok.eos_token_id, 512) == 0
    eos = tok.eos_token_id
    with pytest.raises(RuntimeError, match="does not end with EOS"):
        check_eos_in_targets([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}], eos, 128)
    with pytest.raises(RuntimeError, match="outside the loss"):
        check_eos_in_targets([{"input_ids": [5, 6, eos], "labels": [-100, 6, -100]}], eos, 128)
    assert check_eos_in_targets([{"input_ids": [5, 6, 7], "labels": [5, 6, 7]}], eos, 3) == 1  # truncated


def test_reward_model_metrics_and_wrapper_returns_p_humor(run):
    run_dir, s = run
    held = s["rm"]["held_out"]
    assert set(held) == {"accuracy", "precision", "recall", "f1", "roc_auc"} and s["rm"]["update_check"]["weights_moved"]
    by_lang = s["rm"]["held_out_by_lang"]                 # the same figures per language of the held-out rows
    assert 2 <= len(by_lang) and set(by_lang) <= {"en", "es", "zh"} and all(set(m) == set(held) for m in by_lang.values())
    accuracies = [m["accuracy"] for m in by_lang.values()]
    assert min(accuracies) - 1e-9 <= held["accuracy"] <= max(accuracies) + 1e-9   # overall = a mix of the languages
    rm = HumorRewardModel(run_dir / "rm" / "final", batch_size=2)
    texts = ["I told my cactus a secret.", "The council approved the budget.", "这就是生活！"]
    probs = rm.score(texts)
    enc = rm.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(rm.model(**enc).logits, -1)[:, 1]   # column 1 = humor, never logits[:, 0]
    assert probs == pytest.approx(expected.tolist(), abs=1e-5) and all(0 <= p <= 1 for p in probs)
    assert rm.model.config.id2label[1] == "humor"
    assert "eval/f1" in scalars(run_dir / "rm")


def test_grpo_logs_every_component_and_moves_the_lora(run):
    run_dir, s = run
    g = s["grpo"]
    assert g["steps"] == 3 and g["update_check"]["weights_moved"] and g["reward_first"] is not None
    tags = set(scalars(run_dir / "grpo"))
    for name in ("rm_reward", "coverage_reward", "length_reward", "repetition_penalty"):
        assert f"train/rewards/{name}/mean" in tags, name
    for tag in ("train/reward", "train/reward_std", "train/kl", "train/loss", "train/completions/mean_length",
                "train/rewards/words/coverage_reward/mean", "train/rewards/headline/rm_reward/mean"):
        assert tag in tags, tag
    lineage = json.loads((run_dir / "grpo" / "final" / "lineage.json").read_text())
    assert lineage["parents"] == [str(run_dir / "sft" / "final")]
    model, _ = load_policy("tiny:llama", [run_dir / "sft" / "final", run_dir / "grpo" / "final"])
    assert model is not None


def test_adapter_on_the_wrong_base_is_refused(run, tmp_path):
    run_dir, _ = run
    import shutil
    bad = tmp_path / "adapter"
    shutil.copytree(run_dir / "sft" / "final", bad)
    lineage = json.loads((bad / "lineage.json").read_text())
    lineage["base_fingerprint"] += 1.0
    (bad / "lineage.json").write_text(json.dumps(lineage))
    with pytest.raises(ValueError, match="trained on base"):
        load_policy("tiny:llama", [bad])


def test_score_cli_prints_components_and_total(run, capsys):
    from reward.score import main as score_main

    run_dir, _ = run
    rows = score_main(["--config", TINY, "--reward_model", str(run_dir / "rm" / "final"), "--prompt_type", "words",
                       "--words", "cactus,lawsuit", "--lang", "en", "--text", "The cactus filed a lawsuit.",
                       "--text", "la la la la la la la la"])
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(json.dumps(rows))
    w = rows[0]["weights"]
    for r in rows:
        assert r["total"] == pytest.approx(sum(w[k] * r[k] for k in w))
    assert rows[0]["coverage_reward"] == 1.0 and rows[1]["repetition_penalty"] > 0.5


def test_a_finished_run_is_never_overwritten(run):
    from sft.sft import main as sft

    run_dir, _ = run
    with pytest.raises(FileExistsError, match="never overwrites"):
        sft(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", "t", "--max_steps", "1"])


@pytest.mark.e2e
def test_learning_rate_zero_fails_loudly(tmp_path):
    from sft.sft import main as sft

    with pytest.raises(RuntimeError, match="no trainable parameter changed"):
        sft(["--config", TINY, "--runs_dir", str(tmp_path), "--learning_rate", "0", "--max_steps", "2"])
    assert not (tmp_path / "default" / "sft" / "summary.json").exists()      # no summary: the stage did not finish


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["rm", "grpo"])
def test_frozen_adapters_fail_loudly(run, tmp_path, monkeypatch, stage):
    """The seed's unsloth PPO run: the optimizer ran, the weights never changed. Simulated by an optimizer whose
    step does nothing."""
    from reward.train_rm import main as train_rm
    from rl.grpo import main as grpo

    run_dir, _ = run
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    args = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "frozen", "--max_steps", "2"]
    if stage == "grpo":
        args += ["--sft_adapter", str(run_dir / "sft" / "final"), "--reward_model", str(run_dir / "rm" / "final")]
    with pytest.raises(RuntimeError, match=f"{stage}: no trainable parameter changed in 2 steps"):
        (train_rm if stage == "rm" else grpo)(args)


def test_update_sentinel_records_weight_and_output_change(run):
    _, s = run
    for stage in ("sft", "rm", "grpo"):
        check = s[stage]["update_check"]
        assert check["weights_moved"] and check["moved_tensors"] == check["trainable_tensors"] > 0, stage
        assert check["relative_change"] > 0 and check["output_change_max"] > 0 and check["probe_inputs"] == 4, stage


def test_sentinel_fails_when_weights_move_but_outputs_do_not():
    from common.update_check import UpdateSentinel, causal_lm_probe
    from data.loaders import sample_texts

    model, tok = load_base_policy("tiny:llama")
    unused = torch.nn.Parameter(torch.zeros(3))      # trainable, but not part of the forward pass
    model.register_parameter("unused", unused)
    for p in model.parameters():
        p.requires_grad_(False)
    unused.requires_grad_(True)
    sentinel = UpdateSentinel(model, causal_lm_probe(tok, sample_texts()[:4]))
    with torch.no_grad():
        unused += 1.0
    with pytest.raises(RuntimeError, match="outputs on 4 fixed inputs did not change"):
        sentinel.check(model, "sft", 1)


@pytest.mark.e2e
def test_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, capsys):
    from sft.sft import main as sft

    args = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r", "--save_steps", "2"]
    sft(args + ["--max_steps", "2"])
    stage = tmp_path / "r" / "sft"
    (stage / "summary.json").unlink()          # as if it had died after its checkpoint
    with pytest.raises(ValueError, match="max_steps: 2 -> 4.*--resume_changed true"):     # a different run now
        sft(args + ["--max_steps", "4"])
    summary = sft(args + ["--max_steps", "4", "--resume_changed", "true"])
    assert f"resuming from {stage / 'checkpoint-2'}" in capsys.readouterr().out and summary["steps"] == 4
    assert summary["resumes"][0]["changed"] == {"max_steps": {"was": 2, "now": 4}}
