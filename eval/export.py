"""Merge a policy's LoRA adapters into its base and save a plain Hugging Face folder (safetensors + tokenizer)
that loads with `AutoModelForCausalLM.from_pretrained(DIR)` alone; then check that the reloaded folder gives the
same greedy outputs as the adapter model it came from.

    python eval/export.py --config configs/cpu_default.yaml --policy grpo --out exports/grpo-merged
    python eval/generate.py --config configs/cpu_default.yaml --policy_model exports/grpo-merged --policy base ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.cli import cli
from common.config import parse_config
from common.generation import sample_completions
from common.io import save_atomically
from common.models import load_policy, policy_adapters
from common.stage_configs import GenerateArgs
from data.loaders import rl_prompt_split
from data.prompts import format_for_model, prompt_text


def adapter_model(base_spec: str, adapters: list[Path]):
    """The policy as training left it: earlier adapters merged, the last one still a LoRA on top."""
    model, tokenizer = load_policy(base_spec, adapters[:-1])
    if adapters:
        model = PeftModel.from_pretrained(model, str(adapters[-1]))
    return model, tokenizer


def greedy_texts(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    return [s.text for s in sample_completions(model, tokenizer, prompts, max_new_tokens, 1.0, 1.0, greedy=True,
                                               progress=False)]


def export(base_spec: str, adapters: list[Path], out: Path, check_prompts: list[str], max_new_tokens: int) -> dict:
    if out.exists():
        raise FileExistsError(f"{out} exists; an export never overwrites: pick another --out")
    merged, tokenizer = load_policy(base_spec, adapters)

    def save(directory: Path):
        merged.save_pretrained(str(directory), safe_serialization=True)
        tokenizer.save_pretrained(str(directory))
        (directory / "humor_rl_export.json").write_text(json.dumps(
            {"base": base_spec, "adapters": [str(a) for a in adapters]}, indent=2))

    save_atomically(out, save)

    # the check: plain transformers, no project code, against the unmerged adapter model
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    reloaded_tok = AutoTokenizer.from_pretrained(str(out))
    reference, ref_tok = adapter_model(base_spec, adapters)
    ours = greedy_texts(reloaded, reloaded_tok, check_prompts, max_new_tokens)
    theirs = greedy_texts(reference, ref_tok, check_prompts, max_new_tokens)
    same = sum(a == b for a, b in zip(ours, theirs))
    result = {"out": str(out), "adapters": [str(a) for a in adapters], "greedy_identical": same,
              "greedy_checked": len(check_prompts),
              "differing": [{"prompt": p, "merged": a, "adapter": b}
                            for p, a, b in zip(check_prompts, ours, theirs) if a != b]}
    print(f"[export] {out}: greedy outputs of the reloaded merged model and the adapter model agree on "
          f"{same}/{len(check_prompts)} prompts")
    return result


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--out", required=True, help="New directory for the merged model.")
    own.add_argument("--check_prompts", type=int, default=4, help="Held-out prompts for the greedy comparison.")
    cfg = parse_config(GenerateArgs, "generate", argv, own=own)
    args, _ = own.parse_known_args(argv)
    adapters = policy_adapters(cfg.run_dir(), cfg.policy)
    if not adapters:
        raise SystemExit("--policy base has no adapter to merge; give a stage (sft, grpo, ...) or an adapter dir")
    tokenizer = AutoTokenizer.from_pretrained(str(adapters[-1]))     # every stage saves its tokenizer
    prompts = [format_for_model(tokenizer, prompt_text(t)) for t in rl_prompt_split(cfg)[1][:args.check_prompts]]
    result = export(cfg.policy_model, adapters, Path(args.out), prompts, cfg.max_new_tokens)
    if result["greedy_identical"] != result["greedy_checked"]:
        raise SystemExit(f"[export] merged model differs from the adapter model: {result['differing']}")
    return result


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
