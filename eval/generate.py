"""Generate jokes with any trained policy, score every completion with every reward component, write JSONL.

A policy is 'base', a stage of this run ('sft', 'grpo', ...: its adapter and the adapters it was trained on,
read from lineage.json), or an adapter directory. A merged model (eval/export.py) is a base: --policy_model DIR.

    python eval/generate.py --config configs/cpu_default.yaml --policy grpo --words "cactus,lawsuit" \
        --headline "Local man wins lottery twice" --samples_per_prompt 4
    python eval/generate.py --config configs/cpu_default.yaml --policy grpo --tsv ../shared/data/mwahaha/test/task-a-en.tsv
    python eval/generate.py --config configs/cpu_default.yaml --policy sft --chat
    python eval/generate.py --config configs/cpu_default.yaml --policy sft --best_of 8 --rank_by rank_reward

Rows: id, lang, prompt_type, headline, words, prompt, sample, text, finished (stopped with EOS), num_tokens, every
reward component and the weighted total. Without prompts on the command line: the run's held-out prompts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.cli import cli
from common.config import parse_config
from common.io import write_jsonl
from common.models import load_policy, policy_adapters, policy_name
from common.stage_configs import GenerateArgs
from common.training import set_seed
from data.loaders import TaskPrompt, read_task_tsv, rl_prompt_split
from eval.metrics import best_of_rows
from reward.composite import build_scorer, scorer_with
from rl.rollouts import generate_rows


def _parse_chat_line(line: str, lang: str, n: int) -> TaskPrompt:
    """'words: cactus, lawsuit' -> a words prompt; anything else ('headline: ...' or plain text) -> a headline."""
    head, _, rest = line.partition(":")
    if head.strip().lower() == "words":
        words = [w.strip() for w in rest.replace("、", ",").split(",") if w.strip()]
        if len(words) != 2:
            raise ValueError("a words prompt needs two words: words: cactus, lawsuit")
        return TaskPrompt(f"chat_{n}", lang, "words", words=(words[0], words[1]))
    text = rest.strip() if head.strip().lower() == "headline" else line.strip()
    return TaskPrompt(f"chat_{n}", lang, "headline", headline=text)


def chat(model, tokenizer, cfg, fns, lang: str) -> None:
    print(f"[chat] {lang} prompts. 'words: w1, w2' for a two-words joke, 'headline: ...' or any text for a "
          f"headline joke; an empty line or Ctrl-D ends.", file=sys.stderr)
    n = 0
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        try:
            task = _parse_chat_line(line, lang, n)
        except ValueError as e:
            print(f"[chat] {e}", file=sys.stderr)
            continue
        n += 1
        for row in generate_rows(model, tokenizer, [task], cfg, fns, cfg.samples_per_prompt, cfg.gen_batch_size,
                                 progress=False):
            comps = {k: round(v, 3) for k, v in row.items() if (k in fns or k == "total") and v is not None}
            print(f"{row['text']}\n   {'' if row['finished'] else '[no EOS] '}{comps}")


def main(argv: list[str] | None = None) -> list[dict]:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--headline", action="append", default=[], help="A headline prompt (repeatable).")
    own.add_argument("--words", action="append", default=[], help="A two-words prompt 'W1,W2' (repeatable).")
    own.add_argument("--tsv", default=None, help="MWAHAHA task-a TSV (id, word1, word2, headline; '-' unused).")
    own.add_argument("--lang", default=None, help="Language of --headline/--words/--chat prompts (default: first of langs).")
    own.add_argument("--chat", action="store_true", help="Read prompts interactively; print each joke and its rewards.")
    own.add_argument("--out", default=None, help="JSONL output (default <runs_dir>/<run_name>/generate/<policy>.jsonl).")
    own.add_argument("--best_of", type=int, default=1, help="Sample N per prompt and keep the one rank_by scores "
                     "highest (among those with both required words); every sample goes to <out>.samples.jsonl.")
    cfg = parse_config(GenerateArgs, "generate", argv, own=own)
    args, _ = own.parse_known_args(argv)
    set_seed(cfg.seed)
    lang = args.lang or cfg.langs[0]

    if args.best_of < 1:
        raise ValueError(f"--best_of must be >= 1, got {args.best_of}")
    # every prompt is read and checked before minutes go into loading weights
    tasks = [TaskPrompt(f"cli_h{i}", lang, "headline", headline=h) for i, h in enumerate(args.headline)]
    for i, pair in enumerate(args.words):
        words = [w.strip() for w in pair.split(",")]
        if len(words) != 2 or not all(words):
            raise ValueError(f"--words {pair!r}: give two comma-separated words")
        tasks.append(TaskPrompt(f"cli_w{i}", lang, "words", words=(words[0], words[1])))
    if args.tsv:
        tasks += read_task_tsv(Path(args.tsv))
    if not tasks and not args.chat:
        tasks = rl_prompt_split(cfg)[1]         # the prompts RL held out of training
    adapters = policy_adapters(cfg.run_dir(), cfg.policy)

    model, tokenizer = load_policy(cfg.policy_model, adapters, dtype=cfg.model_dtype)
    fns = scorer_with(cfg, cfg.rank_by) if args.best_of > 1 else build_scorer(cfg)
    if args.chat:
        chat(model, tokenizer, cfg, fns, lang)
        return []
    started = time.time()
    samples = args.best_of if args.best_of > 1 else cfg.samples_per_prompt
    rows = generate_rows(model, tokenizer, tasks, cfg, fns, samples, cfg.gen_batch_size)
    name = policy_name(cfg.policy) + (f"_best_of_{args.best_of}" if args.best_of > 1 else "")
    out = Path(args.out) if args.out else cfg.previous_stage_dir("generate") / f"{name}.jsonl"
    if args.best_of > 1:
        write_jsonl(out.with_suffix(".samples.jsonl"), rows)
        rows = best_of_rows(rows, cfg.rank_by)
    write_jsonl(out, rows)
    stopped = sum(r["finished"] for r in rows)
    print(f"[generate] {len(rows)} completions of {len(tasks)} prompts by '{cfg.policy}' "
          f"({'+'.join(str(a) for a in adapters) or 'no adapter'}) in {time.time() - started:.1f} s, "
          f"{stopped}/{len(rows)} stopped with EOS -> {out}")
    return rows


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
