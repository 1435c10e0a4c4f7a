"""Sampling tasks and scoring the completions with the composite reward, and the held-out wrap-up of an RL stage.

`generate_rows` is what GRPO's and PPO's held-out samples, DPO's own-sample pairs, evaluation, submission and
sweeps share: the same prompts, formatting, sampler and scorer, so a number in one report means the same in another.
"""

from __future__ import annotations

from pathlib import Path

from common.generation import sample_completions
from common.rundir import finish_stage
from common.tb import log_scalars
from common.training import use_bf16
from data.loaders import TaskPrompt
from data.prompts import format_for_model
from reward.composite import build_gold, score, task_columns
from rl.monitor import GoldWatch


def generate_rows(model, tokenizer, tasks: list[TaskPrompt], cfg, fns: dict, samples_per_prompt: int = 1,
                  batch_size: int = 8, greedy: bool = False, progress: bool = True) -> list[dict]:
    """samples_per_prompt completions of every task (sampling settings from cfg), scored by every component.

    Rows: id, lang, prompt_type, headline, words, prompt, sample, text, finished (stopped with EOS), num_tokens,
    every component and the weighted total."""
    tasks = [t for t in tasks for _ in range(samples_per_prompt)]
    columns = task_columns(tasks)
    samples = sample_completions(model, tokenizer, [format_for_model(tokenizer, s) for s in columns["instruction"]],
                                 cfg.max_new_tokens, cfg.temperature, cfg.top_p, batch_size=batch_size,
                                 max_prompt_tokens=cfg.max_prompt_tokens, greedy=greedy, progress=progress,
                                 bf16=use_bf16(cfg.bf16) and not greedy)
    scores = score(fns, [s.text for s in samples], weights=cfg.reward_weights,
                   finished=[s.finished for s in samples], **columns)
    rows = []
    for i, (task, sample) in enumerate(zip(tasks, samples)):
        rows.append({"id": task.id, "lang": task.lang, "prompt_type": task.prompt_type, "headline": task.headline,
                     "words": columns["words"][i], "prompt": columns["instruction"][i], "theme": columns["theme"][i],
                     "sample": i % samples_per_prompt, "text": sample.text, "finished": sample.finished,
                     "num_tokens": sample.num_tokens, **{k: v[i] for k, v in scores.items()}})
    return rows


def gold_watch(cfg, model_of, tokenizer, held_out: list[TaskPrompt], fns: dict, writer, out: Path, alarms,
               history: list | None = None) -> GoldWatch | None:
    """The over-optimisation watch of an RL stage (None unless gold_reward_model and gold_eval_steps are set): the
    held-out prompts sampled and scored by the training components plus the gold scorer, which is never weighted."""
    if not (cfg.gold_reward_model and cfg.gold_eval_steps):
        return None
    watched = {**fns, "gold": build_gold(cfg)}
    sample = lambda model: generate_rows(model, tokenizer, held_out, cfg, watched, progress=False)
    return GoldWatch(model_of, sample, "gold", cfg.gold_eval_steps, writer, out, alarms, history)


def finish_rl_stage(stage: str, cfg, out: Path, model, tokenizer, held_out: list[TaskPrompt], fns: dict, step: int,
                    summary: dict, report_head: list[str], alarms: list[dict], update_check: dict,
                    started: float) -> dict:
    """The end of an online RL stage (GRPO, PPO), after its adapter is saved: sample the held-out prompts, score
    them with the same composite, log them, and write summary.json and report.md with the samples and alarms.
    `summary` holds the stage's own figures (reward_first, reward_last, kl_last, ...)."""
    rows = generate_rows(model, tokenizer, held_out, cfg, fns)
    stop_rate = sum(r["finished"] for r in rows) / len(rows)
    held_reward = sum(r["total"] for r in rows) / len(rows)
    log_scalars(out, {"eval/reward": held_reward, "gen/stop_rate_held_out": stop_rate}, step)

    report = [*report_head, f"held-out reward {held_reward:.4f}, stop rate {stop_rate:.2f}", "",
              "## held-out samples", "",
              *[f"- [{r['prompt_type']}] total {r['total']:.3f}: {r['text'][:200]!r}" for r in rows[:8]], "",
              "## alarms", "", *([f"- step {a['step']}: **{a['alarm']}**: {a['message']}" for a in alarms]
                                  or ["none fired"]), "", f"weights moved: {update_check}"]
    nan = float("nan")
    first, last, kl = (summary.get(k) for k in ("reward_first", "reward_last", "kl_last"))
    headline = (f"train reward {first if first is not None else nan:.3f} -> {last if last is not None else nan:.3f}, "
                f"KL {kl if kl is not None else nan:.4f}, held-out reward {held_reward:.3f}")
    return finish_stage(out, stage, {
        "steps": step, **summary, "held_out_reward": held_reward, "held_out_stop_rate": stop_rate,
        "reward_weights": cfg.reward_weights, "update_check": update_check, "adapter_dir": str(out / "final"),
        "alarms": alarms, "samples": rows}, report, started, headline=headline)
