"""Sampling completions, and the stop token every stage agrees on."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


def stop_token_ids(model, tokenizer) -> list[int]:
    """The token ids that end generation. The tokenizer's EOS (the one SFT appends to every target) must be one
    of them, or a model trained to stop would never be stopped; it is added if the generation config lacks it."""
    eos = tokenizer.eos_token_id
    configured = model.generation_config.eos_token_id
    ids = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    if eos not in ids:
        ids = [eos, *ids]
        model.generation_config.eos_token_id = ids
    if tokenizer.pad_token_id in ids:
        raise ValueError(f"pad token {tokenizer.pad_token!r} is also a stop token: padding would hide EOS")
    return ids


def adds_special_tokens(tokenizer, prompts: list[str]) -> bool:
    """Tokenize prompts as TRL's trainers do (their special tokens on, e.g. gemma's <bos>) unless the prompts
    already carry the BOS as text (chat templates that write it). Without its <bos>, gemma-3 writes HTML tags."""
    bos = tokenizer.bos_token
    return not (bos and all(p.startswith(bos) for p in prompts))


@dataclass
class Sample:
    prompt: str
    text: str          # decoded completion, special tokens removed
    finished: bool     # ended with a stop token before max_new_tokens
    num_tokens: int    # completion tokens, the stop token included


@torch.no_grad()
def sample_completions(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                       batch_size: int = 8, max_prompt_tokens: int = 256, greedy: bool = False,
                       progress: bool = True, bf16: bool = False) -> list[Sample]:
    """Sample one completion per (already formatted) prompt, in batches, left-padded; under bf16 autocast if
    asked (weights stay as they are)."""
    stop_ids = stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="sampling", disable=not progress, leave=False):
        batch = prompts[i:i + batch_size]
        enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_prompt_tokens,
                        add_special_tokens=adds_special_tokens(tokenizer, batch)).to(model.device)
        with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy,
                                 temperature=temperature if not greedy else None, top_p=top_p if not greedy else None,
                                 eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
        completion_ids = gen[:, enc["input_ids"].shape[1]:]                   # (B, T_new)
        for prompt, ids in zip(batch, completion_ids.tolist()):
            stop_at = next((j for j, t in enumerate(ids) if t in stop_ids), None)
            kept = ids if stop_at is None else ids[:stop_at + 1]
            out.append(Sample(prompt, tokenizer.decode(kept, skip_special_tokens=True).strip(),
                              finished=stop_at is not None, num_tokens=len(kept)))
    model.train(was_training)
    return out
