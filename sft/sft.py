"""Supervised fine-tuning of the LoRA policy on prompt -> joke, with an explicit EOS on every target.

Without the EOS the model never learns to stop, runs to max tokens and drifts into garbage.
The EOS appended here is checked to be the token id that generation and GRPO stop on, and after training the
stage samples held-out prompts and reports the stop rate.

    python sft/sft.py --config configs/tiny.yaml
"""

from __future__ import annotations

from common.accelerators import check_accelerators, import_unsloth_if_requested

if __name__ == "__main__":
    import_unsloth_if_requested()   # unsloth must be imported before trl, which it patches


from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from common.cli import cli
from common.config import parse_config
from common.generation import sample_completions, stop_token_ids
from common.models import fingerprint, load_base_policy, save_stage_adapter
from common.rundir import StageState, dry_run, finish_stage, prepare_stage_dir, start_clock
from common.stage_configs import SFTArgs
from common.tb import log_scalars, tensorboard_callback
from common.training import lora_config, set_seed, trainer_config
from common.update_check import UpdateSentinel, causal_lm_probe
from data.annotate import annotation_demonstrations, annotations_of
from data.loaders import (
    Demonstration,
    load_headline_demonstrations,
    load_labeled,
    prompt_plan,
    rl_prompt_split,
    sample_texts,
)
from data.prompts import completion_prefix, demonstrations_from_jokes, format_for_model, prompt_text


def sft_dataset(demos: list[Demonstration], tokenizer) -> Dataset:
    """prompt (as the model sees it) -> completion = joke + the tokenizer's EOS, written out explicitly."""
    prefix = completion_prefix(tokenizer)
    return Dataset.from_dict({
        "prompt": [format_for_model(tokenizer, prompt_text(d.task)) for d in demos],
        "completion": [prefix + d.joke + tokenizer.eos_token for d in demos],
    })


def check_eos_in_targets(dataset, eos_id: int, max_length: int) -> int:
    """Every tokenized example must end in EOS, and that EOS must be a label (inside the loss). Returns how many
    examples were cut by max_length (they lose their EOS, so the count is reported)."""
    truncated = 0
    for i, ex in enumerate(dataset):
        ids, labels = ex["input_ids"], ex.get("labels")
        if ids[-1] != eos_id:
            if len(ids) >= max_length:
                truncated += 1
                continue
            raise RuntimeError(f"SFT example {i} does not end with EOS id {eos_id}: the model would not learn to stop")
        if labels is not None and labels[-1] != eos_id:
            raise RuntimeError(f"SFT example {i}: the EOS is outside the loss (label {labels[-1]})")
    return truncated


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(SFTArgs, "sft", argv)
    # 1. data: two-words prompts built from the jokes, plus the hand-written headline demonstrations
    rows = load_labeled(cfg.labeled_sources, cfg.data_dir, cfg.langs, cfg.max_rows_per_source, cfg.seed)
    demos, skipped = demonstrations_from_jokes(rows)
    demos += load_headline_demonstrations(cfg.langs)
    annotated = [a for a in annotations_of(cfg.sft_sources, cfg.run_dir()) if a.lang in cfg.langs]
    demos += annotation_demonstrations(annotated)          # both prompt types per annotated joke
    if not demos:
        raise ValueError(f"no SFT demonstrations: sources {cfg.labeled_sources} hold no jokes for {cfg.langs}")
    if cfg.dry_run:
        return dry_run(cfg, "sft", labeled_sources=cfg.labeled_sources, labeled_rows=len(rows),
                       demonstrations=len(demos), annotated_jokes=len(annotated), **prompt_plan(cfg))
    held_out = rl_prompt_split(cfg)[1]          # the prompts RL holds out: samples measure the stop rate
    check_accelerators(cfg)
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, "sft")
    started = start_clock(resume)           # the wall time of earlier segments counts

    # 2. policy and its stop token
    model, tokenizer = load_base_policy(cfg.policy_model, cfg.use_unsloth, cfg.model_dtype)
    stop_ids = stop_token_ids(model, tokenizer)
    eos = tokenizer.eos_token
    base_fingerprint = fingerprint(model)  # stored beside the adapter: later stages check they load the same base
    train_ds = sft_dataset(demos, tokenizer)
    print(f"[sft] {len(demos)} demonstrations ({skipped} jokes skipped: fewer than two content words); "
          f"EOS {eos!r} = id {tokenizer.eos_token_id}; stop ids {stop_ids}; pad id {tokenizer.pad_token_id}")

    # 3. train with TRL: loss on the completion only
    args = trainer_config(SFTConfig, cfg, out, max_length=cfg.max_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                         peft_config=lora_config(cfg),
                         callbacks=[tensorboard_callback(out), StageState(started, stage="sft")])
    truncated = check_eos_in_targets(trainer.train_dataset, tokenizer.eos_token_id, cfg.max_length)
    sentinel = UpdateSentinel(trainer.model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    result = trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(trainer.model, "sft", trainer.state.global_step)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    # 4. sample held-out prompts: does it stop?
    samples = sample_completions(trainer.model, tokenizer, [format_for_model(tokenizer, prompt_text(p)) for p in held_out],
                                 cfg.max_new_tokens, cfg.temperature, cfg.top_p, max_prompt_tokens=cfg.max_prompt_tokens)
    stop_rate = sum(s.finished for s in samples) / len(samples)
    log_scalars(out, {"gen/stop_rate": stop_rate}, trainer.state.global_step)
    print(f"[sft] stop rate on {len(samples)} held-out prompts: {stop_rate:.2f}")

    # 5. save the adapter, its tokenizer and what base it belongs to
    save_stage_adapter(out / "final", trainer.model, tokenizer, cfg.policy_model, base_fingerprint=base_fingerprint)
    report = [f"demonstrations {len(demos)} (truncated by max_length: {truncated}), steps {trainer.state.global_step}",
              f"loss first/last logged: {losses[0]:.4f} -> {losses[-1]:.4f}" if losses else "", "",
              f"**stop rate** on {len(samples)} held-out prompts: {stop_rate:.2f}", "", "## samples", "",
              *[f"- {'[stopped]' if s.finished else '[no EOS]'} {s.text[:200]!r}" for s in samples[:8]], "",
              f"weights moved: {moved}"]
    return finish_stage(out, "sft", {
        "demonstrations": len(demos), "skipped_jokes": skipped, "truncated_examples": truncated,
        "steps": trainer.state.global_step, "train_loss": sum(losses) / len(losses) if losses else result.training_loss,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "eos_token": eos, "eos_token_id": tokenizer.eos_token_id, "stop_token_ids": stop_ids,
        "stop_rate": stop_rate, "samples": [s.__dict__ for s in samples], "update_check": moved,
        "adapter_dir": str(out / "final")}, report, started,
        headline=f"loss {losses[0] if losses else 0:.3f} -> {losses[-1] if losses else 0:.3f}, stop rate {stop_rate:.2f}")


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
