"""Annotate labeled jokes into task data with a local instruct LLM: the seeds' data step before SFT (data/annotate.py
holds the prompts' use, the parsing and the validation; this file loads the annotator and runs it).

    python sft/annotate.py --config configs/cpu_default.yaml --max_jokes 64
    python sft/annotate.py --config configs/gpu_qwen3_1.7b.yaml --annotator_model Qwen/Qwen2.5-7B-Instruct --use_vllm

Writes <runs_dir>/<run_name>/annotate/: annotations.jsonl (id, lang, joke, headline, word1, word2, annotator,
raw), rejected.jsonl (with the reason), summary.json and report.md. A rerun skips the jokes already done, so a kill
loses at most the batch in flight. The output feeds SFT (sft_sources), the reward model (annotations, with
with_prompt) and RL (as a prompt source).
"""

from __future__ import annotations

import random
import time

import yaml

from common.accelerators import check_accelerators
from common.cli import cli
from common.config import parse_config, to_dict
from common.generation import sample_completions
from common.io import atomic_write_text
from common.models import load_base_policy
from common.rundir import acquire_lock, dry_run, finish_stage
from common.stage_configs import AnnotateArgs
from common.training import set_seed
from data.annotate import REASONS, annotate, read_annotations
from data.loaders import load_labeled
from data.prompts import format_for_model


def hf_generator(cfg: AnnotateArgs):
    """generate(prompts, attempt) -> answers with transformers: greedy first (cfg.greedy), sampled retries."""
    model, tokenizer = load_base_policy(cfg.annotator_model, dtype=cfg.model_dtype)

    def generate(prompts: list[str], attempt: int) -> list[str]:
        greedy = cfg.greedy and attempt == 0
        samples = sample_completions(model, tokenizer, [format_for_model(tokenizer, p) for p in prompts],
                                     cfg.max_new_tokens, cfg.retry_temperature, cfg.top_p, batch_size=len(prompts),
                                     max_prompt_tokens=cfg.max_prompt_tokens, greedy=greedy, progress=False)
        return [s.text for s in samples]

    return generate


def vllm_generator(cfg: AnnotateArgs):
    """The same with vLLM (GPU only): the chat template from its tokenizer, one batched call per attempt."""
    from vllm import LLM, SamplingParams

    llm = LLM(cfg.annotator_model, dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[cfg.model_dtype])
    tokenizer = llm.get_tokenizer()

    def generate(prompts: list[str], attempt: int) -> list[str]:
        temperature = 0.0 if cfg.greedy and attempt == 0 else cfg.retry_temperature
        params = SamplingParams(temperature=temperature, top_p=cfg.top_p, max_tokens=cfg.max_new_tokens)
        outputs = llm.generate([format_for_model(tokenizer, p) for p in prompts], params)
        return [o.outputs[0].text for o in outputs]

    return generate


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(AnnotateArgs, "annotate", argv)
    jokes = [r for r in load_labeled(cfg.labeled_sources, cfg.data_dir, cfg.langs, cfg.max_rows_per_source, cfg.seed)
             if r.label == 1]
    if cfg.max_jokes is not None and len(jokes) > cfg.max_jokes:
        jokes = random.Random(cfg.seed).sample(jokes, cfg.max_jokes)
    out = cfg.stage_dir("annotate")
    if cfg.dry_run:
        return dry_run(cfg, "annotate", labeled_sources=cfg.labeled_sources, jokes=len(jokes),
                       done_before=len(read_annotations(out)) if (out / "annotations.jsonl").is_file() else 0)
    check_accelerators(cfg)
    set_seed(cfg.seed)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    acquire_lock(out, "annotate")      # the data files are append-only: a rerun extends them, never rewrites
    atomic_write_text(out / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
    generate = vllm_generator(cfg) if cfg.use_vllm else hf_generator(cfg)
    counts = annotate(jokes, generate, out, cfg.annotator_model, cfg.headline_window, cfg.batch_size, cfg.max_retries)
    wall = time.time() - started
    handled = counts["accepted"] + sum(counts["rejected"].values())
    rate = counts["accepted"] / handled if handled else float("nan")
    kept = read_annotations(out) if (out / "annotations.jsonl").is_file() else []
    report = [f"annotator `{cfg.annotator_model}`, {len(jokes)} jokes from {cfg.labeled_sources} "
              f"({counts['skipped_done_before']} done before)", "",
              f"accepted {counts['accepted']} of {handled} ({rate:.0%}), {counts['answers']} answers generated "
              f"({counts['retried']} retries), {wall:.0f} s ({handled / wall if wall else 0:.2f} jokes/s)", "",
              "| rejected because | jokes |", "|---|---|", *[f"| {r} | {counts['rejected'][r]} |" for r in REASONS], "",
              "## sample rows", "", "| joke | headline | word1 | word2 |", "|---|---|---|---|",
              *[f"| {a.joke[:100]} | {a.headline} | {a.word1} | {a.word2} |".replace("\n", " ") for a in kept[-8:]]]
    return finish_stage(out, "annotate", {**counts, "acceptance_rate": rate, "jokes_per_s": handled / wall if wall else None,
                                          "annotations": str(out / "annotations.jsonl"), "total_kept": len(kept)},
                        report, started, headline=f"accepted {counts['accepted']} of {handled} ({rate:.0%})")


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
