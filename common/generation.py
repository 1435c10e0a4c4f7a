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


def finished_with_stop(completion_ids, stop_ids: list[int]) -> list[bool]:
    """Did each completion stop by itself? True when its token ids hold a stop token (generation, and TRL, cut
    or mask everything after the first one), False when it was cut at max_new_tokens.

    >>> finished_with_stop([[5, 6, 2], [5, 6, 7]], stop_ids=[2])
    [True, False]
    """
    stops = set(stop_ids)
    return [any(int(t) in stops for t in ids) for ids in completion_ids]


def adds_special_tokens(tokenizer, prompts: list[str]) -> bool:
    """Tokenize prompts as TRL's trainers do (their special tokens on, e.g. gemma's <bos>) unless the prompts
    already carry the BOS as text (chat templates that write it). Without its <bos>, gemma-3 writes HTML tags."""
    bos = tokenizer.bos_token
    return not (bos and all(p.startswith(bos) for p in prompts))


def fit_prompt(tokenizer, prompt: str, max_tokens: int) -> str:
    """The prompt cut on the left to its last max_tokens tokens, so that an over-long one keeps the end of its
    instruction and the chat template's generation prompt. Every stage's prompts go through it (GRPO's dataset,
    and generate_ids for PPO, evaluation and DPO's own samples), so all see the same prompt."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return prompt
    return tokenizer.decode(ids[-max_tokens:], skip_special_tokens=False)


@dataclass
class Sample:
    prompt: str
    text: str          # decoded completion, special tokens removed
    finished: bool     # ended with a stop token before max_new_tokens
    num_tokens: int    # completion tokens, the stop token included


@torch.no_grad()
def generate_ids(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                 max_prompt_tokens: int = 256, greedy: bool = False, bf16: bool = False) -> dict[str, torch.Tensor]:
    """One batch of (already formatted) prompts -> token ids, left-padded prompts, under bf16 autocast if asked.

    Returns prompt_ids, prompt_mask (B, Lq); completion_ids (B, T) with everything after the first stop token
    replaced by pad; completion_mask (B, T): 1 up to and including the stop token; finished (B,) bool."""
    stop_ids = stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    prompts = [fit_prompt(tokenizer, p, max_prompt_tokens) for p in prompts]
    enc = tokenizer(prompts, return_tensors="pt", padding=True,
                    add_special_tokens=adds_special_tokens(tokenizer, prompts)).to(model.device)
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=not greedy,
                             temperature=temperature if not greedy else None, top_p=top_p if not greedy else None,
                             eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id)
    model.train(was_training)
    completion_ids = gen[:, enc["input_ids"].shape[1]:]                                    # (B, T)
    finished = torch.tensor(finished_with_stop(completion_ids.tolist(), stop_ids), device=completion_ids.device)  # (B,)
    # tokens after the first stop token (generate pads finished rows) are not part of the completion
    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0                              # (B, T)
    completion_mask = (~after_stop).long()
    completion_ids = completion_ids.masked_fill(after_stop, tokenizer.pad_token_id)
    return {"prompt_ids": enc["input_ids"], "prompt_mask": enc["attention_mask"], "completion_ids": completion_ids,
            "completion_mask": completion_mask, "finished": finished}


def sample_completions(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                       batch_size: int = 8, max_prompt_tokens: int = 256, greedy: bool = False,
                       progress: bool = True, bf16: bool = False) -> list[Sample]:
    """Sample one completion per (already formatted) prompt, in batches of generate_ids, decoded."""
    out = []
    for i in tqdm(range(0, len(prompts), batch_size), desc="sampling", disable=not progress, leave=False):
        batch = prompts[i:i + batch_size]
        gen = generate_ids(model, tokenizer, batch, max_new_tokens, temperature, top_p, max_prompt_tokens, greedy, bf16)
        lengths = gen["completion_mask"].sum(dim=1).tolist()
        for prompt, ids, n, done in zip(batch, gen["completion_ids"].tolist(), lengths, gen["finished"].tolist()):
            out.append(Sample(prompt, tokenizer.decode(ids[:n], skip_special_tokens=True).strip(),
                              finished=done, num_tokens=n))
    return out
