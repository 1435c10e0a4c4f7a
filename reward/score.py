"""Print every reward component and the composite total for some texts, as JSON: the tool to reach for when a
reward looks wrong.

    python reward/score.py --config configs/tiny.yaml --prompt_type words --words cactus,lawsuit --lang en \
        --text "The cactus filed a lawsuit." --text "这就是生活！这就是生活！这就是生活！"
"""

from __future__ import annotations

import argparse
import json
import sys

from common.cli import cli
from common.config import parse_config
from common.stage_configs import ScoreArgs
from data.loaders import TaskPrompt
from reward.composite import build_scorer, score, task_columns


def main(argv: list[str] | None = None) -> list[dict]:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--text", action="append", required=True, help="Text to score (repeat for several).")
    own.add_argument("--prompt_type", choices=["headline", "words"], required=True)
    own.add_argument("--words", default=None, help="The two required words, comma-separated (words prompts).")
    own.add_argument("--headline", default="", help="The headline (headline prompts; used by prompt-aware RMs).")
    own.add_argument("--lang", choices=["en", "es", "zh"], required=True)
    own.add_argument("--unfinished", action="store_true",
                     help="The texts were cut off at the token limit (no EOS): no_eos_penalty scores 1.")
    cfg = parse_config(ScoreArgs, "score", argv, own=own)
    args, _ = own.parse_known_args(argv)

    words = None
    if args.prompt_type == "words":
        if not args.words or len(args.words.split(",")) != 2:
            raise SystemExit("--prompt_type words needs --words W1,W2")
        words = tuple(w.strip() for w in args.words.split(","))
    task = TaskPrompt("cli", args.lang, args.prompt_type, headline=args.headline or None, words=words)
    fns = build_scorer(cfg)
    n = len(args.text)
    columns = task_columns([task] * n)
    if not (words or args.headline):
        columns["instruction"] = [""] * n
    scores = score(fns, args.text, finished=[not args.unfinished] * n, weights=cfg.reward_weights, **columns)
    rows = [{"text": t, "prompt_type": args.prompt_type, **{k: v[i] for k, v in scores.items()},
             "weights": cfg.reward_weights[args.prompt_type]} for i, t in enumerate(args.text)]
    json.dump(rows, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return rows


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
