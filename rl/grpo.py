"""GRPO of the SFT policy against the composite reward, on TRL's GRPOTrainer.

parse config -> SFT policy (adapter merged, so the KL reference is the SFT policy) + a fresh LoRA -> reward
callables (the RM wrapper scores decoded text; never the raw classifier) -> GRPOTrainer -> train -> update check
-> save -> score held-out samples.

    python rl/grpo.py --config configs/tiny.yaml
"""

from __future__ import annotations

from common.accelerators import check_accelerators, import_unsloth_if_requested

if __name__ == "__main__":
    import_unsloth_if_requested()   # unsloth must be imported before trl, which it patches

import time
from pathlib import Path

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig

from common.config import parse_config
from common.generation import stop_token_ids
from common.models import load_policy, save_stage_adapter
from common.runs import (UpdateSentinel, causal_lm_probe, dry_run, finish_stage, is_main_process, log_scalars,
                         prepare_stage_dir, set_seed, tensorboard_callback, trainer_kwargs)
from common.stage_configs import GRPOArgs
from data.loaders import TaskPrompt, rl_prompt_split, sample_texts
from data.prompts import format_for_model, prompt_text
from eval.generate import generate_rows
from reward.composite import load_scorer, trl_reward_functions
from rl.monitor import Alarms, MonitoredGRPOTrainer, SampleText
from sft.sft import lora_config


def prompt_dataset(tasks: list[TaskPrompt], tokenizer) -> Dataset:
    """The columns GRPOTrainer needs (prompt) plus those the reward components read."""
    return Dataset.from_dict({
        "prompt": [format_for_model(tokenizer, prompt_text(t)) for t in tasks],
        "instruction": [prompt_text(t) for t in tasks],
        "prompt_type": [t.prompt_type for t in tasks],
        "words": [list(t.words) if t.words else None for t in tasks],
        "lang": [t.lang for t in tasks],
        "id": [t.id for t in tasks],
    })


class ComponentMeans(TrainerCallback):
    """Adds rewards/<component>/mean over all prompt types to each log, and drops the per-type entries TRL
    logs as None when a batch held no prompt of that type. Must come before the TensorBoard callback."""

    def __init__(self, record: dict):
        self.record = record

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        for key in [k for k, v in logs.items() if v is None]:
            del logs[key]
        for name, values in self.record.items():
            if values:
                logs[f"rewards/{name}/mean"] = sum(values) / len(values)
        self.record.clear()


def grpo_config(cfg: GRPOArgs, out: Path, reward_weights: list[float] | None = None) -> GRPOConfig:
    return GRPOConfig(
        **trainer_kwargs(cfg, out), num_generations=cfg.num_generations, beta=cfg.kl_beta, loss_type=cfg.loss_type,
        epsilon=cfg.epsilon, max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        reward_weights=reward_weights, use_vllm=cfg.use_vllm, **({"vllm_mode": "colocate"} if cfg.use_vllm else {}))


def build_trainer(cfg: GRPOArgs, out: Path):
    """(trainer, tokenizer, reward components, held-out prompts, SFT adapter dir) for a GRPO run."""
    # 1. policy = base + SFT adapter, merged; GRPO trains a new LoRA on top, so "adapter off" = the SFT policy
    sft_dir = cfg.sft_adapter_dir()
    model, tokenizer = load_policy(cfg.policy_model, [sft_dir], use_unsloth=cfg.use_unsloth)
    stop_ids = stop_token_ids(model, tokenizer)

    # 2. reward: components on decoded text, weighted per prompt type
    fns = load_scorer(cfg)
    record: dict[str, list[float]] = {}
    reward_funcs, reward_weights = trl_reward_functions(fns, cfg.reward_weights, record, stop_ids)

    # 3. prompts: RL on the training share, samples on the held-out share
    train_tasks, held_out = rl_prompt_split(cfg, cfg.balance_prompt_types)
    print(f"[grpo] {len(train_tasks)} training prompts, {len(held_out)} held out; reward functions "
          f"{[f.__name__ for f in reward_funcs]} with weights {reward_weights}; KL beta {cfg.kl_beta}")

    # 4. TRL's trainer + batch statistics; callbacks in order: per-component means, alarms, then TensorBoard
    tensorboard = tensorboard_callback(out)
    alarms = Alarms(cfg, stop=cfg.alarm_stop, last_batch=lambda: trainer.last_batch)
    trainer = MonitoredGRPOTrainer(
        model=model, reward_funcs=reward_funcs, args=grpo_config(cfg, out, reward_weights), processing_class=tokenizer,
        train_dataset=prompt_dataset(train_tasks, tokenizer), peft_config=lora_config(cfg), stop_ids=stop_ids,
        callbacks=[ComponentMeans(record), alarms, tensorboard])
    trainer.add_callback(SampleText(trainer, tensorboard.tb_writer, cfg.log_samples_steps))
    return trainer, tokenizer, fns, held_out, sft_dir, alarms


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(GRPOArgs, "grpo", argv)
    if cfg.dry_run:
        return dry_run(cfg, "grpo")
    check_accelerators(cfg)
    set_seed(cfg.seed)
    started = time.time()
    out, resume = prepare_stage_dir(cfg, "grpo")
    trainer, tokenizer, fns, held_out, sft_dir, alarms = build_trainer(cfg, out)
    sentinel = UpdateSentinel(trainer.model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(trainer.model, "grpo", trainer.state.global_step)
    if not is_main_process():       # under accelerate launch, rank 0 saves, samples and reports
        return {"stage": "grpo", "update_check": moved, "rank": trainer.accelerator.process_index}
    history = [h for h in trainer.state.log_history if "reward" in h]

    # 5. save the GRPO adapter; it applies on top of base + SFT adapter
    save_stage_adapter(out / "final", trainer.model, tokenizer, cfg.policy_model, parent=sft_dir)

    # 6. held-out samples, scored by the same composite
    rows = generate_rows(trainer.model, tokenizer, held_out, cfg, fns)
    stop_rate = sum(r["finished"] for r in rows) / len(rows)
    held_reward = sum(r["total"] for r in rows) / len(rows)
    log_scalars(out, {"eval/reward": held_reward, "gen/stop_rate_held_out": stop_rate}, trainer.state.global_step)

    first, last = (history[0], history[-1]) if history else ({}, {})
    report = [f"steps {trainer.state.global_step}, KL beta {cfg.kl_beta}, group size {cfg.num_generations}",
              f"reward (train batch mean) first -> last step: {first.get('reward', float('nan')):.4f} -> "
              f"{last.get('reward', float('nan')):.4f}", f"held-out reward {held_reward:.4f}, stop rate {stop_rate:.2f}",
              "", "## held-out samples", "",
              *[f"- [{r['prompt_type']}] total {r['total']:.3f}: {r['text'][:200]!r}" for r in rows[:8]], "",
              "## alarms", "", *([f"- step {a['step']}: **{a['alarm']}**: {a['message']}" for a in alarms.fired]
                                  or ["none fired"]), "", f"weights moved: {moved}"]
    return finish_stage(out, "grpo", {
        "steps": trainer.state.global_step, "reward_first": first.get("reward"), "reward_last": last.get("reward"),
        "kl_last": last.get("kl"), "held_out_reward": held_reward, "held_out_stop_rate": stop_rate,
        "stop_token_ids": stop_token_ids(trainer.model, tokenizer), "reward_functions": [f.__name__ for f in trainer.reward_funcs],
        "reward_weights": cfg.reward_weights, "update_check": moved, "adapter_dir": str(out / "final"),
        "alarms": alarms.fired, "world_size": trainer.accelerator.num_processes, "samples": rows},
        report, started)


if __name__ == "__main__":
    main()
