"""A SemEval-2026 Task 1 (MWAHAHA) subtask-A submission: best of N samples per input, then validation.

    python eval/submit.py --config configs/cpu_default.yaml --policy grpo \
        --tsv ../shared/data/mwahaha/test/task-a-en.tsv --best_of 4
    python eval/submit.py --validate runs/cpu_default/submission/task-a-en.tsv --tsv ../shared/data/mwahaha/test/task-a-en.tsv

For each input (id, word1, word2, headline; '-' unused) the policy samples best_of jokes; the chosen one is the
highest `rank_by` score (default the composite 'total'; e.g. rank_reward for a preference RM) among those that
contain both required words (word prompts), or among all when none does (eval/metrics.py best_of_rows). The file is TSV `id<TAB>text` with a header, as the organisers' baseline files. Validation: every input id
present exactly once and no other, no empty or multi-line text, the language's script (script_drift_penalty under
a threshold), both words present for word prompts. Every failure is listed; the summary goes to a JSON file.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from common.cli import cli
from common.config import parse_config
from common.io import atomic_write_text, write_jsonl
from common.models import load_policy, policy_adapters
from common.stage_configs import GenerateArgs
from common.training import set_seed
from data.files import decode_file
from data.loaders import TaskPrompt, read_task_tsv
from data.text import contains_word
from eval.metrics import best_of_rows
from reward.components import coverage_reward, script_drift_penalty
from reward.composite import scorer_with
from rl.rollouts import generate_rows


def one_line(text: str) -> str:
    return " ".join(text.split())


def write_submission(path: Path, chosen: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(["id", "text"])
    for r in chosen:
        writer.writerow([r["id"], one_line(r["text"])])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buffer.getvalue())


def read_submission(path: Path) -> list[tuple[int, str, str]]:
    """(line, id, text) rows; a malformed line is an error naming the file and line."""
    with io.StringIO(decode_file(path), newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader, None)
        if header != ["id", "text"]:
            raise ValueError(f"{path}:1: header must be 'id<TAB>text', got {header!r}")
        out = []
        for row in reader:
            if len(row) != 2:
                raise ValueError(f"{path}:{reader.line_num}: expected 2 tab-separated fields (id, text), got {len(row)}")
            out.append((reader.line_num, row[0], row[1]))
    return out


def validate(path: Path, tasks: list[TaskPrompt], max_drift: float) -> dict:
    """Every check of the module docstring; returns counts and each failure with its line. max_drift: the share of
    letters outside the language's script a joke may have (the config's drift_threshold)."""
    rows = read_submission(path)
    expected = {t.id: t for t in tasks}
    failures: list[str] = []
    seen: dict[str, int] = {}
    for line, pid, text in rows:
        if pid in seen:
            failures.append(f"line {line}: id {pid} repeated (first on line {seen[pid]})")
            continue
        seen[pid] = line
        task = expected.get(pid)
        if task is None:
            failures.append(f"line {line}: id {pid} is not an input id")
            continue
        if not text.strip():
            failures.append(f"line {line}: {pid}: empty text")
            continue
        if "\n" in text or "\r" in text:
            failures.append(f"line {line}: {pid}: text spans several lines")
        drift = script_drift_penalty([text], lang=task.lang)[0]
        if drift > max_drift:
            failures.append(f"line {line}: {pid}: {drift:.0%} of letters outside the {task.lang} script")
        if task.words and coverage_reward([text], words=[list(task.words)], lang=[task.lang])[0] != 1.0:
            missing = [w for w in task.words if not contains_word(text, w, task.lang)]
            failures.append(f"line {line}: {pid}: required word(s) missing: {missing}")
    missing_ids = [pid for pid in expected if pid not in seen]
    failures += [f"id {pid} missing" for pid in missing_ids]
    return {"file": str(path), "inputs": len(expected), "rows": len(rows), "missing_ids": len(missing_ids),
            "word_prompts": sum(bool(t.words) for t in tasks), "failures": len(failures),
            "valid": not failures, "failure_list": failures}


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--tsv", required=True, help="MWAHAHA task-a input TSV (id, word1, word2, headline).")
    own.add_argument("--best_of", type=int, default=4, help="Samples per input to choose from.")
    own.add_argument("--out", default=None, help="Submission TSV (default <runs_dir>/<run_name>/submission/<tsv name>).")
    own.add_argument("--validate", default=None, help="Only validate this submission file against --tsv.")
    cfg = parse_config(GenerateArgs, "generate", argv, own=own)
    args, _ = own.parse_known_args(argv)
    tasks = read_task_tsv(Path(args.tsv))
    if args.validate:
        report = validate(Path(args.validate), tasks, cfg.drift_threshold)
    else:
        set_seed(cfg.seed)
        out = Path(args.out) if args.out else cfg.previous_stage_dir("submission") / Path(args.tsv).name
        if out.exists():
            raise FileExistsError(f"{out} exists; a submission is never overwritten: pick another --out")
        model, tokenizer = load_policy(cfg.policy_model, policy_adapters(cfg.run_dir(), cfg.policy), dtype=cfg.model_dtype)
        rows = generate_rows(model, tokenizer, tasks, cfg, scorer_with(cfg, cfg.rank_by), args.best_of,
                             cfg.gen_batch_size)
        write_jsonl(out.with_suffix(".samples.jsonl"), rows)
        best = {r["id"]: r for r in best_of_rows(rows, cfg.rank_by)}
        write_submission(out, [best[t.id] for t in tasks])
        report = validate(out, tasks, cfg.drift_threshold)
        report["best_of"] = args.best_of
        report["rank_by"] = cfg.rank_by
        report["policy"] = cfg.policy
    summary = Path(report["file"]).with_suffix(".validation.json")
    atomic_write_text(summary, json.dumps(report, indent=2, ensure_ascii=False))
    print(f"[submit] {report['file']}: {report['rows']} rows for {report['inputs']} inputs, "
          f"{report['failures']} failure(s) -> {summary}")
    for failure in report["failure_list"][:20]:
        print(f"  {failure}")
    return report


def main_checked(argv: list[str] | None = None) -> dict:
    """main, exiting 1 when the submission has any failure, so that a script never uploads a broken file."""
    report = main(argv)
    if not report["valid"]:
        raise SystemExit(1)
    return report


entry = cli(main_checked)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
