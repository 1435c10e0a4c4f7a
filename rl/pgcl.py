"""The two-stage pun curriculum PGCL, from the SFT policy.

    python rl/pgcl.py --config configs/tiny.yaml

stage 1 (structure): DPO (TRL) of gold puns over the SFT policy's own samples that fail the structure check
         (pun word absent, or one phrase repeated) -> <stage>/stage1/final
stage 2 (humor):     the three-way loss of rl/losses.py over (gold, y*, fail) sampled from the stage-1 policy, whose
         merged weights are the reference; y* passes the check and is the weakest by the RM -> <stage>/final
Structure success is measured on held-out pun prompts before stage 1, after it and after stage 2.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from common.accelerators import check_accelerators
from common.cli import cli
from common.config import parse_config
from common.io import atomic_write_text
from common.rundir import dry_run, finish_stage, last_checkpoint, prepare_stage_dir, start_clock
from common.stage_configs import PGCLArgs
from common.training import set_seed
from data.preferences import Pun, load_puns, pun_examples
from reward.composite import build_scorer, task_columns
from rl.losses import pgcl_loss
from rl.preference import PreferenceLoss, measure_structure, sample_texts_for, train_preferences, trend, write_examples


def three_way(cfg: PGCLArgs) -> PreferenceLoss:
    """PGCL's stage-2 loss on (gold, y*, fail) log-probs with the config's beta and term weights."""
    return lambda pi, ref: pgcl_loss(pi[:, 0], pi[:, 1], pi[:, 2], ref[:, 0], ref[:, 1], ref[:, 2], cfg.beta,
                                     cfg.pgcl_gold_weight, cfg.pgcl_fail_weight)


def rm_scores(cfg: PGCLArgs, puns: list[Pun], rows: list[dict]) -> dict[str, float] | None:
    """text -> score of the RM component (cfg.rm_component) for the samples, or None when no RM was trained."""
    if not cfg.reward_model_dir().is_dir():
        return None
    judge = build_scorer(cfg, [cfg.rm_component])[cfg.rm_component]
    tasks = {p.id: p.task() for p in puns}
    scored = [r for r in rows if r["text"]]
    values = judge([r["text"] for r in scored], finished=[True] * len(scored),
                   **task_columns([tasks[r["id"]] for r in scored]))
    return {r["text"]: v for r, v in zip(scored, values)}


def stage1(cfg: PGCLArgs, train: list[Pun], sft_dir: Path, stage1_dir: Path) -> dict:
    """Structure: gold pun > the SFT policy's own sample failing the check. Resumes or skips a finished stage 1."""
    if not (stage1_dir / "final").is_dir():
        rows = sample_texts_for(cfg, [sft_dir], [p.task() for p in train], cfg.self_samples)
        pairs = pun_examples(train, rows, False, cfg.repetition_threshold, cfg.repetition_ngram)
        if not pairs:
            raise ValueError(f"pgcl stage 1: no pun prompt got a sample failing the structure check "
                             f"({len(train)} prompts x {cfg.self_samples} samples): nothing to learn")
        stage1_dir.mkdir(parents=True, exist_ok=True)
        write_examples(stage1_dir, "pairs", pairs)
        print(f"[pgcl] stage 1: {len(pairs)} structure pairs (gold > own failure)")
        resume = last_checkpoint(stage1_dir)
        result = train_preferences(cfg, None, "pgcl stage 1", pairs, stage1_dir, str(resume) if resume else None,
                                   [sft_dir], cfg.stage1_max_steps or cfg.max_steps, start_clock(resume))
        summary = {"examples": len(pairs), "steps": result["steps"], "update_check": result["update_check"],
                   "chosen_logp": trend(result["history"], "logps/chosen"), "budget": result["budget"]}
        atomic_write_text(stage1_dir / "stage1.json", json.dumps(summary, indent=2, default=str))
    return json.loads((stage1_dir / "stage1.json").read_text())


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(PGCLArgs, "pgcl", argv)
    puns = load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs)
    if cfg.dry_run:
        return dry_run(cfg, "pgcl", pun_sources=cfg.pun_sources, puns=len(puns))
    check_accelerators(cfg)
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, "pgcl")
    started = start_clock(resume)           # the wall time of earlier segments counts
    sft_dir = cfg.sft_adapter_dir()
    random.Random(cfg.seed).shuffle(puns)
    held_out, train = puns[:cfg.structure_eval_prompts], puns[cfg.structure_eval_prompts:][:cfg.self_prompts]
    held_tasks = [p.task() for p in held_out]
    success = {"sft": measure_structure(cfg, [sft_dir], held_tasks, out, "sft")}

    # stage 1: structure
    stage1_summary = stage1(cfg, train, sft_dir, out / "stage1")
    stage1_adapters = [sft_dir, out / "stage1" / "final"]
    success["stage1"] = measure_structure(cfg, stage1_adapters, held_tasks, out, "stage1")

    # stage 2: humor. gold > y* (structure ok, weakest by the RM) > fail, reference = the stage-1 policy
    rows = sample_texts_for(cfg, stage1_adapters, [p.task() for p in train], cfg.self_samples)
    triples = pun_examples(train, rows, True, cfg.repetition_threshold, cfg.repetition_ngram, rm_scores(cfg, train, rows))
    if not triples:
        raise ValueError(f"pgcl stage 2: no pun prompt got both a structure-ok and a failing sample from the stage-1 "
                         f"policy ({len(train)} prompts x {cfg.self_samples} samples); raise self_samples")
    write_examples(out, "triples", triples)
    print(f"[pgcl] stage 2: {len(triples)} triples (gold > y* > fail); weights gold {cfg.pgcl_gold_weight}, "
          f"fail {cfg.pgcl_fail_weight}")
    result = train_preferences(cfg, three_way(cfg), "pgcl", triples, out, resume, stage1_adapters, cfg.max_steps, started)
    success["stage2"] = measure_structure(cfg, stage1_adapters + [out / "final"], held_tasks, out, "stage2")

    report = [f"PGCL on {len(puns)} puns ({cfg.pun_sources}, {cfg.langs}); {len(held_out)} held out",
              f"stage 1: {stage1_summary['examples']} pairs, {stage1_summary['steps']} steps; "
              f"stage 2: {len(triples)} triples, {result['steps']} steps", "",
              "| policy | pun word present | structure ok (word present, not repetitive) |", "|---|---|---|",
              *[f"| {k} | {v['word_present']:.2f} | {v['ok']:.2f} |" for k, v in success.items()], "",
              "(held-out pun prompts, 2 samples each: structure_<policy>.jsonl)", "",
              f"weights moved (stage 2): {result['update_check']}"]
    headline = "pun structure ok " + " -> ".join(f"{k} {v['ok']:.2f}" for k, v in success.items())
    return finish_stage(out, "pgcl", {
        "steps": result["steps"], "stage1": stage1_summary, "triples": len(triples), "budget": result["budget"],
        "structure_success": success,
        "gold_weight": cfg.pgcl_gold_weight, "fail_weight": cfg.pgcl_fail_weight, "beta": cfg.beta,
        "chosen_logp": trend(result["history"], "logps/chosen"), "update_check": result["update_check"],
        "adapter_dir": str(out / "final")}, report, started, headline=headline)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
