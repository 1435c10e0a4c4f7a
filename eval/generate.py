"""Generate jokes with any trained policy, score every completion with every reward component, write JSONL.

A policy is 'base', a stage of this run ('sft', 'grpo', ...: its adapter and the adapters it was trained on,
read from lineage.json), or an adapter directory. A merged model (eval/export.py) is a base: --policy_model DIR.

    python eval/generate.py --config configs/cpu_default.yaml --policy grpo --words "cactus,lawsuit" \
        --headline "Local man wins lottery twice" --samples_per_prompt 4
    python eval/generate.py --config configs/cpu_default.yaml --policy grpo --tsv ../shared/data/mwahaha/test/task-a-en.tsv
    python eval/generate.py --config configs/cpu_default.yaml --policy sft --chat

Rows: id, lang, prompt_type, headline, words, prompt, sample, text, finished (stopped with EOS), num_tokens, every
reward component and the weighted total. Without prompts on the command line: the run's held-out prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common.config import parse_config
from common.generation import sample_completions
from common.models import load_policy
from common.runs import atomic_write_text, set_seed, use_bf16
from common.stage_configs import GenerateArgs
from data.loaders import TaskPrompt, read_task_tsv, rl_prompt_split
from data.prompts import format_for_model, prompt_text
from reward.composite import load_scorer, score


def adapter_chain(adapter_dir: Path) -> list[Path]:
    """The adapters to merge, in order, for the policy an adapter belongs to: its parents first (SFT, ...)."""
    lineage_file = adapter_dir / "lineage.json"
    if not lineage_file.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no lineage.json; not an adapter written by this project "
                                f"(did that stage finish?)")
    parents = json.loads(lineage_file.read_text())["parents"]
    chain: list[Path] = []
    for parent in parents:
        chain += [p for p in adapter_chain(Path(parent)) if p not in chain]
    return chain + [adapter_dir]


def policy_adapters(cfg, policy: str) -> list[Path]:
    """'base' -> []; a stage name (no '/') -> <runs_dir>/<run_name>/<stage>/final and its parents; a directory
    -> its chain. A stage name wins over a same-named folder in the working directory (sft/ holds code)."""
    if policy == "base":
        return []
    stage_final = cfg.previous_stage_dir(policy) / "final"
    if "/" not in policy and stage_final.is_dir():
        return adapter_chain(stage_final)
    if "/" in policy and Path(policy).is_dir():
        return adapter_chain(Path(policy))
    raise FileNotFoundError(f"policy '{policy}': neither a finished stage of run '{cfg.run_name}' ({stage_final} "
                            f"does not exist) nor an adapter directory (give a path with a '/')")


def policy_name(policy: str) -> str:
    """A short name for outputs: the stage name, or for .../<stage>/final the stage folder's name."""
    path = Path(policy)
    return policy if "/" not in policy else path.parent.name if path.name == "final" else path.name


def generate_rows(model, tokenizer, tasks: list[TaskPrompt], cfg, fns: dict, samples_per_prompt: int = 1,
                  batch_size: int = 8, greedy: bool = False, progress: bool = True) -> list[dict]:
    """samples_per_prompt completions of every task (sampling settings from cfg), scored by every component."""
    tasks = [t for t in tasks for _ in range(samples_per_prompt)]
    instructions = [prompt_text(t) for t in tasks]
    samples = sample_completions(model, tokenizer, [format_for_model(tokenizer, s) for s in instructions],
                                 cfg.max_new_tokens, cfg.temperature, cfg.top_p, batch_size=batch_size,
                                 max_prompt_tokens=cfg.max_prompt_tokens, greedy=greedy, progress=progress,
                                 bf16=use_bf16(cfg.bf16) and not greedy)
    texts = [s.text for s in samples]
    scores = score(fns, texts, [t.prompt_type for t in tasks], cfg.reward_weights,
                   words=[list(t.words) if t.words else None for t in tasks], lang=[t.lang for t in tasks],
                   instruction=instructions, finished=[s.finished for s in samples])
    rows = []
    for i, (task, sample) in enumerate(zip(tasks, samples)):
        rows.append({"id": task.id, "lang": task.lang, "prompt_type": task.prompt_type, "headline": task.headline,
                     "words": list(task.words) if task.words else None, "prompt": instructions[i],
                     "sample": i % samples_per_prompt, "text": sample.text, "finished": sample.finished,
                     "num_tokens": sample.num_tokens, **{k: v[i] for k, v in scores.items()}})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: not a JSON object ({e.msg})") from None
        for key in ("id", "text", "lang"):
            if key not in rows[-1]:
                raise ValueError(f"{path}:{line_no}: row has no '{key}' field")
    return rows


def held_out_prompts(cfg) -> list[TaskPrompt]:
    """The prompts RL held out of training (same sources, seed and split)."""
    return rl_prompt_split(cfg)[1]


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
    args, rest = own.parse_known_args(argv)
    cfg = parse_config(GenerateArgs, "generate", rest)
    set_seed(cfg.seed)
    lang = args.lang or cfg.langs[0]

    adapters = policy_adapters(cfg, cfg.policy)
    model, tokenizer = load_policy(cfg.policy_model, adapters)
    fns = load_scorer(cfg)
    if args.chat:
        chat(model, tokenizer, cfg, fns, lang)
        return []

    tasks = [TaskPrompt(f"cli_h{i}", lang, "headline", headline=h) for i, h in enumerate(args.headline)]
    for i, pair in enumerate(args.words):
        words = [w.strip() for w in pair.split(",")]
        if len(words) != 2:
            raise SystemExit(f"--words {pair!r}: give two comma-separated words")
        tasks.append(TaskPrompt(f"cli_w{i}", lang, "words", words=(words[0], words[1])))
    if args.tsv:
        tasks += read_task_tsv(Path(args.tsv))
    if not tasks:
        tasks = held_out_prompts(cfg)
    started = time.time()
    rows = generate_rows(model, tokenizer, tasks, cfg, fns, cfg.samples_per_prompt, cfg.gen_batch_size)
    name = policy_name(cfg.policy)
    out = Path(args.out) if args.out else cfg.previous_stage_dir("generate") / f"{name}.jsonl"
    write_jsonl(out, rows)
    stopped = sum(r["finished"] for r in rows)
    print(f"[generate] {len(rows)} completions of {len(tasks)} prompts by '{cfg.policy}' "
          f"({'+'.join(str(a) for a in adapters) or 'no adapter'}) in {time.time() - started:.1f} s, "
          f"{stopped}/{len(rows)} stopped with EOS -> {out}")
    return rows


if __name__ == "__main__":
    main()
