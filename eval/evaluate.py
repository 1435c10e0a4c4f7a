"""Evaluate policies (or output files) on the same held-out prompts, and write the run's report.

    python eval/evaluate.py --config configs/cpu_default.yaml                     # base, sft, grpo of the run
    python eval/evaluate.py --config configs/cpu_default.yaml --policies '[sft, grpo, runs/x/grpo/final]'
    python eval/evaluate.py --config configs/cpu_default.yaml --outputs sft=a.jsonl --outputs grpo=b.jsonl

Per policy: generate samples_per_prompt completions of every held-out prompt with the same seed, score them with
every reward component, then the metrics of eval/metrics.py, perplexity under a reference LM and the
RM-judged win rate against the baseline policy; with arena_judge set, the arena (eval/arena.py) of every policy and
best-of-N row, judged side by side. Writes <eval dir>/{<policy>.jsonl, metrics.json, summary.json,
report.md} and the run's own <runs_dir>/<run_name>/report.md: the metrics table, the RM's held-out metrics, each
stage's figures, sample outputs side by side, and PNG plots of every reward component over the RL steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from common.cli import cli
from common.config import parse_config
from common.io import atomic_write_text, write_jsonl
from common.models import load_base_policy, load_policy, policy_adapters, policy_name
from common.rundir import dry_run, finish_stage, prepare_stage_dir
from common.stage_configs import EvalArgs
from common.stages import POLICY_STAGES, RL_STAGES, STAGES
from common.training import set_seed
from data.loaders import prompt_plan, rl_prompt_split
from data.prompts import format_for_model
from eval.arena import run_arena
from eval.metrics import perplexity, read_named_outputs, summarize, win_rate
from eval.plots import plot_scalars, read_scalars, reward_tags
from reward.composite import MODEL_COMPONENTS, component_names, scorer_with
from rl.rollouts import generate_rows

# metric key -> (label, format) for the report table, in display order
TABLE = {
    "stop_rate": ("stop rate (EOS)", "{:.2f}"), "coverage": ("keyword coverage (word prompts)", "{:.3f}"),
    "structure_success": ("both words present", "{:.2f}"), "mean_rm": ("mean RM score (rm_component)", "{:.3f}"),
    "mean_total": ("mean composite reward", "{:.3f}"), "win_rate": ("win rate vs baseline (RM)", "{:.2f}"),
    "dist1_corpus": ("Dist-1 corpus", "{:.3f}"), "dist2_corpus": ("Dist-2 corpus", "{:.3f}"),
    "dist1_sentence": ("Dist-1 sentence", "{:.3f}"), "dist2_sentence": ("Dist-2 sentence", "{:.3f}"),
    "mean_length": ("mean length (words; zh chars)", "{:.1f}"), "perplexity": ("perplexity (reference LM)", "{:.1f}"),
    "script_drift_rate": ("script drift rate", "{:.2f}"), "repetition_rate": ("repetition rate", "{:.2f}"),
    "gibberish_rate": ("gibberish rate", "{:.2f}"), "outputs": ("outputs", "{:d}"),
}


def metrics_table(metrics: dict[str, dict]) -> list[str]:
    names = list(metrics)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, (label, fmt) in TABLE.items():
        if any(m.get(key) is not None for m in metrics.values()):
            cells = [fmt.format(m[key]) if m.get(key) is not None else "-" for m in metrics.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def samples_table(outputs: dict[str, list[dict]], n_prompts: int = 6) -> list[str]:
    """The first sample of each policy for the same prompts, side by side."""
    names = list(outputs)
    first = {name: {} for name in names}
    for name, rows in outputs.items():
        for r in rows:
            first[name].setdefault(r["id"], r)
    ids = list(first[names[0]])[:n_prompts]
    lines = ["| prompt | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for pid in ids:
        r0 = first[names[0]][pid]
        prompt = f"words: {', '.join(r0['words'])}" if r0.get("words") else f"headline: {r0.get('headline') or pid}"
        cells = []
        for name in names:
            r = first[name].get(pid)
            cells.append("-" if r is None else (r["text"][:160] + ("" if r["finished"] else " [no EOS]"))
                         .replace("|", "\\|").replace("\n", " "))
        lines.append(f"| {prompt[:80].replace('|', '/')} | " + " | ".join(cells) + " |")
    return lines


def reward_model_spread(outputs: dict[str, list[dict]]) -> list[str]:
    """How far each trained reward model's scores spread over the policies: a reward that gives every policy
    about the same (a genre detector) cannot rank them. Per model component: its mean per policy, the spread of
    those means (max - min), and the share of outputs it scores above 0.9 (saturation)."""
    names = [n for n in MODEL_COMPONENTS if any(n in rows[0] for rows in outputs.values() if rows)]
    if not names:
        return []
    policies = list(outputs)
    lines = ["## Reward models across policies", "",
             "| reward model | " + " | ".join(policies) + " | spread of means | share > 0.9 |",
             "|---|" + "---|" * (len(policies) + 2)]
    for name in names:
        means = {p: sum(r[name] for r in rows) / len(rows) for p, rows in outputs.items() if rows and name in rows[0]}
        scores = [r[name] for rows in outputs.values() for r in rows if name in r]
        lines.append(f"| {name} | " + " | ".join(f"{means[p]:.3f}" if p in means else "-" for p in policies)
                     + f" | {max(means.values()) - min(means.values()):.3f} | {sum(s > 0.9 for s in scores) / len(scores):.2f} |")
    return lines + [""]


def _stage_summary(run_dir: Path, stage: str) -> dict | None:
    path = run_dir / stage / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_report(cfg, run_dir: Path, metrics: dict, outputs: dict, eval_dir: Path) -> list[str]:
    """The run's report.md: what each stage did, the evaluation, the RM's quality, plots."""
    rm_config = run_dir / "rm" / "config.yaml"
    labeled = yaml.safe_load(rm_config.read_text())["labeled_sources"] if rm_config.is_file() else "-"
    lines = [f"# {cfg.run_name}", "", f"policy `{cfg.policy_model}`, languages {cfg.langs}, "
             f"prompts {cfg.prompt_sources}, labeled data {labeled}", ""]
    stages = {s.name: _stage_summary(run_dir, s.name) for s in STAGES if s.output != "report"}
    lines += ["## Stages", "", "| stage | wall time (s) | steps | figures | weights moved |", "|---|---|---|---|---|"]
    for stage, s in stages.items():
        if s is None:
            continue
        moved = s.get("update_check", {})
        figures = s.get("headline") or "-"
        lines.append(f"| {stage} | {s['wall_time_s']} | {s.get('steps', '-')} | {figures} | "
                     f"{moved.get('moved_tensors', '-')}/{moved.get('trainable_tensors', '-')} tensors, "
                     f"relative change {moved.get('relative_change', float('nan')):.2g} |")
    n_prompts = len({r['id'] for rows in outputs.values() for r in rows})
    lines += ["", f"## Evaluation on {n_prompts} held-out prompts, {cfg.samples_per_prompt} samples each", "",
              *metrics_table(metrics), "",
              f"Coverage and 'both words present' are over word prompts only; the RM score is `{cfg.rm_component}`, "
              "which also judges the win rate's battles "
              f"against `{cfg.baseline}` on the same prompts (ties half). Per-output scores: `{eval_dir}/<policy>.jsonl`.", ""]
    rm = stages.get("rm")
    if rm:
        lines += ["## Reward model (held-out)", "", "| metric | value |", "|---|---|",
                  *[f"| {k} | {v:.4f} |" for k, v in rm["held_out"].items()],
                  f"| majority-class accuracy | {rm['majority_accuracy']:.4f} |", ""]
    for name in ("rm_pairwise", "rm_rating"):
        ranking = stages.get(name)
        if ranking:
            per_source = ranking["held_out"]
            if per_source and not isinstance(next(iter(per_source.values())), dict):
                per_source = {"humicroedit": per_source}        # a summary written before graded sources
            metrics = [k for k in dict.fromkeys(k for m in per_source.values() for k in m)
                       if not k.endswith(("_lo", "_hi"))]          # an interval goes beside its figure
            cell = lambda m, k: (f"{m.get(k, float('nan')):.3f} ({m[k + '_lo']:.3f} to {m[k + '_hi']:.3f})"
                                 if k + "_lo" in m else f"{m.get(k, float('nan')):.4f}")
            sample = (" **Trained without --data_dir: the shipped sample, whose 'held-out' rows are training rows; "
                      "these figures say nothing about people.**" if ranking.get("held_out_is_sample") else "")
            lines += [f"## Ranking reward model `{name}` (held-out, per source; 95 % bootstrap intervals)", "",
                      f"Trained on {ranking.get('train_size', '-')} pairs from {ranking.get('graded_sources')}"
                      f"{', each joke read beside its theme' if ranking.get('with_prompt') else ''}.{sample}", "",
                      "| source | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics),
                      *[f"| {source} | " + " | ".join(cell(m, k) for k in metrics) + " |"
                        for source, m in per_source.items()],
                      "", "`longer_wins` is the baseline that calls the longer text the funnier: a ranking RM is "
                      "worth its pairs only where its interval clears it.", ""]
    lines += reward_model_spread(outputs)
    plots = []
    for stage in RL_STAGES:
        tb = run_dir / stage / "tb"
        if tb.is_dir():
            scalars = read_scalars(tb)
            png = plot_scalars(scalars, reward_tags(scalars), run_dir / "plots" / f"{stage}_rewards.png",
                               f"{cfg.run_name}: {stage} reward components per step")
            if png:
                plots.append(png)
    if plots:
        lines += ["## Reward components over RL steps", "", *[f"![{p.stem}](plots/{p.name})" for p in plots], ""]
    lines += ["## Samples (first sample per prompt)", "", *samples_table(outputs), ""]
    return lines


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--outputs", action="append", default=[],
                     help="NAME=FILE.jsonl: evaluate existing outputs (eval/generate.py rows) instead of generating.")
    cfg = parse_config(EvalArgs, "eval", argv, own=own)
    args, _ = own.parse_known_args(argv)
    run_dir = cfg.run_dir()
    if cfg.dry_run:
        found = {}
        for policy in cfg.policies or ["base", *POLICY_STAGES]:
            try:
                found[policy_name(policy)] = [str(a) for a in policy_adapters(run_dir, policy)]
            except FileNotFoundError as e:
                found[policy_name(policy)] = f"skipped: {e}"
        return dry_run(cfg, "eval", **prompt_plan(cfg), policies=found, reward_components=component_names(cfg))
    started = time.time()
    out, _ = prepare_stage_dir(cfg, "eval")

    outputs = read_named_outputs(args.outputs)
    skipped = {}
    if not outputs:
        tasks = rl_prompt_split(cfg)[1]         # the prompts RL held out of training
        judged_by = [cfg.arena_judge.partition(":")[2]] if (cfg.arena_judge or "").startswith("component:") else []
        fns = scorer_with(cfg, *judged_by, *([cfg.rank_by] if cfg.arena_best_of else []))
        for policy in cfg.policies or ["base", *POLICY_STAGES]:
            name = policy_name(policy)
            try:
                adapters = policy_adapters(run_dir, policy)
            except FileNotFoundError as e:
                skipped[name] = str(e)
                print(f"[eval] skipping {name}: {e}")
                continue
            t0 = time.time()
            model, tokenizer = load_policy(cfg.policy_model, adapters, dtype=cfg.model_dtype)
            set_seed(cfg.seed)                      # every policy samples with the same seed
            outputs[name] = generate_rows(model, tokenizer, tasks, cfg, fns, cfg.samples_per_prompt,
                                           cfg.gen_batch_size)
            write_jsonl(out / f"{name}.jsonl", outputs[name])
            print(f"[eval] {name}: {len(outputs[name])} outputs in {time.time() - t0:.0f} s")
            del model

    metrics = {name: summarize(rows, cfg) for name, rows in outputs.items()}
    if cfg.perplexity_model and all("prompt" in r for rows in outputs.values() for r in rows):
        ref_spec = cfg.policy_model if cfg.perplexity_model == "base" else cfg.perplexity_model
        ref, ref_tok = load_base_policy(ref_spec)
        for name, rows in outputs.items():
            metrics[name]["perplexity"] = perplexity(ref, ref_tok, [format_for_model(ref_tok, r["prompt"]) for r in rows],
                                                     [r["text"] for r in rows], cfg.gen_batch_size)
    judge = cfg.rm_component
    if cfg.baseline and cfg.baseline in outputs and all(judge in rows[0] for rows in outputs.values()):
        for name, rows in outputs.items():
            if name != cfg.baseline:
                metrics[name].update(win_rate(rows, outputs[cfg.baseline], judge))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))

    report = run_report(cfg, run_dir, metrics, outputs, out)
    arena_result = None
    if cfg.arena_judge:
        arena_result, arena_lines = run_arena(cfg, outputs, out, run_dir)
        at = report.index("## Samples (first sample per prompt)") if "## Samples (first sample per prompt)" in report else len(report)
        report[at:at] = arena_lines
        print("\n".join(arena_lines))
    if skipped:
        report += ["## Not evaluated", "", *[f"- {k}: {v}" for k, v in skipped.items()], ""]
    atomic_write_text(run_dir / "report.md", "\n".join(report) + "\n")
    print("\n".join(metrics_table(metrics)))
    print(f"[eval] report -> {run_dir / 'report.md'}")
    return finish_stage(out, "eval", {"metrics": metrics, "skipped": skipped, "report": str(run_dir / "report.md"),
                                      **({"arena": arena_result} if arena_result else {})},
                        metrics_table(metrics), started)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
