"""A stage's own directory: refuse to overwrite a finished run, find the checkpoint to resume from, write
summary.json and report.md at the end, and the dry run that resolves everything before any weights load."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import yaml

from common.accelerators import check_accelerators
from common.config import to_dict
from common.io import atomic_write_text
from common.training import is_main_process

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# the file each engine writes last into a checkpoint: the HF Trainer's state, our PPO state (written atomically)
COMPLETE_MARKERS = ("trainer_state.json", "ppo_state.pt")


def checkpoints(directory: Path) -> list[Path]:
    """Every `checkpoint-<step>` folder in directory, oldest first. Other names (a `.tmp` being written) are not
    checkpoints."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if p.is_dir() and (m := _CHECKPOINT.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def last_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in directory, or None. A checkpoint is complete once its engine's last
    file (COMPLETE_MARKERS) is there: one cut short by a kill is skipped, and the run resumes from the one before."""
    complete = [p for p in checkpoints(directory) if any((p / marker).is_file() for marker in COMPLETE_MARKERS)]
    return complete[-1] if complete else None


def prepare_stage_dir(config, stage: str) -> tuple[Path, str | None]:
    """Create the stage directory; refuse to overwrite a finished run; find the checkpoint to resume from.
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
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
    if resume:
        print(f"[{stage}] resuming from {resume}")
    return out, resume


def finish_stage(stage_dir: Path, stage: str, summary: dict, report_lines: list[str], started: float,
                 headline: str = "") -> dict:
    """Write summary.json and report.md. `headline` is the stage's one-line result, shown in the run's report."""
    summary = {"stage": stage, "wall_time_s": round(time.time() - started, 1), "headline": headline, **summary}
    atomic_write_text(stage_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    header = [f"# {stage}: {stage_dir}", "", f"wall time: {summary['wall_time_s']} s", ""]
    atomic_write_text(stage_dir / "report.md", "\n".join(header + report_lines) + "\n")
    print(f"[{stage}] done in {summary['wall_time_s']} s -> {stage_dir}/summary.json")
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
