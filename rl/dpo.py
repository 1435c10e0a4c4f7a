"""Offline preference training of the SFT policy on pairs: DPO (TRL) and DPOP (ours).

    python rl/dpo.py --config configs/tiny.yaml --loss dpo                 # TRL's DPOTrainer
    python rl/dpo.py --config configs/tiny.yaml --loss dpop                # ours: DPO-Positive, rl/losses.py
The two-stage pun curriculum PGCL has its own entry point, rl/pgcl.py.

parse config -> pairs (Humicroedit human pairs, the policy's own ranked samples, gold puns vs own failures, or a
file; a file's pairs in --langs only, at most max_pairs) -> the token budget (prompts cut on the left to
max_prompt_tokens, completions to what max_length leaves; pairs that cannot fit dropped, and a refusal when more
than max_dropped_share of them is) -> base + SFT adapter merged + a fresh LoRA, reference = the LoRA disabled (the
SFT policy) -> train (rl/preference.py) -> update check -> save -> summary. Every pair read is accounted for in
summary.json's pair_accounting: used, or dropped by reason.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

from common.accelerators import check_accelerators
from common.cli import cli
from common.config import parse_config
from common.models import load_policy, load_policy_tokenizer
from common.rundir import dry_run, finish_stage, prepare_stage_dir, start_clock
from common.stage_configs import DPOArgs
from common.training import set_seed
from data.files import is_user_source
from data.loaders import prompt_plan, rl_prompt_split
from data.preferences import (
    PreferenceExample,
    load_humicroedit,
    load_puns,
    pairs_from_samples,
    pun_examples,
    read_preferences,
)
from reward.composite import build_scorer
from rl.losses import dpop_loss
from rl.preference import (
    BUDGET_DROPS,
    FittedPair,
    PreferenceLoss,
    fit_pairs,
    sample_texts_for,
    train_preferences,
    trend,
    write_examples,
)
from rl.rollouts import generate_rows


def dpop(cfg: DPOArgs) -> PreferenceLoss:
    """DPOP on (chosen, rejected) log-probs with the config's beta and lambda."""
    return lambda pi, ref: dpop_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], cfg.beta, cfg.dpop_lambda)


def source_examples(cfg: DPOArgs, sft_dir: Path) -> list[PreferenceExample]:
    """Every example the preference source gives ('self' and 'puns' sample the SFT policy for theirs)."""
    source = cfg.preference_source
    if source == "humicroedit":
        return load_humicroedit(Path(cfg.data_dir) if cfg.data_dir else None, cfg.min_grade_gap)
    if source == "self":
        tasks = rl_prompt_split(cfg)[0][:cfg.self_prompts]
        model, tokenizer = load_policy(cfg.policy_model, [sft_dir], dtype=cfg.model_dtype)
        rows = generate_rows(model, tokenizer, tasks, cfg, build_scorer(cfg), cfg.self_samples, batch_size=16)
        return pairs_from_samples({t.id: t for t in tasks}, rows, cfg.min_score_gap)
    if source == "puns":
        puns = load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs)[:cfg.self_prompts]
        return pun_examples(puns, sample_texts_for(cfg, [sft_dir], [p.task() for p in puns], cfg.self_samples),
                            False, cfg.repetition_threshold, cfg.repetition_ngram)
    if is_user_source(source):
        return read_preferences(source)
    raise ValueError(f"preference_source {source!r}: not humicroedit, self, puns, a file (.jsonl, .json, "
                     f".parquet, ...) or a dataset")


def keep_langs(examples: list[PreferenceExample], langs: list[str]) -> tuple[list[PreferenceExample], Counter]:
    """The examples whose task is in one of langs, and how many of each other language were left out."""
    kept = [ex for ex in examples if ex.task.lang in langs]
    return kept, Counter(ex.task.lang for ex in examples if ex.task.lang not in langs)


def select_examples(cfg: DPOArgs, examples: list[PreferenceExample]) -> tuple[list[PreferenceExample], dict]:
    """A file's examples in cfg.langs (the other sources are chosen by language already), then at most max_pairs
    of them (a seeded sample): (the examples, counts {read, dropped: {lang_<xx>, over_max_pairs}})."""
    read, dropped = len(examples), Counter()
    if is_user_source(cfg.preference_source):
        examples, other_langs = keep_langs(examples, cfg.langs)
        dropped.update({f"lang_{lang}": n for lang, n in sorted(other_langs.items())})
    if cfg.max_pairs is not None and len(examples) > cfg.max_pairs:
        dropped["over_max_pairs"] = len(examples) - cfg.max_pairs
        examples = random.Random(cfg.seed).sample(examples, cfg.max_pairs)
    if not examples:
        left_out = f" ({read} read, all left out: {dict(dropped)}; --langs is {cfg.langs})" if read else ""
        raise ValueError(f"preference_source {cfg.preference_source!r} gave no examples{left_out}")
    return examples, {"read": read, "dropped": dict(dropped)}


def build_pairs(cfg: DPOArgs, sft_dir: Path) -> tuple[list[PreferenceExample], dict]:
    """The source's examples after langs and max_pairs, and their counts (select_examples)."""
    return select_examples(cfg, source_examples(cfg, sft_dir))


def fit_to_budget(cfg: DPOArgs, examples: list[PreferenceExample], selection: dict) -> tuple[list[FittedPair], dict]:
    """The examples fitted to max_prompt_tokens / max_length with the policy's tokenizer (its weights are not
    needed), and the stage's accounting of every pair read: {read, used, dropped: {reason: n}, prompts_cut,
    completions_cut, max_prompt_tokens, max_length}; read = used + all dropped."""
    tokenizer = load_policy_tokenizer(cfg.policy_model)
    pairs, budget = fit_pairs(tokenizer, examples, cfg.max_prompt_tokens, cfg.max_length, cfg.min_completion_tokens)
    accounting = {"read": selection["read"], "used": len(pairs),
                  "dropped": {**selection["dropped"], **budget["dropped"]}, "prompts_cut": budget["prompts_cut"],
                  "completions_cut": budget["completions_cut"], "max_prompt_tokens": cfg.max_prompt_tokens,
                  "max_length": cfg.max_length}
    check_dropped_share(cfg, accounting)
    return pairs, accounting


def check_dropped_share(cfg: DPOArgs, accounting: dict) -> None:
    """Refuse, in one line, when more than max_dropped_share of the pairs that reached the token budget does not fit
    it: training on the rest would silently answer another question than the data asked."""
    lost = {reason: n for reason, n in accounting["dropped"].items() if reason in BUDGET_DROPS}
    reached = accounting["used"] + sum(lost.values())
    share = sum(lost.values()) / reached if reached else 0.0
    fix = "raise max_length or lower max_prompt_tokens"
    what = (f"{sum(lost.values())} of {reached} preference pairs ({share:.0%}) do not fit max_length {cfg.max_length} "
            f"with prompts cut to max_prompt_tokens {cfg.max_prompt_tokens} "
            f"({', '.join(f'{reason} {n}' for reason, n in lost.items())})")
    if not accounting["used"]:
        raise ValueError(f"{what}: nothing to train on; {fix}")
    if share > cfg.max_dropped_share:
        raise ValueError(f"{what}, more than max_dropped_share {cfg.max_dropped_share}: {fix}, or accept the loss "
                         f"with --max_dropped_share {math.ceil(share * 100) / 100}")


def describe_accounting(accounting: dict) -> str:
    """One line: pairs read, used, dropped by reason, cuts."""
    dropped = ", ".join(f"{reason} {n}" for reason, n in accounting["dropped"].items()) or "none"
    return (f"{accounting['read']} pairs read, {accounting['used']} used; dropped: {dropped}; prompts cut on the left "
            f"to {accounting['max_prompt_tokens']} tokens: {accounting['prompts_cut']}, completions cut to fit "
            f"max_length {accounting['max_length']}: {accounting['completions_cut']}")


def dry_run_plan(cfg: DPOArgs) -> dict:
    """What a dry run can resolve without the policy's weights: a file's or Humicroedit's pairs read and fitted
    to the token budget with the tokenizer alone (the same errors and refusal as a real run); the prompts of
    'self' and the puns of 'puns' (whose pairs need the policy's samples)."""
    source = cfg.preference_source
    if source == "self":
        return prompt_plan(cfg)
    if source == "puns":
        return {"puns": len(load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs))}
    examples, selection = build_pairs(cfg, cfg.sft_adapter_dir())
    _, accounting = fit_to_budget(cfg, examples, selection)
    print(f"[{cfg.loss}] {describe_accounting(accounting)}")
    return {"pair_accounting": accounting}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(DPOArgs, "dpo", argv)
    if cfg.dry_run:
        return dry_run(cfg, cfg.loss, preference_source=cfg.preference_source, **dry_run_plan(cfg))
    check_accelerators(cfg)
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, cfg.loss)
    started = start_clock(resume)           # the wall time of earlier segments counts
    sft_dir = cfg.sft_adapter_dir()

    examples, selection = build_pairs(cfg, sft_dir)
    pairs, accounting = fit_to_budget(cfg, examples, selection)
    write_examples(out, "pairs", [p.example for p in pairs])
    print(f"[{cfg.loss}] {describe_accounting(accounting)}")
    print(f"[{cfg.loss}] {len(pairs)} preference pairs from {cfg.preference_source}; beta {cfg.beta}"
          + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""))
    loss_fn = dpop(cfg) if cfg.loss == "dpop" else None        # None: TRL's DPOTrainer
    result = train_preferences(cfg, loss_fn, cfg.loss, pairs, out, resume, [sft_dir], cfg.max_steps, started)

    figures = {key: trend(result["history"], key, 10) for key in
               ("rewards/chosen", "logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies")}
    report = [f"loss {cfg.loss}, {len(pairs)} pairs from {cfg.preference_source}, beta {cfg.beta}"
              + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""), "", describe_accounting(accounting), "",
              "| figure (mean of first / last 10 logs) | first | last |", "|---|---|---|",
              *[f"| {k} | {a:.3f} | {b:.3f} |" for k, (a, b) in figures.items() if a is not None], "",
              f"weights moved: {result['update_check']}"]
    (chosen_first, chosen_last), margin_last = figures["rewards/chosen"], figures["rewards/margins"][1]
    headline = f"{len(pairs)} pairs" + (
        "" if chosen_first is None else f"; chosen implicit reward beta*(log pi - log ref) {chosen_first:.3f} -> "
                                        f"{chosen_last:.3f}, margin {margin_last or 0:.3f}")
    return finish_stage(out, cfg.loss, {
        "steps": result["steps"], "pairs": len(pairs), "pair_accounting": accounting,
        "preference_source": cfg.preference_source,
        "beta": cfg.beta, "dpop_lambda": cfg.dpop_lambda if cfg.loss == "dpop" else None,
        "chosen_reward_first": chosen_first, "chosen_reward_last": chosen_last,
        "chosen_logp_first": figures["logps/chosen"][0], "chosen_logp_last": figures["logps/chosen"][1],
        "margin_first": figures["rewards/margins"][0], "margin_last": margin_last,
        "accuracy_last": figures["rewards/accuracies"][1], "update_check": result["update_check"],
        "adapter_dir": str(out / "final")}, report, started, headline=headline)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
