"""The online RL stage every TRL trainer with GRPOTrainer's interface runs through (GRPO: rl/grpo.py, RLOO:
rl/rloo.py): a policy samples groups of completions per prompt, reward functions score the decoded text.

An algorithm is an `OnlineAlgorithm`: its name, TRL's trainer and config classes, and the config arguments only it
takes. Everything else is this module's and the same for each: the SFT policy with a fresh LoRA (its reference is
the SFT policy), the composite reward on decoded text, the sampling monitor, alarms, gold watch, checkpoints and
resume, the update check, the saved adapter and the held-out report.

parse config -> SFT policy (adapter merged) + a fresh LoRA -> reward callables -> the algorithm's trainer ->
train -> update check -> save -> score held-out samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from datasets import Dataset
from transformers import TrainerCallback

from common.accelerators import check_accelerators
from common.config import parse_config
from common.generation import fit_prompt, stop_token_ids
from common.models import load_policy, save_stage_adapter
from common.rundir import StageState, dry_run, prepare_stage_dir, stage_state, start_clock
from common.stage_configs import GRPOArgs
from common.stages import stage
from common.tb import tensorboard_callback
from common.training import is_main_process, lora_config, set_seed, trainer_config
from common.update_check import UpdateSentinel, causal_lm_probe
from data.loaders import TaskPrompt, prompt_plan, rl_prompt_split, sample_texts
from data.prompts import format_for_model
from reward.composite import build_scorer, component_logs, component_names, task_columns, trl_reward_functions
from rl.monitor import Alarms, SampleText, monitored
from rl.rollouts import finish_rl_stage, gold_watch


@dataclass(frozen=True)
class OnlineAlgorithm:
    """One online RL algorithm on TRL: what differs between GRPO and RLOO, and nothing else."""

    name: str                                # its stage: runs/<run>/<name>/, and its name as a policy
    trainer: type                            # TRL's trainer class (GRPOTrainer's interface)
    config: type                             # TRL's config class for it
    settings: Callable[[GRPOArgs], dict]     # our config -> the arguments of `config` only this algorithm takes


def prompt_dataset(tasks: list[TaskPrompt], tokenizer, max_prompt_tokens: int) -> Dataset:
    """The columns TRL's trainer needs (prompt, cut on the left to max_prompt_tokens as every stage cuts it: TRL
    does not truncate) plus those the reward components read."""
    columns = task_columns(tasks)
    prompts = [fit_prompt(tokenizer, format_for_model(tokenizer, s), max_prompt_tokens) for s in columns["instruction"]]
    return Dataset.from_dict({"prompt": prompts, **columns, "id": [t.id for t in tasks]})


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
        logs.update(component_logs(self.record))
        self.record.clear()


def online_config(algorithm: OnlineAlgorithm, cfg: GRPOArgs, out: Path, reward_weights: list[float] | None = None):
    """TRL's config for the algorithm: the settings every online algorithm shares, then its own."""
    return trainer_config(
        algorithm.config, cfg, out, num_generations=cfg.num_generations, beta=cfg.kl_beta,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        reward_weights=reward_weights, use_vllm=cfg.use_vllm, **({"vllm_mode": "colocate"} if cfg.use_vllm else {}),
        **algorithm.settings(cfg))


def build_trainer(algorithm: OnlineAlgorithm, cfg: GRPOArgs, out: Path, resume: str | None = None,
                  started: float | None = None):
    """(trainer, tokenizer, reward components, held-out prompts, SFT adapter dir, alarms) for a run; alarms fired
    before a resume come back from its checkpoint."""
    # 1. policy = base + SFT adapter, merged; the algorithm trains a new LoRA on top, so "adapter off" = the SFT policy
    sft_dir = cfg.sft_adapter_dir()
    model, tokenizer = load_policy(cfg.policy_model, [sft_dir], use_unsloth=cfg.use_unsloth, dtype=cfg.model_dtype)
    stop_ids = stop_token_ids(model, tokenizer)

    # 2. reward: components on decoded text, weighted per prompt type
    fns = build_scorer(cfg)
    record: dict[str, list[float]] = {}
    reward_funcs, reward_weights = trl_reward_functions(fns, cfg.reward_weights, record, stop_ids)

    # 3. prompts: RL on the training share, samples on the held-out share
    train_tasks, held_out = rl_prompt_split(cfg, cfg.balance_prompt_types)
    print(f"[{algorithm.name}] {len(train_tasks)} training prompts, {len(held_out)} held out; reward functions "
          f"{[f.__name__ for f in reward_funcs]} with weights {reward_weights}; KL beta {cfg.kl_beta}")

    # 4. TRL's trainer + batch statistics; callbacks in order: per-component means, alarms, then TensorBoard;
    # StageState checks the policy's outputs after every step, as the next step samples from it
    tensorboard = tensorboard_callback(out)
    alarms = Alarms(cfg, stop=cfg.alarm_stop, last_batch=lambda: trainer.last_batch)
    alarms.fired.extend(stage_state(resume)["alarms"])
    state = StageState(started if started is not None else start_clock(resume), alarms.fired, stage=algorithm.name,
                       probe=causal_lm_probe(tokenizer, sample_texts()[:4]))
    trainer = monitored(algorithm.trainer)(
        model=model, reward_funcs=reward_funcs, args=online_config(algorithm, cfg, out, reward_weights),
        processing_class=tokenizer, train_dataset=prompt_dataset(train_tasks, tokenizer, cfg.max_prompt_tokens),
        peft_config=lora_config(cfg), stop_ids=stop_ids, text_checks=cfg, fold_lora=not cfg.use_unsloth,
        callbacks=[ComponentMeans(record), alarms, tensorboard, state])
    trainer.add_callback(SampleText(trainer, tensorboard.tb_writer, cfg.log_samples_steps))
    watch = gold_watch(cfg, lambda: trainer.model, tokenizer, held_out, fns, tensorboard.tb_writer, out, alarms)
    if watch is not None:
        trainer.add_callback(watch)
    trainer.gold_watch = watch
    return trainer, tokenizer, fns, held_out, sft_dir, alarms


def train_online(algorithm: OnlineAlgorithm, argv: list[str] | None = None) -> dict:
    """The stage's main(argv): dry run, or train, check, save and report."""
    name = algorithm.name
    cfg = parse_config(GRPOArgs, stage(name).section, argv)
    if cfg.dry_run:
        return dry_run(cfg, name, **prompt_plan(cfg), reward_components=component_names(cfg))
    check_accelerators(cfg)
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, name)
    started = start_clock(resume)           # the wall time of earlier segments counts
    trainer, tokenizer, fns, held_out, sft_dir, alarms = build_trainer(algorithm, cfg, out, resume, started)
    sentinel = UpdateSentinel(trainer.model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(trainer.model, name, trainer.state.global_step)
    if not is_main_process():       # under accelerate launch, rank 0 saves, samples and reports
        return {"stage": name, "update_check": moved, "rank": trainer.accelerator.process_index}
    history = [h for h in trainer.state.log_history if "reward" in h]

    # 5. save the adapter; it applies on top of base + SFT adapter
    save_stage_adapter(out / "final", trainer.model, tokenizer, cfg.policy_model, parent=sft_dir)

    # 6. held-out samples, scored by the same composite; summary and report
    first, last = (history[0], history[-1]) if history else ({}, {})
    head = [f"{name}: steps {trainer.state.global_step}, KL beta {cfg.kl_beta}, group size {cfg.num_generations}",
            f"reward (train batch mean) first -> last step: {first.get('reward', float('nan')):.4f} -> "
            f"{last.get('reward', float('nan')):.4f}"]
    return finish_rl_stage(name, cfg, out, trainer.model, tokenizer, held_out, fns, trainer.state.global_step, {
        "algorithm": name, "reward_first": first.get("reward"), "reward_last": last.get("reward"),
        "kl_last": last.get("kl"), "stop_token_ids": stop_token_ids(trainer.model, tokenizer),
        "reward_functions": [f.__name__ for f in trainer.reward_funcs],
        "world_size": trainer.accelerator.num_processes,
        **({"gold_watch": trainer.gold_watch.history} if trainer.gold_watch else {})}, head, alarms.fired, moved, started)
