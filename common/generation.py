"""Sampling completions, and the stop token every stage agrees on."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from peft.tuners.lora import LoraLayer
from tqdm.auto import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from common.compat import default_top_k


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


class FastTopP(LogitsProcessor):
    """Nucleus (top-p) filtering with the same kept set as transformers' TopPLogitsWarper, without sorting the
    whole vocabulary when a top-`prefix` slice already holds the top_p mass (it then decides alone: every token
    outside it has at least that mass above it); rows it cannot decide fall back to the full sort.

    A token is kept when the probability mass of the tokens above it is below top_p (the most likely token always).
    When a token's mass above lies within EDGE of top_p, float rounding (the full sort sums in another order)
    could decide differently, so the full sort decides those rows too.
    """

    EDGE = 1e-5

    def __init__(self, top_p: float, prefix: int = 64):
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p, self.prefix = top_p, prefix

    def decide(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(top_probs, top_idx, keep), each (B, k), when the top-`prefix` slice decides every row; else None."""
        probs = scores.float().softmax(dim=-1)                                            # (B, V)
        top_probs, top_idx = probs.topk(min(self.prefix, probs.shape[-1]), dim=-1)        # (B, k), descending
        above = top_probs.cumsum(dim=-1) - top_probs                                      # (B, k) mass above each
        undecided = top_probs.sum(dim=-1) < self.top_p                                    # the slice lacks the mass
        on_the_edge = ((above - self.top_p).abs() < self.EDGE).any(dim=-1)               # rounding could decide
        if (undecided | on_the_edge).any():                                               # the full sort decides
            return None
        keep = above < self.top_p
        keep[:, 0] = True
        return top_probs, top_idx, keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        decided = self.decide(scores)
        if decided is None:
            return TopPLogitsWarper(self.top_p)(input_ids, scores)
        _, top_idx, keep = decided
        remove = torch.ones_like(scores, dtype=torch.bool).scatter(1, top_idx, ~keep)     # (B, V)
        return scores.masked_fill(remove, -float("inf"))


class NucleusSampler(FastTopP):
    """FastTopP that also draws the next token, from the kept tokens of the top-`prefix` slice: a draw over a few
    dozen entries instead of generate's draw over the whole vocabulary (14 % of a sampled token's time on the CPU
    default). It returns 0 for the drawn token and -inf elsewhere, so generate runs greedy (do_sample False) and
    takes it. The distribution is the nucleus's: the kept tokens' probabilities, renormalised, exactly as
    generate would sample FastTopP's (or TopPLogitsWarper's) scores; rows the slice cannot decide draw over the
    whole vocabulary after the full sort."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        decided = self.decide(scores)
        if decided is None:
            probs = TopPLogitsWarper(self.top_p)(input_ids, scores).float().softmax(dim=-1)   # (B, V)
            token = torch.multinomial(probs, 1)                                               # (B, 1)
        else:
            top_probs, top_idx, keep = decided
            token = top_idx.gather(1, torch.multinomial(top_probs * keep, 1))                 # (B, 1)
        return torch.full_like(scores, -float("inf")).scatter(1, token, 0.0)


def _warpers(temperature: float | None, top_k: int | None, top_p: float) -> LogitsProcessorList:
    """temperature, top-k, then the nucleus and the draw (NucleusSampler): the order generate applies them in.
    top_k None: generate's own default (50 in transformers 5)."""
    if top_k is None:
        top_k = default_top_k()
    return LogitsProcessorList([TemperatureLogitsWarper(temperature or 1.0), *([TopKLogitsWarper(top_k)] if top_k else []),
                                NucleusSampler(top_p)])


def sampling_processors(model, temperature: float, top_p: float) -> dict:
    """generate() arguments that sample as temperature + the model's top-k + top_p would, the draw made by
    NucleusSampler from the kept tokens. The warpers are given as our own list (generate runs it after the
    processors it builds itself, e.g. min_new_tokens), and generate runs greedy on the drawn token."""
    warpers = _warpers(temperature, model.generation_config.top_k, top_p)
    return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None, "logits_processor": warpers}


# generate's warpers besides temperature, top-k and top-p, and the values that switch them off: with any of them on,
# fast_nucleus leaves generate to sample as configured rather than drop them
OTHER_WARPERS = {"min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None}


@contextmanager
def fast_nucleus(model, generation_config):
    """While someone else's code samples with model.generate(generation_config=...) (TRL's GRPO): its temperature,
    top-k and top-p run as our warper list, NucleusSampler drawing the token, and come back as they were afterwards."""
    top_p = generation_config.top_p
    others = [name for name, neutral in OTHER_WARPERS.items() if getattr(generation_config, name, neutral) not in (None, neutral)]
    if not generation_config.do_sample or top_p is None or top_p >= 1.0 or others:
        yield                    # generate samples as configured (its other warpers are not ours to reproduce)
        return
    saved = {k: getattr(generation_config, k) for k in ("temperature", "top_k", "top_p", "do_sample")}
    warpers = _warpers(saved["temperature"], saved["top_k"], top_p)
    original = model.generate
    model.generate = lambda *args, **kwargs: original(*args, logits_processor=warpers, **kwargs)
    generation_config.temperature, generation_config.top_k, generation_config.top_p = None, None, None
    generation_config.do_sample = False          # NucleusSampler draws; generate takes its token
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(generation_config, k, v)
        del model.generate                      # the instance attribute: the class's generate again


@contextmanager
def folded_lora(model, enabled: bool = True):
    """While sampling: every active LoRA adapter folded into its base weight (W <- W + scale * B @ A, as TRL does
    before syncing weights to vLLM) and unfolded afterwards, so a generated token costs one matmul per adapted
    layer instead of three plus the adapter's dropout and add. Sampling no longer sees LoRA dropout (it is noise,
    not the policy). Layers already merged or with adapters disabled are left alone; not for sharded weights
    (DeepSpeed ZeRO-3, FSDP), where the caller passes enabled=False."""
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and not m.merged and not m.disable_adapters
              and m.active_adapters] if enabled else []
    with torch.no_grad():
        for layer in layers:
            layer.merge()
    try:
        yield len(layers)
    finally:
        with torch.no_grad():
            for layer in layers:
                layer.unmerge()


@contextmanager
def bf16_linear_weights(model, enabled: bool = True):
    """While sampling under bf16 autocast: every fp32 Linear weight swapped for a bf16 copy, and the fp32 tensors put
    back afterwards (exactly: the same tensors, never rounded). Autocast would cast these same weights to bf16 at
    every call, i.e. once per layer per generated token (aten::copy_, a quarter of a sampled token's time in
    bench/profile_sampling.py); the matmuls are the same. Weights tied to an embedding (a tied LM head) are left
    fp32, so the residual stream stays what autocast makes it."""
    if not enabled:
        yield 0
        return
    embedded = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    params = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.float32
              and m.weight.data_ptr() not in embedded]
    saved = [p.data for p in params]
    with torch.no_grad():
        for p in params:
            p.data = p.data.to(torch.bfloat16)
    try:
        yield len(params)
    finally:
        for p, data in zip(params, saved):
            p.data = data


@contextmanager
def sampling_weights(model, fold_lora: bool = True, bf16: bool = False):
    """The weights a policy samples with: the LoRA folded in (folded_lora), then, under bf16 autocast, the Linear
    weights as bf16 copies (bf16_linear_weights); both undone afterwards."""
    with folded_lora(model, fold_lora), bf16_linear_weights(model, bf16):
        yield


@dataclass
class Sample:
    prompt: str
    text: str          # decoded completion, special tokens removed
    finished: bool     # ended with a stop token before max_new_tokens
    num_tokens: int    # completion tokens, the stop token included


@torch.no_grad()
def generate_ids(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float, top_p: float,
                 max_prompt_tokens: int = 256, greedy: bool = False, bf16: bool = False,
                 fold_lora: bool = True) -> dict[str, torch.Tensor]:
    """One batch of (already formatted) prompts -> token ids, left-padded prompts, under bf16 autocast if asked,
    with the LoRA folded into the weights (folded_lora) unless fold_lora is False.

    Returns prompt_ids, prompt_mask (B, Lq); completion_ids (B, T) with everything after the first stop token
    replaced by pad; completion_mask (B, T): 1 up to and including the stop token; finished (B,) bool."""
    stop_ids = stop_token_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    tokenizer.padding_side = "left"
    prompts = [fit_prompt(tokenizer, p, max_prompt_tokens) for p in prompts]
    enc = tokenizer(prompts, return_tensors="pt", padding=True,
                    add_special_tokens=adds_special_tokens(tokenizer, prompts)).to(model.device)
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16), \
            sampling_weights(model, fold_lora, bf16):
        sampling = ({"do_sample": False, "temperature": None, "top_p": None} if greedy
                    else sampling_processors(model, temperature, top_p))
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
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
