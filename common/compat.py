"""Every place the project relies on TRL's or transformers' internals, and the versions it was checked against.

A TRL or transformers release may rename a private method, a log key or a column without notice; what breaks then
is silent (an alarm that never fires, sampling at the wrong temperature, a resume at the old learning rate). So the
internals are named here, the supported versions are checked when an entry point starts, and the contract tests
(tests/common/test_contracts.py, tests/rl/test_online.py) fail on a release that changes one of them:

- the online trainers' sampling and scoring steps, which rl/monitor.py's SamplingMonitor overrides
  (SAMPLING_METHOD, SCORING_METHOD) and the metrics store it adds to (METRICS_ATTRIBUTE);
- the log keys the alarms read (rl/monitor.py Alarms.read_keys; checked on a real run of each algorithm);
- generate's default top-k and the processors it samples with (common/generation.py; a real run records them);
- torch's private check for native bf16 on a CPU (cpu_has_native_bf16, behind the bf16 default);
- the pre-tokenized pair columns RewardTrainer takes as they are (REWARD_TRAINER_COLUMNS);
- a learning-rate scheduler's saved rates, rescaled when a resume is given a new rate (rescale_learning_rate).
"""

from __future__ import annotations

import os
from importlib.metadata import version

import torch
from transformers import GenerationConfig

# package -> [lowest, first unsupported) release, as major.minor: the range the contract tests passed on
SUPPORTED = {"trl": ("1.16", "1.17"), "transformers": ("5.23", "5.24")}
ANY_VERSION_ENV = "HUMOR_RL_ANY_VERSION"     # set to 1 to run outside the range (the contract tests say what broke)

SAMPLING_METHOD = "_generate"                # GRPOTrainer / RLOOTrainer: prompts -> completions (and their ids)
SCORING_METHOD = "_calculate_rewards"        # (inputs, prompts, completions, completion_ids_list) -> (B, F) rewards
METRICS_ATTRIBUTE = "_metrics"               # {mode: {key: [values]}}, averaged into each log
REWARD_TRAINER_COLUMNS = ("chosen_ids", "rejected_ids")     # RewardTrainer's already-tokenized pairs


def _minor(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse, in one line, a TRL or transformers outside SUPPORTED (installed: package -> version, for tests)."""
    if os.environ.get(ANY_VERSION_ENV) == "1":
        return
    for package, (low, high) in SUPPORTED.items():
        found = (installed or {}).get(package) or version(package)
        if not _minor(low) <= _minor(found) < _minor(high):
            raise ValueError(f"{package} {found} is outside the versions this project was checked against "
                             f"(>= {low}, < {high}): install the pinned requirements.txt, or set {ANY_VERSION_ENV}=1 "
                             f"to try it and run ./test.sh, whose contract tests name what changed")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16); without it bf16 autocast is emulated and slow."""
    return torch.cpu._is_avx512_bf16_supported()


def default_top_k() -> int | None:
    """The top-k generate applies when a generation config leaves it unset (50 in transformers 5)."""
    return GenerationConfig._get_default_generation_params()["top_k"]


def rescale_learning_rate(optimizer, scheduler, learning_rate: float) -> float | None:
    """Make a Trainer's restored optimizer and scheduler run at `learning_rate`, every group scaled alike so the
    schedule keeps its shape and position; returns the rate they had (None: nothing to change, e.g. several
    different group rates, or already that rate)."""
    scheduler = getattr(scheduler, "scheduler", scheduler)          # under accelerate's wrapper
    saved = set(getattr(scheduler, "base_lrs", None) or [])
    if optimizer is None or len(saved) != 1 or saved == {learning_rate} or saved == {0}:
        return None
    old = saved.pop()
    ratio = learning_rate / old
    scheduler.base_lrs = [lr * ratio for lr in scheduler.base_lrs]
    for group in optimizer.param_groups:
        group["lr"] *= ratio
        if "initial_lr" in group:
            group["initial_lr"] *= ratio
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    return old
