"""A stage's own directory: refuse to overwrite a finished run, hold a lock against a second process, find the
newest complete checkpoint and refuse to resume it with other settings, carry what the summary reports (alarms,
wall time) across resumes, write summary.json and report.md at the end; and the dry run that resolves everything
before any weights load."""

from __future__ import annotations

import atexit
import json
import os
import re
import time
from pathlib import Path

import yaml
from transformers import TrainerCallback

from common.accelerators import check_accelerators
from common.config import to_dict
from common.io import atomic_write_text
from common.training import is_main_process

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
STAGE_STATE = "humor_rl_state.json"      # what a Trainer checkpoint adds for our summary: elapsed time, alarms
# what makes a checkpoint complete, per engine: the HF Trainer's state and ours (StageState writes it after the
# Trainer's save), or our PPO state (the whole checkpoint written atomically)
COMPLETE_WHEN = (("trainer_state.json", STAGE_STATE), ("ppo_state.pt",))
# settings a resumed run may change: how often it logs and saves, what it prints, whether it stops on an alarm
RESUME_FREE = {"logging_steps", "save_steps", "log_samples_steps", "dry_run", "resume_changed", "alarm_stop",
               "output_dir", "runs_dir", "run_name"}


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


class StageState(TrainerCallback):
    """Writes into every Trainer checkpoint what our summary needs after a resume: the wall time so far and the
    alarms fired so far. Written after the Trainer's own files, so its presence marks the checkpoint complete."""

    def __init__(self, started: float, alarms: list | None = None):
        self.started, self.alarms = started, alarms if alarms is not None else []

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
