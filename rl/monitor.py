"""What an RL run shows while it trains: batch statistics of the generations, sample
completions as TensorBoard text, and alarms on the signatures of the seeds' failures.

- `generation_stats`: stop rate, Dist-1/Dist-2, script-drift / repetition / gibberish rates, mean length of a batch;
- `monitored(trainer_class)`: a TRL online trainer with GRPOTrainer's interface (GRPOTrainer, RLOOTrainer) that
  samples fast (FastTopP, LoRA folded, bf16 weight copies), logs those stats every step (train/gen/*) and keeps the
  last batch's samples with their reward components;
- `Alarms`: a callback that warns (and optionally stops, with a checkpoint) on reward hacking by repetition,
  script drift, no EOS, runaway KL and groups with no reward signal;
- `SampleText`: every N steps, a table of samples and their component scores into TensorBoard's text tab.
"""

from __future__ import annotations

import contextlib
import math

import torch
from transformers import TrainerCallback

from common.compat import SAMPLING_METHOD, SCORING_METHOD
from common.generation import fast_nucleus, finished_with_stop, sampling_weights
from common.io import save_atomically
from data.text import distinct_n, text_units
from reward.components import text_flags


def generation_stats(texts: list[str], langs: list[str], finished: list[bool], cfg) -> dict[str, float]:
    """Batch statistics of completions; every value in [0, 1] except mean_length. The rates count texts flagged by
    reward.components.text_flags (cfg: the thresholds of TextCheckArgs).

    >>> from common.stage_configs import TextCheckArgs
    >>> s = generation_stats(["la la la la la", "A cat sat.", "这就是生活 دمش"], ["en", "en", "zh"], [False, True, True], TextCheckArgs())
    >>> round(s["stop_rate"], 3), s["drift_rate"], round(s["repetition_rate"], 3), round(s["dist2"], 3)
    (0.667, 0.3333333333333333, 0.333, 0.769)
    """
    n = len(texts)
    flags = text_flags(texts, langs, cfg)
    dist1, _ = distinct_n(texts, langs, 1)
    dist2, _ = distinct_n(texts, langs, 2)
    return {"stop_rate": sum(finished) / n, "dist1": dist1, "dist2": dist2,
            "drift_rate": sum(flags["drifted"]) / n, "repetition_rate": sum(flags["repetitive"]) / n,
            "gibberish_rate": sum(flags["gibberish"]) / n,
            "mean_length": sum(len(text_units(text, lang)) for text, lang in zip(texts, langs)) / n}


class SamplingMonitor:
    """Mixed into a TRL online trainer with GRPOTrainer's interface (its `_generate` and `_calculate_rewards`,
    which RLOOTrainer shares): fast sampling, generation_stats logged as gen/<stat> each step, and the last batch
    kept for SampleText. `monitored` builds the class."""

    def __init__(self, *args, stop_ids: list[int], text_checks, fold_lora: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_ids, self.text_checks = stop_ids, text_checks     # text_checks: the TextCheckArgs thresholds
        # the LoRA folded into the weights while sampling: not with sharded weights (ZeRO-3 / FSDP) or vLLM
        self.fold_lora = fold_lora and not (self.is_deepspeed_enabled or self.is_fsdp_enabled or self.args.use_vllm)
        self.last_batch: list[dict] = []

    def _generate(self, *args, **kwargs):
        # TRL samples outside the training autocast; bf16 sampling is ~1.5x faster on a CPU with AVX512-BF16.
        # The nucleus runs as FastTopP (no sort of the whole vocabulary per token) unless vLLM samples, and the
        # LoRA is folded into the weights while sampling, with bf16 copies of the Linear weights under bf16 autocast
        # (both undone before the loss).
        # (TRL's paged generation calls generate_batch, not generate: it keeps TRL's own warpers)
        plain = self.args.use_vllm or getattr(self.args, "use_transformers_paged", False)
        nucleus = contextlib.nullcontext() if plain else fast_nucleus(self.model, self.generation_config)
        with torch.autocast(self.accelerator.device.type, dtype=torch.bfloat16, enabled=self.args.bf16), nucleus, \
                sampling_weights(self.model, self.fold_lora, self.args.bf16 and self.fold_lora):
            return super()._generate(*args, **kwargs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (B, F)
        langs = [x["lang"] for x in inputs]
        finished = finished_with_stop(completion_ids_list, self.stop_ids)
        mode = "train" if self.model.training else "eval"
        for name, value in generation_stats(completions, langs, finished, self.text_checks).items():
            self._metrics[mode][f"gen/{name}"].append(value)
        values = rewards_per_func.detach().cpu()
        self.last_batch = [
            {"prompt_type": x["prompt_type"], "text": text, "finished": done,
             **{name.split("/", 1)[-1]: round(float(v), 3) for name, v in zip(self.reward_func_names, values[i])
                if not math.isnan(float(v))}}
            for i, (x, text, done) in enumerate(zip(inputs, completions, finished))]
        return rewards_per_func


def monitored(trainer_class: type) -> type:
    """trainer_class with the SamplingMonitor mixed in: MonitoredGRPOTrainer, MonitoredRLOOTrainer, ... A trainer
    without the steps the monitor overrides would sample and score unmonitored: refused."""
    missing = [name for name in (SAMPLING_METHOD, SCORING_METHOD) if not callable(getattr(trainer_class, name, None))]
    if missing:
        raise TypeError(f"{trainer_class.__name__} has no {missing}: not GRPOTrainer's interface, which rl/online.py "
                        f"needs (common/compat.py)")
    return type(f"Monitored{trainer_class.__name__}", (SamplingMonitor, trainer_class), {})


class Alarms(TrainerCallback):
    """Checks each log for the signatures of silent failure; warns with what it saw and what usually helps.

    repetition   mean score of the RM component (cfg.rm_component) above its value at the first logged step
                 while batch Dist-2 < min_dist2
    script_drift share of completions with letters outside the prompt language's script > max_drift_rate
    no_eos       share of completions cut at max_new_tokens > max_clipped_ratio
    kl           KL to the reference > max_kl
    zero_std     share of groups whose completions all got the same reward (no signal) > max_zero_std
    Fired alarms go to the log (alarms/<name> = 1) and to `fired`; with stop=True training stops after a checkpoint.
    """

    def __init__(self, cfg, stop: bool = False, last_batch=lambda: []):
        self.cfg, self.stop, self.last_batch = cfg, stop, last_batch   # last_batch(): rows of a monitored trainer
        self.first_rm: float | None = None
        self.fired: list[dict] = []
        weighted = {name for per_type in cfg.reward_weights.values() for name in per_type}
        if cfg.rm_component not in weighted:
            print(f"[alarm] rm_component {cfg.rm_component!r} has no weight in reward_weights: the repetition alarm "
                  f"cannot watch it (set rm_component to a weighted component)", flush=True)

    def read_keys(self) -> list[str]:
        """The log keys the checks read, in check's order. A key TRL renamed would turn its alarm off without a
        word, so a contract test asserts every online algorithm logs each of them."""
        return [f"rewards/{self.cfg.rm_component}/mean", "gen/dist2", "gen/drift_rate", "gen/stop_rate", "kl",
                "frac_reward_zero_std"]

    def check(self, logs: dict, step: int) -> list[dict]:
        cfg, found = self.cfg, []
        rm, dist2, drift, stop_rate, kl, zero_std = (logs.get(key) for key in self.read_keys())
        if rm is not None and self.first_rm is None:
            self.first_rm = rm
        if dist2 is not None and dist2 < cfg.alarm_min_dist2 and rm is not None and rm > self.first_rm:
            found.append(("repetition", f"RM score rose {self.first_rm:.3f} -> {rm:.3f} while batch Dist-2 fell to "
                          f"{dist2:.3f} (< {cfg.alarm_min_dist2}): the policy may be repeating what the RM likes. "
                          f"Raise repetition_penalty's weight or kl_beta"))
        if drift is not None and drift > cfg.alarm_max_drift_rate:
            found.append(("script_drift", f"{drift:.0%} of completions drift out of the language's script "
                          f"(> {cfg.alarm_max_drift_rate:.0%}): raise script_drift_penalty's weight or kl_beta"))
        if stop_rate is not None and 1 - stop_rate > cfg.alarm_max_clipped_ratio:
            found.append(("no_eos", f"{1 - stop_rate:.0%} of completions hit max_new_tokens without EOS "
                          f"(> {cfg.alarm_max_clipped_ratio:.0%}): check SFT's stop rate, raise no_eos_penalty"))
        if kl is not None and kl > cfg.alarm_max_kl:
            found.append(("kl", f"KL to the reference {kl:.3f} > {cfg.alarm_max_kl}: the policy is running away; "
                          f"raise kl_beta or lower the learning rate"))
        if zero_std is not None and zero_std > cfg.alarm_max_zero_std:
            found.append(("zero_std", f"{zero_std:.0%} of groups got identical rewards (no learning signal, "
                          f"> {cfg.alarm_max_zero_std:.0%}): raise temperature or num_generations"))
        return [{"alarm": name, "step": step, "message": msg + self._example(name)} for name, msg in found]

    def _example(self, alarm: str) -> str:
        """The worst completion of the last batch for a text alarm, so the log shows what the policy wrote."""
        component = {"repetition": "repetition_penalty", "script_drift": "script_drift_penalty"}.get(alarm)
        rows = [r for r in self.last_batch() if component and r.get(component) is not None]
        if not rows:
            return ""
        worst = max(rows, key=lambda r: r[component])
        return f". Worst completion ({component} {worst[component]}): {worst['text'][:160]!r}"

    def observe(self, logs: dict, step: int) -> list[dict]:
        """Check one log, record and print what fired, and mark it in the log (alarms/<name> = 1)."""
        fired = self.check(logs, step)
        for alarm in fired:
            self.fired.append(alarm)
            logs[f"alarms/{alarm['alarm']}"] = 1.0
            print(f"[alarm] step {alarm['step']}: {alarm['alarm']}: {alarm['message']}", flush=True)
        if fired and self.stop:
            print(f"[alarm] stopping the run at step {step} (alarm_stop is on); a checkpoint is saved and the run "
                  f"resumes from it if started again", flush=True)
        return fired

    def on_log(self, args, state, control, logs=None, **kwargs):
        key = f"rewards/{self.cfg.rm_component}/mean"
        if self.first_rm is None:      # after a resume, the first value is in the restored log history
            earlier = [h[key] for h in getattr(state, "log_history", []) if key in h]
            self.first_rm = earlier[0] if earlier else None
        if logs and self.observe(logs, state.global_step) and self.stop:
            control.should_save = True
            control.should_training_stop = True


def samples_markdown(rows: list[dict]) -> str:
    """Sample completions with their component scores as a Markdown table (TensorBoard's text tab)."""
    components = sorted({k for r in rows for k in r} - {"prompt_type", "text", "finished"})
    lines = ["| type | completion | EOS | " + " | ".join(components) + " |",
             "|---|---|---|" + "---|" * len(components)]
    for r in rows:
        text = r["text"][:300].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['prompt_type']} | {text} | {'yes' if r['finished'] else 'no'} | "
                     + " | ".join(str(r.get(c, "-")) for c in components) + " |")
    return "\n".join(lines)


def over_optimised(history: list[dict]) -> bool:
    """The proxy (training reward) kept rising while the gold (an independent scorer) fell, for the last two
    evaluations in a row: the signature of reward over-optimisation (Gao et al. 2022).

    >>> over_optimised([{"proxy": 0.5, "gold": 0.6}, {"proxy": 0.6, "gold": 0.55}, {"proxy": 0.7, "gold": 0.5}])
    True
    >>> over_optimised([{"proxy": 0.5, "gold": 0.6}, {"proxy": 0.6, "gold": 0.65}, {"proxy": 0.7, "gold": 0.5}])
    False
    """
    if len(history) < 3:
        return False
    a, b, c = history[-3:]
    return a["proxy"] < b["proxy"] < c["proxy"] and a["gold"] > b["gold"] > c["gold"]


class GoldWatch(TrainerCallback):
    """Every `every` steps: sample the held-out prompts, score them with the training composite (proxy) and with an
    independent gold scorer, log gold/proxy and gold/gold, alarm on over-optimisation, and keep the adapter of the
    best gold evaluation in <stage>/best_gold/. model_of() -> the policy being trained; sample(model) -> rows with
    the component `gold` and `total`. A TrainerCallback for GRPO; PPO's own loop calls evaluate(step)."""

    def __init__(self, model_of, sample, gold: str, every: int, writer, out_dir, alarms, history: list | None = None):
        self.model_of, self.sample, self.gold, self.every = model_of, sample, gold, every
        self.writer, self.out_dir, self.alarms = writer, out_dir, alarms
        self.history: list[dict] = list(history or [])

    def on_step_end(self, args, state, control, **kwargs):
        self.evaluate(state.global_step)

    def evaluate(self, step: int) -> None:
        if self.every <= 0 or step % self.every:
            return
        model = self.model_of()
        rows = self.sample(model)
        point = {"step": step, "proxy": sum(r["total"] for r in rows) / len(rows),
                 "gold": sum(r[self.gold] for r in rows) / len(rows)}
        best = max((h["gold"] for h in self.history), default=float("-inf"))
        self.history.append(point)
        if self.writer is not None:
            self.writer.add_scalar("gold/proxy", point["proxy"], step)
            self.writer.add_scalar("gold/gold", point["gold"], step)
            self.writer.flush()
        if point["gold"] > best:
            save_atomically(self.out_dir / "best_gold", lambda d: model.save_pretrained(str(d)))
        if over_optimised(self.history):
            message = (f"the proxy rose to {point['proxy']:.3f} while {self.gold} fell to {point['gold']:.3f} for two "
                       f"evaluations in a row: the policy is over-optimising its reward. best_gold/ holds the adapter "
                       f"of the best {self.gold}; raise kl_beta or stop earlier")
            self.alarms.fired.append({"alarm": "over_optimisation", "step": step, "message": message})
            print(f"[alarm] step {step}: over_optimisation: {message}", flush=True)


class SampleText(TrainerCallback):
    """Every `every` steps: the last batch's completions with their component scores, as TensorBoard text."""

    def __init__(self, trainer: SamplingMonitor, writer, every: int, count: int = 4):
        self.trainer, self.writer, self.every, self.count = trainer, writer, every, count

    def on_step_end(self, args, state, control, **kwargs):
        if self.writer is None or self.every <= 0 or state.global_step % self.every or not self.trainer.last_batch:
            return
        self.writer.add_text("samples", samples_markdown(self.trainer.last_batch[:self.count]), state.global_step)
        self.writer.flush()
