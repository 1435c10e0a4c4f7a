"""What every training stage sets up the same way: seeds, the process that writes, precision, the Trainer's
arguments and the LoRA adapter."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import torch
from accelerate import PartialState
from peft import LoraConfig

from common.compat import cpu_has_native_bf16


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_main_process() -> bool:
    """True on the process that writes files (rank 0 under `accelerate launch`; always in a single process)."""
    # the first PartialState fixes the process group for the run: on a CPU it must know it is one (as the
    # Trainer's use_cpu does), or torchrun's ranks each see a world of size 1
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def use_bf16(setting: bool | None) -> bool:
    """The bf16 setting resolved: explicit, else a GPU or a CPU with native bf16 dot products (AVX512-BF16)."""
    if setting is not None:
        return setting
    return torch.cuda.is_available() or cpu_has_native_bf16()


def planned_steps(config, examples: int) -> int:
    """The optimizer steps a Trainer stage will take on `examples` training rows on one device: max_steps, or with
    epochs set, that many passes (a share of one rounds up, as the Trainer does), accumulation counted.

    >>> from types import SimpleNamespace as S
    >>> planned_steps(S(epochs=0.64, max_steps=150, batch_size=16, trainer_args={}), 15007)   # 938 batches a pass
    601
    >>> planned_steps(S(epochs=0.64, max_steps=150, batch_size=16, trainer_args={}), 31)      # the shipped sample
    2
    >>> planned_steps(S(epochs=None, max_steps=150, batch_size=16, trainer_args={}), 31)
    150
    """
    if not config.epochs:
        return config.max_steps
    accumulation = int((config.trainer_args or {}).get("gradient_accumulation_steps", 1))
    per_epoch = max(1, math.ceil(examples / config.batch_size) // accumulation)
    return math.ceil(config.epochs * per_epoch)


def trainer_kwargs(config, stage_dir) -> dict:
    """The TrainingArguments every Trainer stage shares (TRL's configs subclass it): steps, batch, lr, logging,
    checkpoints, seed, device and precision. TensorBoard goes through common.tb.tensorboard_callback, not report_to.
    A nan or infinite loss is logged as it is (the Trainer's default would log the window's mean in its place), so
    that the divergence guard (common.rundir.DivergenceGuard) sees it."""
    on_gpu = torch.cuda.is_available()
    length = {"max_steps": -1, "num_train_epochs": config.epochs} if config.epochs else {"max_steps": config.max_steps}
    return dict(output_dir=str(stage_dir), **length, per_device_train_batch_size=config.batch_size,
                learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
                logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2,
                report_to="none", seed=config.seed, use_cpu=not on_gpu, bf16=use_bf16(getattr(config, "bf16", None)),
                logging_nan_inf_filter=False)


def trainer_config(config_cls, cfg, stage_dir, **stage_kwargs):
    """The stage's TRL / transformers config: the shared arguments (trainer_kwargs), the stage's own settings, then
    what the user set under TRL's names (cfg.trainer_args), which win. report_to adds trackers (wandb, trackio, ...)
    beside our TensorBoard callback, which always writes <stage_dir>/tb."""
    user = dict(cfg.trainer_args or {})
    unknown = sorted(set(user) - {f.name for f in dataclasses.fields(config_cls)})
    if unknown:
        raise ValueError(f"{unknown}: not settings of {config_cls.__name__}, which this stage trains with")
    if "report_to" in user:
        trackers = [user["report_to"]] if isinstance(user["report_to"], str) else list(user["report_to"] or [])
        user["report_to"] = [t for t in trackers if t not in ("tensorboard", "none", "all")] or "none"
    return config_cls(**{**trainer_kwargs(cfg, stage_dir), **stage_kwargs, **user})


def lora_config(cfg) -> LoraConfig:
    """The LoRA adapter of a policy stage (LoRAArgs)."""
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
