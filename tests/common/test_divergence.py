"""Every row accounted for: a training whose loss, gradients, weights or outputs go nan or infinite stops at once
in one line naming the stage and the step, exits non-zero, writes no final model, sets aside the checkpoints it
may have spoilt and says which one to resume from with a lower learning rate (a resume takes that rate)."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl

from common.cli import DIVERGED_EXIT, TrainingDiverged, cli
from common.rundir import STAGE_STATE, DivergenceGuard, DivergenceWatch
from common.update_check import UpdateSentinel, check_weights_moved, trainable_snapshot
from tests.conftest import TINY

NAN, INF = float("nan"), float("inf")


# ---------------------------------------------------------------- the checks, on hand-made figures


def _guard(stage_dir: Path, stage: str | None = None, step: int = 0, probe=None) -> DivergenceGuard:
    guard = DivergenceGuard(stage, probe)
    guard.on_train_begin(_args(stage_dir), SimpleNamespace(global_step=step), TrainerControl())
    return guard


def _args(stage_dir: Path):
    return SimpleNamespace(output_dir=str(stage_dir), learning_rate=1e30)


def _log(guard: DivergenceGuard, stage_dir: Path, step: int, logs: dict) -> None:
    guard.on_log(_args(stage_dir), SimpleNamespace(global_step=step), TrainerControl(), logs=logs)


def _checkpoint(stage_dir: Path, step: int) -> Path:
    """A checkpoint folder complete as a Trainer's (trainer_state.json + ours)."""
    folder = stage_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    (folder / STAGE_STATE).write_text(json.dumps({"elapsed_s": 1.0, "alarms": []}))
    return folder


def test_finite_logs_pass_and_a_nan_or_infinite_loss_or_grad_norm_stops_naming_stage_and_step(tmp_path):
    stage_dir = tmp_path / "t" / "sft"
    guard = _guard(stage_dir)
    _log(guard, stage_dir, 1, {"loss": 2.5, "grad_norm": 0.7, "learning_rate": 1e30})
    _log(guard, stage_dir, 2, {"train_runtime": 3.0, "train_loss": 2.4})      # the end-of-training summary
    with pytest.raises(TrainingDiverged, match=r"^sft: diverged at step 3 \(loss nan; grad_norm 0\.7\); lower the "
                                               r"learning rate \(now 1e\+30\) and run again"):
        _log(guard, stage_dir, 3, {"loss": NAN, "grad_norm": 0.7})
    with pytest.raises(TrainingDiverged, match=r"sft: diverged at step 4 \(loss 1; grad_norm inf\)"):
        _log(guard, stage_dir, 4, {"loss": 1.0, "grad_norm": INF})
    with pytest.raises(TrainingDiverged, match=r"diverged at step 5 \(loss -inf; grad_norm nan\)"):
        _log(guard, stage_dir, 5, {"loss": -INF, "grad_norm": NAN})


def test_the_stage_is_named_from_its_directory_when_not_given(tmp_path):
    for stage_dir, name in ((tmp_path / "t" / "dpop", "dpop"), (tmp_path / "t" / "pgcl" / "stage1", "pgcl stage1")):
        with pytest.raises(TrainingDiverged, match=rf"^{name}: diverged at step 7 \(loss nan\)"):
            _log(_guard(stage_dir), stage_dir, 7, {"loss": NAN})


def test_weights_gone_bad_force_the_steps_log_cancel_its_save_and_stop_with_its_loss(tmp_path):
    stage_dir = tmp_path / "t" / "rm"
    guard = _guard(stage_dir, stage="rm")
    model = torch.nn.Linear(3, 2)
    control = TrainerControl()
    guard.on_step_end(_args(stage_dir), SimpleNamespace(global_step=1), control, model=model)
    assert not control.should_log and not control.should_save             # finite: the Trainer decides
    with torch.no_grad():
        model.bias[0] = NAN
    control.should_save = True
    guard.on_step_end(_args(stage_dir), SimpleNamespace(global_step=2), control, model=model)
    assert control.should_log and not control.should_save
    with pytest.raises(TrainingDiverged, match=r"^rm: diverged at step 2 \(loss 0\.5; weight norm nan in 1/2 "
                                               r"trainable tensors\)"):
        _log(guard, stage_dir, 2, {"loss": 0.5})


def test_finite_but_overflowing_weights_count_as_diverged(tmp_path):
    """A learning rate of 1e30 leaves the weights finite, about 1e30: no forward pass survives them."""
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(1e30)
    found = DivergenceWatch("sft", tmp_path, 1e30).problems(models=[model])
    assert found == {"weight norm": "inf in 1/2 trainable tensors"}


def test_a_policy_whose_outputs_went_non_finite_stops_before_it_is_sampled_from(tmp_path):
    model = torch.nn.Linear(3, 2)
    outputs = torch.tensor([0.1, -0.2])
    watch = DivergenceWatch("grpo", tmp_path, 1e-3, probe=lambda m: outputs)
    assert watch.problems(models=[model]) == {}
    outputs[1] = NAN
    with pytest.raises(TrainingDiverged, match=r"grpo: diverged at step 4 \(loss 0\.1; outputs on fixed inputs "
                                               r"non-finite on 1/2\)"):
        watch.check(4, {"loss": 0.1}, [model])


def test_the_error_names_the_last_good_checkpoint_and_sets_aside_those_after_it(tmp_path):
    stage_dir = tmp_path / "t" / "sft"
    for step in (1, 2, 3):
        _checkpoint(stage_dir, step)
    watch = DivergenceWatch("sft", stage_dir, 0.5)
    watch.check(2, {"loss": 1.0})             # the loss of step 2 was computed on the weights of checkpoint-1
    with pytest.raises(TrainingDiverged) as stopped:
        watch.check(4, {"loss": NAN})
    message = str(stopped.value)
    assert message.startswith("sft: diverged at step 4 (loss nan); lower the learning rate (now 0.5) and resume from "
                              f"{stage_dir / 'checkpoint-1'}: run again with a lower --learning_rate and "
                              "--resume_changed true")
    assert "diverged-checkpoint-2, diverged-checkpoint-3: set aside" in message and "\n" not in message
    assert sorted(p.name for p in stage_dir.iterdir()) == ["checkpoint-1", "diverged-checkpoint-2",
                                                          "diverged-checkpoint-3"]


def test_a_resumed_run_counts_its_checkpoint_as_good(tmp_path):
    stage_dir = tmp_path / "t" / "rm"
    _checkpoint(stage_dir, 4)
    guard = _guard(stage_dir, step=4)
    with pytest.raises(TrainingDiverged, match=r"resume from .*checkpoint-4: run again"):
        _log(guard, stage_dir, 5, {"loss": INF})
    assert (stage_dir / "checkpoint-4").is_dir()


def test_the_update_check_refuses_non_finite_weights_an_infinite_change_and_non_finite_outputs():
    model = torch.nn.Linear(3, 2)
    before = trainable_snapshot(model)
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias[1] = INF
    with pytest.raises(TrainingDiverged, match=r"^rm: diverged at step 5 \(weight norm inf in 1/2 trainable tensors\); "
                                               r"lower the learning rate"):
        check_weights_moved(model, before, "rm", 5)
    model = torch.nn.Linear(3, 2)
    before = trainable_snapshot(model)
    before["weight"][0, 0] = INF                    # finite weights now, so only the change itself is not finite
    with pytest.raises(TrainingDiverged, match=r"rm: diverged at step 5 \(relative weight change nan\)"):
        check_weights_moved(model, before, "rm", 5)
    model = torch.nn.Linear(3, 2)
    sentinel = UpdateSentinel(model, lambda m: m(torch.full((1, 3), 1e20))[0])
    with torch.no_grad():
        model.weight[0, 0] = 1e19                   # every weight norm stays finite; one output overflows
    with pytest.raises(TrainingDiverged, match=r"sft: diverged at step 2 \(outputs on fixed inputs non-finite on 1/2\)"):
        sentinel.check(model, "sft", 2)


def test_cli_reports_a_divergence_in_one_line_with_its_own_exit_status(capsys):
    def main(argv):
        raise TrainingDiverged("sft: diverged at step 3 (loss nan); lower the learning rate")

    with pytest.raises(SystemExit) as stopped:
        cli(main)([])
    err = capsys.readouterr().err
    assert stopped.value.code == DIVERGED_EXIT != 0 and stopped.value.code != 2
    assert err.splitlines()[1] == "error: sft: diverged at step 3 (loss nan); lower the learning rate"
    assert "Traceback" not in err


# ---------------------------------------------------------------- stages on the tiny models


def _stopped(entry, argv, capsys) -> str:
    """The one error line of a stage run that must diverge (exit DIVERGED_EXIT)."""
    with pytest.raises(SystemExit) as stopped:
        entry(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == DIVERGED_EXIT, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    return errors[0].removeprefix("error: ")


def test_a_reward_model_trained_at_lr_1e30_stops_at_its_first_step_without_a_final_model(tmp_path, capsys):
    from reward.train_rm import entry

    line = _stopped(entry, ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r", "--learning_rate",
                            "1e30", "--max_steps", "6", "--save_steps", "2"], capsys)
    assert line.startswith("rm: diverged at step 1 (") and "weight norm inf" in line, line
    assert "lower the learning rate (now 1e+30) and run again" in line
    assert not (tmp_path / "r" / "rm" / "final").exists() and not (tmp_path / "r" / "rm" / "summary.json").exists()
    assert not list((tmp_path / "r" / "rm").glob("checkpoint-*"))


def test_a_ranking_reward_model_trained_at_lr_1e30_stops_likewise(tmp_path, capsys):
    from reward.train_rm import entry

    line = _stopped(entry, ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r", "--rm_objective",
                            "rating", "--learning_rate", "1e30", "--max_steps", "4"], capsys)
    assert line.startswith("rm_rating: diverged at step 1 ("), line
    assert not (tmp_path / "r" / "rm_rating" / "final").exists()


def _nan_loss_from_step(step: int):
    """SFTTrainer.compute_loss with the loss made nan from the given optimizer step on."""
    from trl import SFTTrainer

    compute_loss = SFTTrainer.compute_loss

    def poisoned(self, *args, **kwargs):
        loss = compute_loss(self, *args, **kwargs)
        value = loss[0] if isinstance(loss, tuple) else loss
        poisoned_value = value * NAN if self.state.global_step + 1 >= step else value
        return (poisoned_value, *loss[1:]) if isinstance(loss, tuple) else poisoned_value
    return poisoned


@pytest.mark.e2e
def test_sft_stops_at_the_nan_step_keeps_the_good_checkpoint_and_resumes_from_it_at_the_lower_rate(tmp_path, capsys,
                                                                                                 monkeypatch):
    from trl import SFTTrainer

    from sft.sft import entry
    from sft.sft import main as sft

    stage = tmp_path / "s" / "sft"
    argv = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "s", "--max_steps", "4", "--save_steps", "1",
            "--eval_prompts", "2"]
    with monkeypatch.context() as patch:
        patch.setattr(SFTTrainer, "compute_loss", _nan_loss_from_step(3))
        line = _stopped(entry, argv, capsys)
    assert line.startswith("sft: diverged at step 3 (loss nan; grad_norm nan; weight norm nan in "), line
    # the loss of step 2 was finite, so checkpoint-1's weights are good; checkpoint-2's gave the nan
    assert f"resume from {stage / 'checkpoint-1'}: run again with a lower --learning_rate and --resume_changed true" \
        in line and "diverged-checkpoint-2: set aside" in line
    assert not (stage / "final").exists() and not (stage / "checkpoint-3").exists()
    assert (stage / "checkpoint-1").is_dir() and (stage / "diverged-checkpoint-2").is_dir()

    summary = sft(argv + ["--learning_rate", "1e-3", "--resume_changed", "true"])
    assert summary["steps"] == 4 and (stage / "final").is_dir()
    assert summary["resumes"][0]["changed"]["learning_rate"] == {"was": 3e-3, "now": 1e-3}
    history = json.loads((stage / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    rates = {h["step"]: h["learning_rate"] for h in history if "learning_rate" in h}
    assert rates[1] == pytest.approx(3e-3)                     # the first segment, at the rate it started with
    assert rates[2] == pytest.approx(1e-3 * 3 / 4) and rates[4] == pytest.approx(1e-3 * 1 / 4)   # the new rate
    assert all(math.isfinite(h["loss"]) for h in history if "loss" in h)


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory) -> Path:
    """An SFT adapter as the SFT stage leaves one (lineage.json included), untrained: the policy stages' start."""
    from peft import get_peft_model

    from common.models import fingerprint, load_base_policy, save_stage_adapter
    from common.stage_configs import SFTArgs
    from common.training import lora_config

    directory = tmp_path_factory.mktemp("sft") / "final"
    base, tokenizer = load_base_policy("tiny:llama")
    base_fingerprint = fingerprint(base)
    save_stage_adapter(directory, get_peft_model(base, lora_config(SFTArgs())), tokenizer, "tiny:llama",
                       base_fingerprint=base_fingerprint)
    return directory


@pytest.mark.e2e
@pytest.mark.parametrize("loss", ["dpo", "dpop"])
def test_dpo_and_dpop_at_lr_1e30_stop_at_their_first_step_without_a_final_adapter(loss, sft_adapter, tmp_path, capsys):
    from rl.dpo import entry

    line = _stopped(entry, ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "d", "--loss", loss,
                            "--sft_adapter", str(sft_adapter), "--learning_rate", "1e30", "--save_steps", "1"], capsys)
    assert line.startswith(f"{loss}: diverged at step 1 (") and "weight norm inf" in line, line
    assert not (tmp_path / "d" / loss / "final").exists() and not list((tmp_path / "d" / loss).glob("checkpoint-*"))


def test_ppo_at_lr_1e30_stops_in_its_first_iteration_without_a_step_on_the_nan_or_a_final_adapter(sft_adapter, tmp_path,
                                                                                                 capsys, monkeypatch):
    import rl.ppo as ppo

    steps = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    monkeypatch.setattr(ppo, "build_scorer", lambda cfg: {})          # no reward model needed: scores are canned
    monkeypatch.setattr(ppo, "score", lambda fns, texts, **kw: {"total": [0.5] * len(texts)})
    line = _stopped(ppo.entry, ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "p", "--sft_adapter",
                                str(sft_adapter), "--learning_rate", "1e30", "--max_steps", "3", "--save_steps", "1"],
                    capsys)
    assert line.startswith("ppo: diverged at step 1 (loss nan; grad_norm nan; weight norm inf in "), line
    assert "lower the learning rate (now 1e+30) and run again" in line
    assert len(steps) == 1                   # the first minibatch's step blew the weights up; no step on the nan
    stage = tmp_path / "p" / "ppo"
    assert not (stage / "final").exists() and not list(stage.glob("checkpoint-*"))


def test_a_resumed_ppo_optimizer_takes_the_configured_learning_rates():
    """The optimizer state of a checkpoint brings back the rates it was trained at; a resume with a lowered
    --learning_rate (--resume_changed true) must run at the lowered one."""
    from common.stage_configs import PPOArgs
    from rl.ppo import take_learning_rates

    def optimizer(policy_rate, value_rate):
        return torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.ones(2))], "lr": policy_rate},
                                  {"params": [torch.nn.Parameter(torch.ones(1))], "lr": value_rate}])

    resumed = optimizer(1e-3, 1e-3)
    resumed.load_state_dict(optimizer(1e30, 5e29).state_dict())
    assert [g["lr"] for g in resumed.param_groups] == [1e30, 5e29]
    take_learning_rates(resumed, PPOArgs(learning_rate=1e-3, value_learning_rate=2e-3))
    assert [g["lr"] for g in resumed.param_groups] == [1e-3, 2e-3]
