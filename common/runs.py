"""What every stage does around its training: its own directory, resume, TensorBoard, atomic writes,
the update check, summary.json and report.md."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from common.config import to_dict


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def is_main_process() -> bool:
    """True on the process that writes files (rank 0 under `accelerate launch`; always in a single process)."""
    from accelerate import PartialState

    # the first PartialState fixes the process group for the run: on a CPU it must know it is one (as the
    # Trainer's use_cpu does), or torchrun's ranks each see a world of size 1
    return PartialState(cpu=not torch.cuda.is_available()).is_main_process


def prepare_stage_dir(config, stage: str) -> tuple[Path, str | None]:
    """Create the stage directory; refuse to overwrite a finished run; find the checkpoint to resume from.
    Under several processes every rank checks and finds the checkpoint; only the main one writes."""
    out = config.stage_dir(stage)
    if (out / "summary.json").exists():
        raise FileExistsError(f"{out} holds a finished '{stage}' run (summary.json exists); a run never overwrites "
                              f"another: pick a new --run_name or --output_dir, or delete {out}")
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1])) if out.exists() else []
    resume = str(checkpoints[-1]) if checkpoints else None
    if not is_main_process():
        return out, resume
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True))
    if resume:
        print(f"[{stage}] resuming from {resume}")
    return out, resume


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_atomically(directory: Path, save_fn) -> None:
    """save_fn(tmp_dir) writes a model folder; it becomes `directory` only once complete."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_fn(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def trainer_kwargs(config, stage_dir: Path) -> dict:
    """The TrainingArguments every stage shares (TRL's configs subclass it): steps, batch, lr, logging,
    checkpoints, seed, device and precision. TensorBoard goes through tensorboard_callback, not report_to."""
    on_gpu = torch.cuda.is_available()
    epochs = getattr(config, "epochs", None)
    length = {"max_steps": -1, "num_train_epochs": epochs} if epochs else {"max_steps": config.max_steps}
    return dict(output_dir=str(stage_dir), **length, per_device_train_batch_size=config.batch_size,
                learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
                logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2,
                report_to="none", seed=config.seed, use_cpu=not on_gpu, bf16=use_bf16(getattr(config, "bf16", None)))


def use_bf16(setting: bool | None) -> bool:
    """The bf16 setting resolved: explicit, else a GPU or a CPU with native bf16 dot products (AVX512-BF16)."""
    if setting is not None:
        return setting
    return torch.cuda.is_available() or torch.cpu._is_avx512_bf16_supported()


def tensorboard_callback(stage_dir: Path):
    """TensorBoard events in <stage_dir>/tb (transformers 5 has no logging_dir argument); written by the main
    process only (the callback's tb_writer is None on the others)."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(stage_dir / "tb")) if is_main_process() else None)


def log_scalars(stage_dir: Path, scalars: dict[str, float], step: int) -> None:
    """Scalars measured after training (held-out metrics, stop rate) into the stage's TensorBoard directory.
    (The Trainer's TensorBoard callback closes its writer at the end of training.)"""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(stage_dir / "tb")) as writer:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, step)


# ---------------------------------------------------------------- update check (SPEC section 2)

def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def check_weights_moved(model, before: dict[str, torch.Tensor], stage: str, steps: int) -> dict:
    """Compare trainable parameters with their snapshot; raise if none changed.

    A stage that changes nothing (lr 0, frozen adapters, an accelerator that trains a copy) otherwise looks
    like a finished run: the seed's PPO run went unnoticed until perplexities matched."""
    if not before:
        raise RuntimeError(f"{stage}: the model has no trainable parameters (LoRA not attached?)")
    after = dict(model.named_parameters())
    moved, max_abs, sq_diff, sq_norm = [], 0.0, 0.0, 0.0
    for name, p0 in before.items():
        p1 = after[name].detach().float()
        diff = (p1 - p0).abs()
        max_abs = max(max_abs, float(diff.max()))
        sq_diff += float((diff ** 2).sum())
        sq_norm += float((p0 ** 2).sum())
        if not torch.equal(p1, p0):
            moved.append(name)
    stats = {"weights_moved": bool(moved), "moved_tensors": len(moved), "trainable_tensors": len(before),
             "max_abs_diff": max_abs, "relative_change": (sq_diff ** 0.5) / max(sq_norm ** 0.5, 1e-12)}
    if not moved:
        raise RuntimeError(f"{stage}: no trainable parameter changed in {steps} steps. Usual causes: learning "
                           f"rate 0, adapters frozen or not attached, an accelerator training a copy of the model, "
                           f"all losses masked out. Figures: {stats}")
    print(f"[{stage}] weights moved: {len(moved)}/{len(before)} trainable tensors, max |diff| {max_abs:.3g}, "
          f"relative change {stats['relative_change']:.3g}")
    return stats


class UpdateSentinel:
    """Did a stage change anything? Snapshots the trainable weights and the model's outputs on a few fixed inputs
    before training; `check` after training compares both and raises when nothing moved.

    probe(model) -> 1-D tensor: per-text mean token log-prob (causal LM, `causal_lm_probe`) or P(humor)
    (classifier, `classifier_probe`), computed in eval mode without dropout so that only training changes it."""

    def __init__(self, model, probe):
        self.probe = probe
        self.weights_before = trainable_snapshot(model)
        self.outputs_before = _run_probe(model, probe)

    def check(self, model, stage: str, steps: int) -> dict:
        stats = check_weights_moved(model, self.weights_before, stage, steps)
        change = (_run_probe(model, self.probe) - self.outputs_before).abs()
        stats.update(output_change_max=float(change.max()), output_change_mean=float(change.mean()),
                     probe_inputs=int(change.numel()))
        if float(change.max()) == 0.0:
            raise RuntimeError(f"{stage}: weights changed but the outputs on {change.numel()} fixed inputs did not "
                               f"change at all: the trained parameters do not reach the forward pass (adapters "
                               f"disabled or merged into a copy?). Figures: {stats}")
        print(f"[{stage}] outputs moved: mean |change| {stats['output_change_mean']:.3g} over "
              f"{change.numel()} fixed inputs (max {stats['output_change_max']:.3g})")
        return stats


@torch.no_grad()
def _run_probe(model, probe) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return probe(model).detach().float().cpu()
    finally:
        model.train(was_training)


def causal_lm_probe(tokenizer, texts: list[str]):
    """Mean token log-prob of each fixed text under a causal LM."""
    def probe(model) -> torch.Tensor:
        out = []
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
            logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1].float(), dim=-1)     # (1, T-1, V)
            out.append(logp.gather(-1, ids[:, 1:].unsqueeze(-1)).mean())
        return torch.stack(out)
    return probe


def classifier_probe(tokenizer, texts: list[str]):
    """P(label 1) of each fixed text under a sequence classifier."""
    def probe(model) -> torch.Tensor:
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=128).to(model.device)
        return torch.softmax(model(**enc).logits.float(), dim=-1)[:, 1]
    return probe


def finish_stage(stage_dir: Path, stage: str, summary: dict, report_lines: list[str], started: float) -> dict:
    summary = {"stage": stage, "wall_time_s": round(time.time() - started, 1), **summary}
    atomic_write_text(stage_dir / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False, default=str))
    header = [f"# {stage}: {stage_dir}", "", f"wall time: {summary['wall_time_s']} s", ""]
    atomic_write_text(stage_dir / "report.md", "\n".join(header + report_lines) + "\n")
    print(f"[{stage}] done in {summary['wall_time_s']} s -> {stage_dir}/summary.json")
    return summary


def dry_run(config, stage: str) -> dict:
    """Everything a stage resolves before it loads weights: config, data, reward components, accelerators.
    Prints the plan as JSON and returns it; writes nothing."""
    from common.accelerators import check_accelerators
    from common.config import to_dict

    plan = {"stage": stage, "output_dir": str(config.stage_dir(stage)), "config": to_dict(config)}
    if hasattr(config, "labeled_sources") and stage in ("sft", "rm"):
        from data.loaders import load_labeled
        rows = load_labeled(config.labeled_sources, config.data_dir, config.langs, config.max_rows_per_source, config.seed)
        plan["labeled_rows"] = len(rows)
    if stage in ("grpo", "ppo", "dpo"):
        from data.loaders import load_prompts
        plan["prompts"] = len(load_prompts(config.prompt_sources, config.data_dir, config.langs,
                                           config.max_rows_per_source, config.seed))
    if hasattr(config, "reward_weights") and stage in ("grpo", "ppo"):
        from reward.composite import component_names
        plan["reward_components"] = component_names(config.reward_weights)
    if stage == "dpo" and getattr(config, "loss", None) == "pgcl" or getattr(config, "preference_source", None) == "puns":
        from data.preferences import load_puns
        plan["puns"] = len(load_puns(config.pun_sources, config.data_dir, config.langs))
    plan["models"] = {k: getattr(config, k) for k in ("policy_model", "rm_backbone", "reward_model") if hasattr(config, k)}
    check_accelerators(config)
    print(json.dumps({k: v for k, v in plan.items() if k != "config"}, indent=2, default=str))
    return plan
