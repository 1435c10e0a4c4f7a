"""Offline preference training of the SFT policy on pairs: DPO (TRL) and DPOP (ours) (SPEC section 5).

    python rl/dpo.py --config configs/tiny.yaml --loss dpo                 # TRL's DPOTrainer
    python rl/dpo.py --config configs/tiny.yaml --loss dpop                # ours: DPO-Positive, rl/losses.py
The two-stage pun curriculum PGCL has its own entry point, rl/pgcl.py.

parse config -> pairs (Humicroedit human pairs, the policy's own ranked samples, gold puns vs own failures, or a
file) -> base + SFT adapter merged + a fresh LoRA, reference = the LoRA disabled (the SFT policy) -> train
(rl/preference.py) -> update check -> save -> summary.
"""

from __future__ import annotations

import random
from pathlib import Path

from common.accelerators import check_accelerators
from common.cli import cli
from common.config import parse_config
from common.models import load_policy
from common.rundir import dry_run, finish_stage, prepare_stage_dir, start_clock
from common.stage_configs import DPOArgs
from common.training import set_seed
from data.files import is_user_source
from data.loaders import prompt_plan, rl_prompt_split
from data.preferences import (PreferenceExample, load_humicroedit, load_puns, pairs_from_samples, pun_examples,
                              read_preferences)
from reward.composite import build_scorer
from rl.losses import dpop_loss
from rl.preference import PreferenceLoss, sample_texts_for, train_preferences, trend, write_examples
from rl.rollouts import generate_rows


def dpop(cfg: DPOArgs) -> PreferenceLoss:
    """DPOP on (chosen, rejected) log-probs with the config's beta and lambda."""
    return lambda pi, ref: dpop_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], cfg.beta, cfg.dpop_lambda)


def build_pairs(cfg: DPOArgs, sft_dir: Path) -> list[PreferenceExample]:
    source = cfg.preference_source
    if source == "humicroedit":
        examples = load_humicroedit(Path(cfg.data_dir) if cfg.data_dir else None, cfg.min_grade_gap)
    elif source == "self":
        tasks = rl_prompt_split(cfg)[0][:cfg.self_prompts]
        model, tokenizer = load_policy(cfg.policy_model, [sft_dir], dtype=cfg.model_dtype)
        rows = generate_rows(model, tokenizer, tasks, cfg, build_scorer(cfg), cfg.self_samples, batch_size=16)
        examples = pairs_from_samples({t.id: t for t in tasks}, rows, cfg.min_score_gap)
    elif source == "puns":
        puns = load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs)[:cfg.self_prompts]
        examples = pun_examples(puns, sample_texts_for(cfg, [sft_dir], [p.task() for p in puns], cfg.self_samples),
                                False, cfg.repetition_threshold, cfg.repetition_ngram)
    elif is_user_source(source):
        examples = read_preferences(source)
    else:
        raise ValueError(f"preference_source {source!r}: not humicroedit, self, puns, a file (.jsonl, .json, "
                         f".parquet, ...) or a dataset")
    if cfg.max_pairs is not None and len(examples) > cfg.max_pairs:
        examples = random.Random(cfg.seed).sample(examples, cfg.max_pairs)
    if not examples:
        raise ValueError(f"preference_source {source!r} gave no examples")
    return examples


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(DPOArgs, "dpo", argv)
    if cfg.dry_run:
        plan = prompt_plan(cfg) if cfg.preference_source == "self" else {}
        if cfg.preference_source == "puns":
            plan["puns"] = len(load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs))
        return dry_run(cfg, cfg.loss, preference_source=cfg.preference_source, **plan)
    check_accelerators(cfg)
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, cfg.loss)
    started = start_clock(resume)           # the wall time of earlier segments counts
    sft_dir = cfg.sft_adapter_dir()

    examples = build_pairs(cfg, sft_dir)
    write_examples(out, "pairs", examples)
    print(f"[{cfg.loss}] {len(examples)} preference pairs from {cfg.preference_source}; beta {cfg.beta}"
          + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""))
    loss_fn = dpop(cfg) if cfg.loss == "dpop" else None        # None: TRL's DPOTrainer
    result = train_preferences(cfg, loss_fn, cfg.loss, examples, out, resume, [sft_dir], cfg.max_steps, started)

    figures = {key: trend(result["history"], key, 10) for key in
               ("rewards/chosen", "logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies")}
    report = [f"loss {cfg.loss}, {len(examples)} pairs from {cfg.preference_source}, beta {cfg.beta}"
              + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""), "",
              "| figure (mean of first / last 10 logs) | first | last |", "|---|---|---|",
              *[f"| {k} | {a:.3f} | {b:.3f} |" for k, (a, b) in figures.items() if a is not None], "",
              f"weights moved: {result['update_check']}"]
    (chosen_first, chosen_last), margin_last = figures["rewards/chosen"], figures["rewards/margins"][1]
    headline = f"{len(examples)} pairs" + (
        "" if chosen_first is None else f"; chosen implicit reward beta*(log pi - log ref) {chosen_first:.3f} -> "
                                        f"{chosen_last:.3f}, margin {margin_last or 0:.3f}")
    return finish_stage(out, cfg.loss, {
        "steps": result["steps"], "pairs": len(examples), "preference_source": cfg.preference_source,
        "beta": cfg.beta, "dpop_lambda": cfg.dpop_lambda if cfg.loss == "dpop" else None,
        "chosen_reward_first": chosen_first, "chosen_reward_last": chosen_last,
        "chosen_logp_first": figures["logps/chosen"][0], "chosen_logp_last": figures["logps/chosen"][1],
        "margin_first": figures["rewards/margins"][0], "margin_last": margin_last,
        "accuracy_last": figures["rewards/accuracies"][1], "update_check": result["update_check"],
        "adapter_dir": str(out / "final")}, report, started, headline=headline)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
