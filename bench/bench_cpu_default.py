"""Where the time goes on the CPU default (SmolLM2-135M + LoRA, MiniLM reward model), in printed figures.

    python bench/bench_cpu_default.py                       # after ./run.sh (uses runs/cpu_default's SFT and RM)
    python bench/bench_cpu_default.py --run_name NAME --steps 3 --skip compile

1. generation tokens/s at batch 8 and 32 (48 new tokens each, sampling), for each variant: fp32 dynamic cache
   (HF default), fp32 static cache, bf16, bf16 static, torch.compile (static cache);
2. one GRPO step split into generation / reward / the rest (log-probs, loss, backward, optimizer), ours against
   plain TRL GRPOTrainer with a trivial reward on the same model and settings, as a ratio;
3. reward-model scoring texts/s;
4. peak RSS.
Timings vary several-fold when another process shares the two cores: run it alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from peft import get_peft_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import (  # noqa: E402
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TrainerCallback,
)
from trl import GRPOTrainer  # noqa: E402

from common.config import parse_config  # noqa: E402
from common.generation import FastTopP, sampling_processors, sampling_weights  # noqa: E402
from common.models import load_policy  # noqa: E402
from common.stage_configs import GRPOArgs  # noqa: E402
from common.training import lora_config  # noqa: E402
from data.loaders import load_labeled, load_prompts  # noqa: E402
from data.prompts import format_for_model, prompt_text  # noqa: E402
from reward.composite import build_scorer, task_columns  # noqa: E402
from rl.grpo import GRPO  # noqa: E402
from rl.online import build_trainer, online_config  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6    # Linux: kilobytes


@torch.no_grad()
def generation_rate(model, tokenizer, prompts: list[str], batch: int, new_tokens: int, repeats: int = 2,
                    **generate_kwargs) -> tuple[float, float]:
    """(tokens/s, seconds of the first, warm-up call). Every sequence generates exactly new_tokens tokens."""
    enc = tokenizer((prompts * (batch // len(prompts) + 1))[:batch], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    nucleus = generate_kwargs.pop("fast_top_p", False)
    if nucleus == "filter":        # FastTopP filters, generate draws over the whole vocabulary (before NucleusSampler)
        warpers = LogitsProcessorList([TemperatureLogitsWarper(0.9), TopKLogitsWarper(model.generation_config.top_k or 50),
                                       FastTopP(0.95)])
        sampling = dict(temperature=1.0, top_k=0, top_p=1.0, logits_processor=warpers)
    else:
        sampling = sampling_processors(model, 0.9, 0.95) if nucleus else dict(temperature=0.9, top_p=0.95)
    kwargs = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                  pad_token_id=tokenizer.pad_token_id)
    kwargs.update(**sampling, **generate_kwargs)        # ours draw in NucleusSampler and run generate greedy
    t0 = time.perf_counter()
    model.generate(**enc, **kwargs)
    warmup = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.generate(**enc, **kwargs)
    return batch * new_tokens * repeats / (time.perf_counter() - t0), warmup


def bench_generation(cfg, sft_dir: Path, skip: set[str], batches=(8, 32, 64), only: str = "") -> dict:
    print("\n## 1. generation (tokens/s; 48 new tokens per sequence, sampling)\n")
    tasks = load_prompts(cfg.prompt_sources, cfg.data_dir, cfg.langs, 64, cfg.seed)
    print(f"threads: {torch.get_num_threads()}")
    figures: dict = {}
    print("| variant | " + " | ".join(f"batch {b}" for b in batches) + " | first call (s) |")
    print("|---|" + "---|" * len(batches) + "---|")
    # (name, dtype, generate kwargs, compiled); "+ LoRA" = a fresh LoRA on top of the merged SFT policy, as GRPO and
    # PPO sample it: applied beside every adapted layer, or folded into the weights (folded_lora)
    variants = [("fp32, dynamic cache (HF default)", torch.float32, {}, False),
                ("fp32 weights, bf16 autocast", "autocast", {}, False),
                ("fp32 weights, bf16 autocast, FastTopP", "autocast", {"fast_top_p": True}, False),
                ("bf16 autocast, FastTopP, + LoRA beside the layers", "autocast", {"fast_top_p": True, "lora": "beside"}, False),
                ("bf16 autocast, FastTopP, + LoRA folded", "autocast", {"fast_top_p": True, "lora": "folded"}, False),
                ("bf16 autocast, FastTopP, + LoRA folded, bf16 weight copies, generate draws over the vocabulary",
                 "autocast", {"fast_top_p": "filter", "lora": "folded", "cast": True}, False),
                ("bf16 autocast, + LoRA folded, bf16 weight copies, NucleusSampler draws from the nucleus (used)",
                 "autocast", {"fast_top_p": True, "lora": "folded", "cast": True}, False),
                ("fp32, static cache", torch.float32, {"cache_implementation": "static"}, False),
                ("bf16, dynamic cache", torch.bfloat16, {}, False),
                ("bf16, static cache", torch.bfloat16, {"cache_implementation": "static"}, False),
                ("bf16, static cache + torch.compile", torch.bfloat16, {"cache_implementation": "static"}, True)]
    for name, dtype, kwargs, compiled in variants:
        if (compiled and "compile" in skip) or not any(part in name for part in only.split("|")):
            continue
        model, tokenizer = load_policy(cfg.policy_model, [sft_dir])
        model = model.to(torch.float32 if dtype == "autocast" else dtype).eval()
        kwargs = dict(kwargs)
        lora, cast = kwargs.pop("lora", None), kwargs.pop("cast", False)
        if lora:
            model = get_peft_model(model, lora_config(cfg)).eval()
        if compiled:
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=False)
        prompts = [format_for_model(tokenizer, prompt_text(t)) for t in tasks]
        rates, first = [], 0.0
        for b in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "autocast"), \
                    sampling_weights(model, fold_lora=lora == "folded", bf16=cast):
                rate, warm = generation_rate(model, tokenizer, prompts, b, cfg.max_new_tokens, **dict(kwargs))
            rates.append(rate)
            first = max(first, warm)
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + f" | {first:.1f} |", flush=True)
        figures[name] = {"tokens_per_s": dict(zip(map(str, batches), rates)), "first_call_s": first}
        del model
    return figures


class Timed:
    """Wraps trainer methods to add up their wall time: generation, reward, and the step as a whole."""

    def __init__(self, trainer, names: dict[str, str]):
        self.totals = {label: 0.0 for label in names.values()}
        for method, label in names.items():
            original = getattr(trainer, method)

            def timed(*args, _original=original, _label=label, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.totals[_label] += time.perf_counter() - t0

            setattr(trainer, method, timed)


def bench_grpo_step(cfg, steps: int, out_root: Path) -> dict:
    print(f"\n## 2. GRPO step ({cfg.batch_size // cfg.num_generations} prompts x {cfg.num_generations} completions, "
          f"{cfg.max_new_tokens} new tokens; mean of {steps} steps after one warm-up step)\n")
    methods = {"_generate": "generation", "_calculate_rewards": "reward", "training_step": "step"}
    results = {}

    # ours: rl/grpo.py's trainer (composite reward with the MiniLM RM, monitors, alarms), fp32 and bf16 autocast
    cfg.max_steps = steps + 1
    for bf16 in (False, True):
        cfg.bf16 = bf16
        trainer, tokenizer, *_ = build_trainer(GRPO, cfg, out_root / f"ours-bf16-{bf16}")
        results[f"ours, {'bf16 autocast' if bf16 else 'fp32'}"] = _time_steps(trainer, methods)
        dataset = trainer.train_dataset      # the same prompts, in the same order, for plain TRL
        del trainer
    cfg.bf16 = False    # plain TRL as it runs on a CPU by default

    # plain TRL: same model, LoRA, prompts and GRPOConfig; a trivial reward, no callbacks of ours; with TRL's default
    # gradient checkpointing, and without it (what the CPU default sets), so the gain of each change shows
    def length_reward(completions, **kwargs):
        return [min(len(c), 200) / 200 for c in completions]

    for checkpointing in (True, False):
        model, tokenizer = load_policy(cfg.policy_model, [cfg.previous_stage_dir("sft") / "final"])
        args = online_config(GRPO, cfg, out_root / f"plain-{checkpointing}")
        args.gradient_checkpointing = checkpointing
        plain = GRPOTrainer(model=model, reward_funcs=[length_reward], args=args, processing_class=tokenizer,
                            train_dataset=dataset, peft_config=lora_config(cfg))
        label = "plain TRL (trivial reward)" + ("" if checkpointing else ", no gradient checkpointing")
        results[label] = _time_steps(plain, methods)
        del plain, model

    print(f"ours: gradient checkpointing {'on' if (cfg.trainer_args or {}).get('gradient_checkpointing', True) else 'off'}\n")
    print("| trainer | step (s) | generation (s) | reward (s) | rest: log-probs, loss, backward, optimizer (s) |")
    print("|---|---|---|---|---|")
    for name, t in results.items():
        print(f"| {name} | {t['step']:.2f} | {t['generation']:.2f} | {t['reward']:.2f} | "
              f"{t['step'] - t['generation'] - t['reward']:.2f} |")
    plain_t = results["plain TRL (trivial reward)"]
    ratios = {name: results[name]["step"] / plain_t["step"] for name in ("ours, fp32", "ours, bf16 autocast")}
    for name, ratio in ratios.items():
        print(f"\n{name} / plain TRL (fp32) step time: {ratio:.2f}x", end="")
    print()
    return {"step_split_s": results, "ratio_to_plain_trl": ratios}


def _time_steps(trainer, methods: dict[str, str]) -> dict[str, float]:
    """Mean seconds per step of each timed part, the first (warm-up) step left out."""
    timer = Timed(trainer, methods)
    per_step: list[dict[str, float]] = []

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            per_step.append(dict(timer.totals))

    trainer.add_callback(Snapshot())
    trainer.train()
    deltas = [{k: b[k] - a[k] for k in b} for a, b in zip(per_step, per_step[1:])]
    return {k: sum(d[k] for d in deltas) / len(deltas) for k in deltas[0]}


def bench_rm(cfg, labeled_sources: list, n: int = 256) -> float:
    texts = [r.text for r in load_labeled(labeled_sources, cfg.data_dir, cfg.langs, n, cfg.seed)][:n]
    judge = build_scorer(cfg, [cfg.rm_component])[cfg.rm_component]
    tasks = load_prompts(cfg.prompt_sources, cfg.data_dir, cfg.langs, None, cfg.seed)
    columns = task_columns([tasks[i % len(tasks)] for i in range(len(texts))])
    judge(texts[:32], **{k: v[:32] for k, v in columns.items()})
    t0 = time.perf_counter()
    judge(texts, **columns)
    rate = len(texts) / (time.perf_counter() - t0)
    print(f"\n## 3. reward model\n\nMiniLM RM scoring: {rate:.0f} texts/s ({len(texts)} texts, batch {cfg.rm_batch_size})")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu_default.yaml"))
    parser.add_argument("--run_name", default="cpu_default", help="Finished run whose SFT adapter and RM to use.")
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "data"),
                        help="The full data sets, when there (ColBERT texts, MWAHAHA prompts); else the shipped demo set.")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps timed (after one warm-up step).")
    parser.add_argument("--skip", default="", help="Comma-separated parts to skip: generation, compile, grpo, rm.")
    parser.add_argument("--only", default="", help="Time only the generation variants whose name holds one of these texts ('a|b').")
    parser.add_argument("--json", default=None, help="Also write every figure to this JSON file (to compare benches).")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    argv = ["--config", args.config, "--run_name", args.run_name]
    labeled_sources = ["demo"]
    if Path(args.data_dir).is_dir():
        argv += ["--data_dir", args.data_dir, "--prompt_sources", "[mwahaha_dev]"]
        labeled_sources = ["colbert"]
    cfg = parse_config(GRPOArgs, "grpo", argv)
    sft_dir = cfg.previous_stage_dir("sft") / "final"
    if not sft_dir.is_dir() or not cfg.reward_model_dir().is_dir():
        raise SystemExit(f"needs a finished run '{args.run_name}' (SFT adapter and RM): run ./run.sh first")
    out_root = ROOT / "runs" / "_bench" / time.strftime("%Y%m%d-%H%M%S")
    print(f"# bench: {cfg.policy_model} + SFT adapter of run '{args.run_name}', torch {torch.__version__}")

    figures = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "policy": cfg.policy_model, "max_new_tokens": cfg.max_new_tokens}
    if "generation" not in skip:
        figures["generation"] = bench_generation(cfg, sft_dir, skip, only=args.only)
    if "grpo" not in skip:
        figures["grpo"] = bench_grpo_step(cfg, args.steps, out_root)
    if "rm" not in skip:
        figures["rm_texts_per_s"] = bench_rm(cfg, labeled_sources)
    figures["peak_rss_gb"] = peak_rss_gb()
    print(f"\n## 4. memory\n\npeak RSS {figures['peak_rss_gb']:.2f} GB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
        print(f"figures -> {args.json}")


if __name__ == "__main__":
    main()
