"""Never lose a run: kills mid-save, two processes on one run, resumes with other settings, summaries
that survive resumes, and bad input refused with its place."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[2]

DIE_IN_SAVE = """
import os, sys
from transformers import Trainer
save_rng = Trainer._save_rng_state
def die_at_step_4(self, output_dir):      # killed inside the save of checkpoint-4: model written, state not
    if self.state.global_step == 4:
        os._exit(9)
    return save_rng(self, output_dir)
Trainer._save_rng_state = die_at_step_4
from sft.sft import main
main(sys.argv[1:])
"""


@pytest.mark.e2e
def test_a_kill_inside_a_checkpoint_save_resumes_to_the_same_end(tmp_path, capsys):
    from sft.sft import main as sft

    args = ["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "4", "--save_steps", "2", "--eval_prompts", "2"]
    killed = subprocess.run([sys.executable, "-c", DIE_IN_SAVE, *args, "--run_name", "killed"], cwd=ROOT,
                            capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr[-2000:]
    stage = tmp_path / "killed" / "sft"
    assert (stage / "checkpoint-4").is_dir() and not (stage / "checkpoint-4" / "trainer_state.json").exists()
    (stage / ".lock").unlink()          # os._exit skips atexit; a dead holder's lock would be taken over anyway
    resumed = sft(args + ["--run_name", "killed"])
    out = capsys.readouterr().out
    assert f"skipping {stage / 'checkpoint-4'}" in out and f"resuming from {stage / 'checkpoint-2'}" in out
    whole = sft(args + ["--run_name", "whole"])
    assert resumed["steps"] == whole["steps"] == 4
    assert resumed["loss_first"] == pytest.approx(whole["loss_first"], rel=1e-4)     # carried from the first segment
    assert resumed["loss_last"] == pytest.approx(whole["loss_last"], rel=1e-2)
    assert resumed["wall_time_s"] > 0 and resumed["resumes"][0]["changed"] == {}


@pytest.mark.e2e
def test_a_second_process_on_the_same_run_stops_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    from sft.sft import entry
    from sft.sft import main as sft

    stage = tmp_path / "r" / "sft"
    stage.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (stage / ".lock").write_text(str(sleeper.pid))
        args = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r", "--max_steps", "2", "--eval_prompts", "2"]
        with pytest.raises(SystemExit) as stopped:            # a user error: one line, exit 2, no traceback
            entry(args)
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.startswith("error: ") and f"in use by process {sleeper.pid}" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 2       # the error and the --debug hint
    finally:
        sleeper.kill()
        sleeper.wait()
    summary = sft(args)                           # the holder is dead now: its lock is taken over
    assert f"left by process {sleeper.pid}, which is no longer running" in capsys.readouterr().out
    assert summary["steps"] == 2 and not (stage / ".lock").exists()


@pytest.mark.e2e
def test_alarms_fired_before_a_resume_stay_in_the_summary(run, tmp_path):
    import shutil

    from rl.grpo import main as grpo

    run_dir, _ = run
    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "4", "--save_steps", "2", "--eval_prompts", "2",
              "--sft_adapter", str(run_dir / "sft" / "final"), "--reward_model", str(run_dir / "rm" / "final")]
    whole = grpo(common + ["--run_name", "whole"])
    assert whole["alarms"]                                   # a random tiny policy drifts out of script at once
    broken = tmp_path / "broken" / "grpo"
    broken.mkdir(parents=True)
    shutil.copytree(tmp_path / "whole" / "grpo" / "checkpoint-2", broken / "checkpoint-2")   # as if killed after it
    shutil.copy(tmp_path / "whole" / "grpo" / "config.yaml", broken / "config.yaml")
    resumed = grpo(common + ["--run_name", "broken"])
    assert [a["step"] for a in resumed["alarms"]] == [a["step"] for a in whole["alarms"]]
    assert resumed["reward_first"] == pytest.approx(whole["reward_first"])


@pytest.mark.e2e
def test_submit_validate_exits_non_zero_on_a_broken_file(tmp_path):
    tsv = tmp_path / "in.tsv"
    tsv.write_text("id\tword1\tword2\theadline\nen_1\t-\t-\tCat elected mayor\nen_2\t-\t-\tDog sues cat\n")
    sub = tmp_path / "sub.tsv"
    sub.write_text("id\ttext\nen_1\tThe cat won by a whisker.\n")            # en_2 missing
    result = subprocess.run([sys.executable, "eval/submit.py", "--validate", str(sub), "--tsv", str(tsv)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "id en_2 missing" in result.stdout


@pytest.mark.parametrize("flag, value, message", [
    ("kl_beta", "-1", "kl_beta must be >= 0"), ("max_steps", "0", "max_steps must be >= 1"),
    ("temperature", "0", "temperature must be > 0"), ("top_p", "1.5", "top_p must be in \\(0, 1\\]"),
])
def test_nonsense_values_are_refused_before_anything_loads(flag, value, message):
    from common.config import parse_config
    from common.stage_configs import GRPOArgs

    with pytest.raises(ValueError, match=message):
        parse_config(GRPOArgs, "grpo", [f"--{flag}", value])


def test_text_files_that_are_not_utf8_or_hold_control_characters_are_refused_with_their_place(tmp_path):
    from data.loaders import load_labeled, read_task_tsv

    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefftext,label\nA joke.,1\n".encode("utf-8"))
    assert load_labeled([str(bom)], langs=["en"])[0].text == "A joke."           # a BOM is fine
    (tmp_path / "latin1.tsv").write_bytes("id\tword1\tword2\theadline\nen_1\t-\t-\tCaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.tsv:2: not UTF-8 \\(byte 0xe9\\)"):
        read_task_tsv(tmp_path / "latin1.tsv")
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\nCaf\xe9 joke,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.csv:2: not UTF-8 .*encoding: latin-1"):
        load_labeled([str(latin)])
    assert load_labeled([{"path": str(latin), "encoding": "latin-1", "lang": "en"}], langs=["en"])[0].text == "Café joke"
    (tmp_path / "nul.csv").write_text("text,label\nok,1\nbad\x00text,0\n")
    with pytest.raises(ValueError, match="nul.csv:3: 'text' holds the control character '\\\\x00'"):
        load_labeled([str(tmp_path / "nul.csv")])


def test_empty_and_punctuation_only_completions_never_earn_a_positive_total():
    from common.stage_configs import RewardArgs
    from reward.composite import build_components, score

    class GenerousRM:
        def score(self, texts, instructions=None, themes=None):
            return [1.0] * len(texts)                       # the worst case: the RM loves everything

    cfg = RewardArgs()                                      # the default weights
    texts = ["", "   ", "。。。", "!!!", "...", "The cactus filed a lawsuit."]
    for prompt_type, words in (("words", [["cactus", "lawsuit"]] * 6), ("headline", [None] * 6)):
        out = score(build_components(cfg, GenerousRM()), texts, [prompt_type] * 6, cfg.reward_weights,
                    words=words, lang=["en"] * 5 + ["en"], finished=[True] * 6)
        assert all(total < 0 for total in out["total"][:5]), (prompt_type, out["total"])
        assert out["total"][5] > 0


def test_a_run_of_one_character_is_repetition():
    from reward.components import make_repetition_penalty

    assert make_repetition_penalty(3)(["a" * 10000, "Soooooo good", "So good"], lang="en") == pytest.approx(
        [1.0, 6 / 11, 0.0])      # "Soooooogood": 6 of 11 characters in a run


# settings that say only where a run writes and how it logs, saves or reacts to an alarm: a resumed run may change
# them; every other field of a stage's config changes what is trained
WHERE_AND_HOW_IT_LOGS = {"logging_steps", "save_steps", "log_samples_steps", "dry_run", "resume_changed", "alarm_stop",
                         "output_dir", "runs_dir", "run_name"}


def _another_value(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, (list, tuple)):
        return [*value, "other"]
    if isinstance(value, dict):
        return {**value, "other": 1}
    return "other"                                  # None


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["sft", "rm", "grpo", "ppo", "dpo", "pgcl"])
def test_resuming_with_any_training_setting_changed_is_refused(stage, tmp_path):
    """Every field of every training stage's config but WHERE_AND_HOW_IT_LOGS, changed on its own before a resume,
    is refused with its old and new value (the learning rate, the seed, a reward weight, a TRL pass-through...)."""
    import copy
    import dataclasses

    from common.rundir import STAGE_STATE, prepare_stage_dir, release_lock
    from common.stages import stage as find_stage

    cfg = find_stage(stage).config(output_dir=str(tmp_path / stage))
    out, resume = prepare_stage_dir(cfg, stage)             # a fresh run: writes config.yaml
    release_lock(out)
    assert resume is None
    checkpoint = out / "checkpoint-3"
    checkpoint.mkdir()
    for name in ("trainer_state.json", STAGE_STATE):        # a complete checkpoint: the next start resumes it
        (checkpoint / name).write_text("{}")
    names = [f.name for f in dataclasses.fields(cfg)]
    assert "learning_rate" in names and "seed" in names
    for name in names:
        if name in WHERE_AND_HOW_IT_LOGS:
            continue
        changed = copy.copy(cfg)
        setattr(changed, name, _another_value(getattr(cfg, name)))
        with pytest.raises(ValueError, match=rf"settings that change the training \({name}: "):
            prepare_stage_dir(changed, stage)
        release_lock(out)
    for name in WHERE_AND_HOW_IT_LOGS - {"output_dir", "runs_dir", "run_name"}:
        if name in names:                                    # these may change: the run resumes
            changed = copy.copy(cfg)
            setattr(changed, name, _another_value(getattr(cfg, name)))
            assert prepare_stage_dir(changed, stage)[1] == str(checkpoint), name
            release_lock(out)
