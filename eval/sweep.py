"""Reward-weight experiments: one RL run per setting from the same SFT start, seed and prompts, each evaluated on
the same held-out prompts, compared in one table and on a Pareto plot (RM score vs coverage vs Dist-2).

    python eval/sweep.py configs/sweeps/cpu_default_weights.yaml [--data_dir ../shared/data ...]

The sweep file:
    name: weights                       # outputs under <runs_dir>/sweeps/<name>/
    config: configs/cpu_default.yaml    # the base preset; SFT and RM come from its run (<runs_dir>/<run_name>/)
    stage: grpo                         # optional: the RL stage each setting runs (grpo, rloo, ppo; default grpo)
    overrides: {max_steps: 20}          # for every setting (any field of that stage)
    eval: {samples_per_prompt: 2}       # optional: evaluation settings (eval/evaluate.py fields)
    settings:                           # name -> stage fields that differ
      seed: {reward_weights: seed}
      rm_heavy: {reward_weights: {headline: {...}, words: {...}}}
      kl_0.1: {kl_beta: 0.1}
      rloo: {stage: rloo}               # a setting may name its own RL stage: algorithms side by side
The SFT policy itself is evaluated once (<sweep>/start/) as the reference row. Extra command-line flags go to every
run (after the overrides). Each setting's RL run writes <sweep>/<setting>/<stage>/ (TensorBoard in its tb/, so `tensorboard --logdir <sweep>` overlays all runs) and its
evaluation <sweep>/<setting>/eval.json. A setting with eval.json is skipped when the sweep is run again (resume);
one that fails is recorded with its error and the sweep goes on. Every setting's samples are scored with the base
config's weights, so the composite column compares like with like.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

import yaml

from common.cli import cli
from common.config import parse_config, trainer_fields
from common.io import atomic_write_text, write_jsonl
from common.models import load_policy
from common.stage_configs import EvalArgs
from common.stages import RL_STAGES, stage
from common.training import set_seed
from data.loaders import rl_prompt_split
from eval.metrics import summarize
from reward.composite import MODEL_COMPONENTS, build_scorer
from rl.rollouts import generate_rows

# the objectives of the Pareto front, all maximised (mean_rm: the mean of the config's rm_component)
OBJECTIVES = ("mean_rm", "coverage", "dist2_corpus")
COLUMNS = ("setting", "status", "mean_rm", "coverage", "structure_success", "dist2_corpus", "mean_total",
           "stop_rate", "script_drift_rate", "repetition_rate", "mean_length", "kl_last", "train_reward_last",
           "gold_last", "pareto", "wall_time_s")


def read_sweep(path: Path) -> dict:
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for key in ("name", "config", "settings"):
        if key not in spec:
            raise ValueError(f"{path}: missing '{key}' (see eval/sweep.py's docstring for the format)")
    if not isinstance(spec["settings"], dict) or not spec["settings"]:
        raise ValueError(f"{path}: 'settings' must map setting names to fields of the RL stage")
    if spec.get("stage", "grpo") not in RL_STAGES:
        raise ValueError(f"{path}: 'stage' must be one of {list(RL_STAGES)}, got {spec['stage']!r}")
    for name, fields in spec["settings"].items():
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: setting '{name}' must be a mapping of stage fields, got {fields!r}")
        if fields.get("stage", "grpo") not in RL_STAGES:
            raise ValueError(f"{path}: setting '{name}': 'stage' must be one of {list(RL_STAGES)}, got {fields['stage']!r}")
    return spec


def as_flags(fields: dict) -> list[str]:
    """{'kl_beta': 0.1, 'reward_weights': {...}} -> ['--kl_beta', '0.1', '--reward_weights', '{...}'] (YAML values)."""
    flags = []
    for key, value in fields.items():
        flags += [f"--{key}", value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip()]
    return flags


def flags_for(cls, flags: list[str]) -> list[str]:
    """The `--field value` pairs of the sweep's command line that a config class (or its trainer's config) knows:
    the sweep passes one command line to the RL stage and to the evaluation, which take different fields."""
    known = {f.name for f in dataclasses.fields(cls)} | trainer_fields(cls)
    pairs = list(zip(flags[::2], flags[1::2]))
    return [x for key, value in pairs if key.removeprefix("--") in known for x in (key, value)]


def pareto_front(rows: list[dict], objectives=OBJECTIVES) -> list[bool]:
    """True for each row no other row dominates (at least as good in every objective, better in one).

    >>> pareto_front([{"a": 1, "b": 1}, {"a": 2, "b": 0}, {"a": 0.5, "b": 0.5}], ("a", "b"))
    [True, True, False]
    """
    def dominates(x, y):       # a missing objective (None) counts as the worst value
        a, b = ([r.get(k) if r.get(k) is not None else float("-inf") for k in objectives] for r in (x, y))
        return all(p >= q for p, q in zip(a, b)) and any(p > q for p, q in zip(a, b))

    return [not any(dominates(o, r) for o in rows if o is not r) for r in rows]


def evaluate_setting(cfg: EvalArgs, adapters: list[Path], fns: dict, out: Path) -> dict:
    model, tokenizer = load_policy(cfg.policy_model, adapters, dtype=cfg.model_dtype)
    set_seed(cfg.seed)
    rows = generate_rows(model, tokenizer, rl_prompt_split(cfg)[1], cfg, fns, cfg.samples_per_prompt, cfg.gen_batch_size)
    write_jsonl(out / "samples.jsonl", rows)
    return summarize(rows, cfg)


def plot_front(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (x, y) in zip(axes, (("coverage", "mean_rm"), ("dist2_corpus", "mean_rm"))):
        points = ax.scatter([r[x] for r in rows], [r[y] for r in rows], c=[r["dist2_corpus"] for r in rows],
                            cmap="viridis", s=[90 if r["pareto"] else 40 for r in rows],
                            edgecolors=["red" if r["pareto"] else "none" for r in rows], linewidths=1.5)
        for r in rows:
            ax.annotate(r["setting"], (r[x], r[y]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    fig.colorbar(points, ax=axes, label="Dist-2 (corpus)")
    fig.suptitle(f"{title}: red rings = Pareto front over RM score, coverage, Dist-2", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_results(sweep_dir: Path, spec: dict, results: dict[str, dict]) -> list[dict]:
    done = [dict(setting=name, **r) for name, r in results.items() if r.get("status") == "done"]
    for row, on_front in zip(done, pareto_front(done) if done else []):
        row["pareto"] = on_front
    reference = [dict(setting=name, **r) for name, r in results.items() if r.get("status") == "reference"]
    rows = reference + done + [dict(setting=name, **r) for name, r in results.items()
                               if r.get("status") not in ("done", "reference")]
    # every trained scorer the evaluation weights (even at 0) gets its column: binary vs ranking RM side by side
    models = [f"mean_{c}" for c in MODEL_COMPONENTS if any(r.get(f"mean_{c}") is not None for r in rows)]
    columns = [*COLUMNS[:3], *models, *COLUMNS[3:]]
    with (sweep_dir / "summary.csv.tmp").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "summary.csv.tmp").replace(sweep_dir / "summary.csv")

    def cell(row, key):
        value = row.get(key)
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    shown = [c for c in columns if c not in ("status", "wall_time_s")]
    lines = [f"# sweep {spec['name']}", "", f"base config `{spec['config']}`, overrides {spec.get('overrides', {})}; "
             f"every setting starts from the same SFT adapter with the same seed and is evaluated on the same "
             f"held-out prompts, its samples scored with the base config's weights.", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(cell(r, c) for c in shown) + " |" for r in reference + done]
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        lines += ["", "## failed settings", "", *[f"- {r['setting']}: {r.get('error', '')[:300]}" for r in failed]]
    if len(done) >= 1:
        plot_front(done, sweep_dir / "pareto.png", spec["name"])
        lines += ["", "![pareto](pareto.png)"]
    lines += ["", "## settings", "", "```yaml", yaml.safe_dump(spec["settings"], sort_keys=False).strip(), "```",
              "", f"TensorBoard: `tensorboard --logdir {sweep_dir}`"]
    atomic_write_text(sweep_dir / "report.md", "\n".join(lines) + "\n")
    return rows


def read_result(path: Path, rm_component: str) -> dict:
    """A setting's eval.json; one written before mean_rm existed takes it from mean_<rm_component>."""
    result = json.loads(path.read_text())
    if result.get("mean_rm") is None:
        result["mean_rm"] = result.get(f"mean_{rm_component}")
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="sweep", description=__doc__.split("\n\n")[0],
                                     epilog="Any other --field value goes to every run and evaluation that knows it.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_file", type=Path, help="The sweep YAML (see the format in eval/sweep.py's docstring).")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    sweep_file = args.sweep_file
    spec = read_sweep(sweep_file)
    base = ["--config", spec["config"]]
    eval_cfg = parse_config(EvalArgs, "eval", base + flags_for(EvalArgs, extra) + as_flags(spec.get("eval", {})))
    sweep_dir = Path(eval_cfg.runs_dir) / "sweeps" / spec["name"]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / "sweep.yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    run_dir = eval_cfg.run_dir()
    sft_dir, rm_dir = run_dir / "sft" / "final", eval_cfg.reward_model_dir()
    for needed in (sft_dir, rm_dir):
        if not needed.is_dir():
            raise SystemExit(f"sweep: {needed} not found; run SFT and the reward model of run '{eval_cfg.run_name}' first")
    fns = build_scorer(eval_cfg)

    results: dict[str, dict] = {}
    start_file = sweep_dir / "start" / "eval.json"       # the SFT policy every setting starts from, for reference
    if not start_file.is_file():
        start_file.parent.mkdir(exist_ok=True)
        start = {"status": "reference", **evaluate_setting(eval_cfg, [sft_dir], fns, start_file.parent)}
        atomic_write_text(start_file, json.dumps(start, indent=2))
    results["start (sft)"] = read_result(start_file, eval_cfg.rm_component)
    for name, setting in spec["settings"].items():
        fields = {k: v for k, v in setting.items() if k != "stage"}
        rl_stage = stage(setting.get("stage", spec.get("stage", "grpo")))
        train = importlib.import_module(rl_stage.module).main     # the stage's entry point, from the stage list
        out = sweep_dir / name
        result_file = out / "eval.json"
        if result_file.is_file():
            results[name] = read_result(result_file, eval_cfg.rm_component)
            print(f"[sweep] {name}: done before, skipped")
            continue
        started = time.time()
        try:
            stage_dir = out / rl_stage.name
            if not (stage_dir / "summary.json").is_file():
                print(f"[sweep] {name}: {rl_stage.name} with {fields}")
                train(base + as_flags(spec.get("overrides", {})) + as_flags(fields) + flags_for(rl_stage.config, extra)
                      + ["--output_dir", str(stage_dir), "--sft_adapter", str(sft_dir), "--reward_model", str(rm_dir)])
            trained = json.loads((stage_dir / "summary.json").read_text())
            metrics = evaluate_setting(eval_cfg, [sft_dir, stage_dir / "final"], fns, out)
            result = {"status": "done", **metrics, "kl_last": trained.get("kl_last"),
                      "train_reward_last": trained.get("reward_last"), "stage": rl_stage.name, "fields": fields,
                      "gold_last": trained["gold_watch"][-1]["gold"] if trained.get("gold_watch") else None,
                      "wall_time_s": round(time.time() - started, 1)}
            atomic_write_text(result_file, json.dumps(result, indent=2))
        except Exception as e:           # a failed setting is recorded; the others still run
            traceback.print_exc()
            result = {"status": "failed", "error": f"{type(e).__name__}: {e}", "fields": fields}
            print(f"[sweep] {name}: FAILED ({result['error'][:200]}); going on")
        results[name] = result
        write_results(sweep_dir, spec, results)
    rows = write_results(sweep_dir, spec, results)
    print(f"[sweep] {sum(r['status'] == 'done' for r in rows)}/{len(spec['settings'])} settings done -> {sweep_dir}/report.md")
    return rows


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
