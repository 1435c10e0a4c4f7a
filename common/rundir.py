"""A stage's own directory: refuse to overwrite a finished run, hold a lock against a second process, find the
newest complete checkpoint and refuse to resume it with other settings, carry what the summary reports (alarms,
wall time) across resumes, stop a run that diverges (setting aside the checkpoints it may have spoilt), write
summary.json and report.md at the end; and the dry run that resolves everything before any weights load."""

from __future__ import annotations

import atexit
import itertools
import json
import os
import re
import shutil
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

from common.accelerators import check_accelerators
from common.cli import TrainingDiverged
from common.compat import rescale_learning_rate
from common.config import to_dict
from common.io import atomic_write_text
from common.stages import STAGES
from common.training import is_main_process
from common.update_check import diverged, non_finite, outputs_problem, weight_norm_problem

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
STAGE_STATE = "humor_rl_state.json"      # what a Trainer checkpoint adds for our summary: elapsed time, alarms
# what makes a checkpoint complete, per engine: the HF Trainer's state and ours (StageState writes it after the
# Trainer's save), or our PPO state (the whole checkpoint written atomically)
COMPLETE_WHEN = (("trainer_state.json", STAGE_STATE), ("ppo_state.pt",))
# settings a resumed run may change: how often it logs and saves, what it prints, whether it stops on an alarm
RESUME_FREE = {"logging_steps", "save_steps", "log_samples_steps", "dry_run", "resume_changed", "alarm_stop",
               "output_dir", "runs_dir", "run_name"}
WATCHED_LOGS = ("loss", "grad_norm")         # logged figures whose nan or infinity means the run diverged


def checkpoints(directory: Path) -> list[Path]:
    """Every `checkpoint-<step>` folder in directory, oldest first. Other names (a `.tmp` being written) are not
    checkpoints."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _CHECKPOINT.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def is_complete(checkpoint: Path) -> bool:
    return any(all((checkpoint / name).is_file() for name in names) for names in COMPLETE_WHEN)


def last_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in directory, or None. One cut short by a kill (COMPLETE_WHEN not met) or a
    `.tmp` folder is skipped with a warning naming it, and the run resumes from the one before."""
    found = checkpoints(directory)
    complete = [p for p in found if is_complete(p)]
    newest = complete[-1] if complete else None
    skipped = found[found.index(newest) + 1:] if newest else found          # newer than the one we resume
    skipped += sorted(directory.glob("checkpoint-*.tmp")) if directory.is_dir() else []
    for p in skipped:
        print(f"[resume] skipping {p}: incomplete (a kill while it was being written?)")
    return newest


def start_clock(resume: str | None) -> float:
    """The start time of a stage that resumes: now, minus the wall time its checkpoint had run (0 when fresh)."""
    return time.time() - stage_state(resume)["elapsed_s"]


def stage_state(checkpoint: str | Path | None) -> dict:
    """What a checkpoint carries for the summary (StageState): elapsed_s and alarms; empty for a fresh start."""
    path = Path(checkpoint) / STAGE_STATE if checkpoint else None
    return json.loads(path.read_text()) if path and path.is_file() else {"elapsed_s": 0.0, "alarms": []}


def step_of(checkpoint: Path) -> int:
    return int(_CHECKPOINT.fullmatch(checkpoint.name).group(1))


def set_aside_checkpoints(directory: Path, after: int) -> list[Path]:
    """Rename the checkpoints newer than step `after` to diverged-checkpoint-<step>: they may hold diverged
    weights, and a resume takes the newest checkpoint. They stay for a look; neither our resume nor the Trainer's
    rotation of old checkpoints (both read checkpoint-*) sees them."""
    moved = []
    for checkpoint in checkpoints(directory):
        if step_of(checkpoint) > after:
            target = checkpoint.with_name(f"diverged-{checkpoint.name}")
            if target.exists():                  # left by an earlier diverged run in this directory
                shutil.rmtree(target)
            checkpoint.rename(target)
            moved.append(target)
    return moved


def stage_of(directory: Path) -> str:
    """A stage's name from its directory: <run>/<stage>, or <run>/<stage>/<part> ('pgcl stage1'); the directory's
    own name when --output_dir put it elsewhere."""
    names = {s.name for s in STAGES}
    if directory.name not in names and directory.parent.name in names:
        return f"{directory.parent.name} {directory.name}"
    return directory.name


class DivergenceWatch:
    """Stops a training run at its first non-finite figure: a logged loss or grad norm, a trainable weight's norm,
    or (probe given: a policy sampled from between steps) its outputs on fixed inputs. Training on would only
    spread the nan into every later checkpoint and the final model. The checkpoints that may hold the diverged
    weights are set aside, and the error names the one to resume from with a lower learning rate, which a resume
    takes (StageState; PPO's loop likewise)."""

    def __init__(self, stage: str, stage_dir: Path, learning_rate: float, probe=None, good_until: int = 0):
        self.stage, self.stage_dir, self.learning_rate, self.probe = stage, Path(stage_dir), learning_rate, probe
        self.good_until = good_until         # the newest step whose weights are known to give a finite loss

    def problems(self, logs: dict | None = None, models=()) -> dict:
        """What is not finite among the logged figures and the models' trainable weights (then outputs)."""
        found = non_finite({key: (logs or {}).get(key) for key in WATCHED_LOGS})
        if models:
            found.update(weight_norm_problem(itertools.chain(*(m.named_parameters() for m in models))))
        if models and self.probe is not None and not found:
            found.update(outputs_problem(models[0], self.probe))
        return found

    def passed(self, step: int) -> None:
        """A finite loss logged at `step` was computed on the weights of the step before: those are good."""
        self.good_until = max(self.good_until, step - 1)

    def check(self, step: int, logs: dict | None = None, models=(), found: dict | None = None) -> None:
        """Raise TrainingDiverged on any problem (found: those seen earlier in the step), with the step's logged
        loss and grad norm beside it; else the weights before this step are good."""
        logs = logs or {}
        found = {**self.problems(logs, models), **(found or {})}
        if found:
            logged = {key: float(logs[key]) for key in WATCHED_LOGS if logs.get(key) is not None}
            raise self.stop(step, {**logged, **found})
        if "loss" in logs:
            self.passed(step)

    def stop(self, step: int, found: dict) -> TrainingDiverged:
        """The error to raise, once the checkpoints after the last good step are set aside."""
        set_aside = set_aside_checkpoints(self.stage_dir, self.good_until) if is_main_process() else []
        good = [p for p in checkpoints(self.stage_dir) if is_complete(p)]
        lower = f"lower the learning rate (now {self.learning_rate:g})"
        advice = (f"{lower} and resume from {good[-1]}: run again with a lower --learning_rate and --resume_changed "
                  f"true" if good else f"{lower} and run again: no checkpoint from before the divergence to resume from")
        if set_aside:
            advice += f" ({', '.join(p.name for p in set_aside)}: set aside, may hold the diverged weights)"
        return diverged(self.stage, step, found, advice)


class DivergenceGuard(TrainerCallback):
    """DivergenceWatch on a Trainer: the weights after every optimizer step, the loss and grad norm of every log.
    Weights gone bad at a step force that step's log, so the error gives its loss and grad norm too, and cancel
    its save."""

    def __init__(self, stage: str | None = None, probe=None):
        self.stage, self.probe, self.watch, self.pending = stage, probe, None, {}

    def on_train_begin(self, args, state, control, **kwargs):
        directory = Path(args.output_dir)
        self.watch = DivergenceWatch(self.stage or stage_of(directory), directory, args.learning_rate, self.probe,
                                     good_until=state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.pending = self.watch.problems(models=[model] if model is not None else [])
        if self.pending:
            control.should_log, control.should_save = True, False

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.watch.check(state.global_step, logs, found=self.pending)


def take_learning_rate(optimizer, scheduler, learning_rate: float) -> None:
    """Make a resumed Trainer run at `learning_rate`. Its optimizer and scheduler come back from the checkpoint
    with the rate the checkpoint was trained at, which would silently win over a lowered --learning_rate
    (--resume_changed true: the way out of a diverged run)."""
    old = rescale_learning_rate(optimizer, scheduler, learning_rate)
    if old is not None:
        print(f"[resume] learning rate {old:g} -> {learning_rate:g}")


class StageState(DivergenceGuard):
    """Writes into every Trainer checkpoint what our summary needs after a resume: the wall time so far and the
    alarms fired so far. Written after the Trainer's own files, so its presence marks the checkpoint complete.
    Being in every Trainer stage, it also stops one that diverges (DivergenceGuard; stage: its name in the error,
    else from its directory; probe: check the policy's outputs every step) and makes a resume take the learning
    rate it is given."""

    def __init__(self, started: float, alarms: list | None = None, stage: str | None = None, probe=None):
        super().__init__(stage, probe)
        self.started, self.alarms = started, alarms if alarms is not None else []

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        if state.global_step > 0:
            take_learning_rate(optimizer, lr_scheduler, args.learning_rate)

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            atomic_write_text(checkpoint / STAGE_STATE, json.dumps(
                {"elapsed_s": time.time() - self.started, "alarms": self.alarms}, default=str))


# ---------------------------------------------------------------- one process per stage directory

LOCK = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:          # it exists, run by someone else
        return True
    return True


def acquire_lock(directory: Path, stage: str) -> None:
    """Hold <directory>/.lock (our PID) while the stage runs: a second process on the same run and stage stops at
    once naming the holder; a lock left by a dead process is taken over with a warning."""
    lock = directory / LOCK
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        text = lock.read_text().strip()
        holder = int(text) if text.isdigit() else None
        if holder is not None and holder != os.getpid() and _alive(holder):
            raise FileExistsError(f"{directory} is in use by process {holder} (lock {lock}): another '{stage}' run with "
                               f"this run_name is going on. Wait for it, or pick another --run_name") from None
        if holder != os.getpid():
            print(f"[{stage}] taking over {lock}, left by process {holder}, which is no longer running")
        lock.write_text(str(os.getpid()))
    else:
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
    atexit.register(release_lock, directory)


def release_lock(directory: Path) -> None:
    lock = directory / LOCK
    if lock.is_file() and lock.read_text().strip() == str(os.getpid()):
        lock.unlink()


def prepare_stage_dir(config, stage: str) -> tuple[Path, str | None]:
    """Create the stage directory and lock it; refuse to overwrite a finished run; find the checkpoint to resume
    from, and refuse to resume it with settings that change the training (unless config.resume_changed).
    Under several processes every rank checks and finds the checkpoint; only the main one writes."""
    out = config.stage_dir(stage)
    if (out / "summary.json").exists():
        raise FileExistsError(f"{out} holds a finished '{stage}' run (summary.json exists); a run never overwrites "
                              f"another: pick a new --run_name or --output_dir, or delete {out}")
    checkpoint = last_checkpoint(out)
    resume = str(checkpoint) if checkpoint else None
    if not is_main_process():
        return out, resume
    out.mkdir(parents=True, exist_ok=True)
    acquire_lock(out, stage)
    settings = yaml.safe_load(yaml.safe_dump(to_dict(config), allow_unicode=True))     # as config.yaml holds them
    saved = out / "config.yaml"
    if resume and saved.is_file():
        first = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
        changed = {k: {"was": first.get(k), "now": v} for k, v in settings.items()
                   if k not in RESUME_FREE and first.get(k) != v}
        if changed and not getattr(config, "resume_changed", False):
            listed = ", ".join(f"{k}: {c['was']!r} -> {c['now']!r}" for k, c in changed.items())
            raise ValueError(f"{out}: resuming {resume} with settings that change the training ({listed}). Run it "
                             f"with the settings it started with, or add --resume_changed true to go on anyway")
        resumes = json.loads((out / "resumes.json").read_text()) if (out / "resumes.json").is_file() else []
        atomic_write_text(out / "resumes.json", json.dumps(resumes + [{"from": resume, "changed": changed}],
                                                           indent=2, default=str))
    else:
        atomic_write_text(saved, yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
    if resume:
        print(f"[{stage}] resuming from {resume}")
    return out, resume


def finish_stage(stage_dir: Path, stage: str, summary: dict, report_lines: list[str], started: float,
                 headline: str = "") -> dict:
    """Write summary.json and report.md. `headline` is the stage's one-line result, shown in the run's report."""
    resumes = json.loads((stage_dir / "resumes.json").read_text()) if (stage_dir / "resumes.json").is_file() else []
    summary = {"stage": stage, "wall_time_s": round(time.time() - started, 1), "headline": headline, **summary,
               "resumes": resumes}
    atomic_write_text(stage_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    header = [f"# {stage}: {stage_dir}", "", f"wall time: {summary['wall_time_s']} s", ""]
    atomic_write_text(stage_dir / "report.md", "\n".join(header + report_lines) + "\n")
    print(f"[{stage}] done in {summary['wall_time_s']} s -> {stage_dir}/summary.json")
    release_lock(stage_dir)
    return summary


def dry_run(config, stage: str, **resolved) -> dict:
    """Print what a stage resolved before loading any weights (data counts, reward components, ...: `resolved`,
    filled in by the stage itself) with its output directory and models, as JSON; returns the plan, writes nothing.
    Stops first if the config asks for a GPU-only accelerator on a machine without one."""
    plan = {"stage": stage, "output_dir": str(config.stage_dir(stage)), **resolved,
            "models": {k: getattr(config, k) for k in ("policy_model", "rm_backbone", "reward_model") if hasattr(config, k)}}
    check_accelerators(config)
    print(json.dumps(plan, indent=2, default=str))
    return {**plan, "config": to_dict(config)}
