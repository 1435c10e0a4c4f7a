"""The update check (SPEC section 2): did a training stage change anything?

A stage that changes nothing (lr 0, frozen adapters, an accelerator that trains a copy) otherwise looks like a
finished run: the seed's PPO run went unnoticed until perplexities matched. Every stage snapshots its trainable
weights and its outputs on fixed inputs before training and compares both after, failing loudly when nothing moved.
"""

from __future__ import annotations

import torch

from common.logprobs import token_logprobs


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def check_weights_moved(model, before: dict[str, torch.Tensor], stage: str, steps: int) -> dict:
    """Compare trainable parameters with their snapshot; raise if none changed.

    A stage that changes nothing (lr 0, frozen adapters, an accelerator that trains a copy) otherwise looks
    like a finished run: the seed's PPO run went unnoticed until perplexities matched."""
    if not before:
        raise RuntimeError(f"{stage}: the model has no trainable parameters (LoRA not attached?)")
    after = dict(model.named_parameters())
    moved, max_abs, sq_diff, sq_norm = [], 0.0, 0.0, 0.0
    for name, p0 in before.items():
        p1 = after[name].detach().float()
        diff = (p1 - p0).abs()
        max_abs = max(max_abs, float(diff.max()))
        sq_diff += float((diff ** 2).sum())
        sq_norm += float((p0 ** 2).sum())
        if not torch.equal(p1, p0):
            moved.append(name)
    stats = {"weights_moved": bool(moved), "moved_tensors": len(moved), "trainable_tensors": len(before),
             "max_abs_diff": max_abs, "relative_change": (sq_diff ** 0.5) / max(sq_norm ** 0.5, 1e-12)}
    if not moved:
        raise RuntimeError(f"{stage}: no trainable parameter changed in {steps} steps. Usual causes: learning "
                           f"rate 0, adapters frozen or not attached, an accelerator training a copy of the model, "
                           f"all losses masked out. Figures: {stats}")
    print(f"[{stage}] weights moved: {len(moved)}/{len(before)} trainable tensors, max |diff| {max_abs:.3g}, "
          f"relative change {stats['relative_change']:.3g}")
    return stats


class UpdateSentinel:
    """Did a stage change anything? Snapshots the trainable weights and the model's outputs on a few fixed inputs
    before training; `check` after training compares both and raises when nothing moved.

    probe(model) -> 1-D tensor: per-text mean token log-prob (causal LM, `causal_lm_probe`) or P(humor)
    (classifier, `classifier_probe`), computed in eval mode without dropout so that only training changes it."""

    def __init__(self, model, probe):
        self.probe = probe
        self.weights_before = trainable_snapshot(model)
        self.outputs_before = _run_probe(model, probe)

    def check(self, model, stage: str, steps: int) -> dict:
        stats = check_weights_moved(model, self.weights_before, stage, steps)
        change = (_run_probe(model, self.probe) - self.outputs_before).abs()
        stats.update(output_change_max=float(change.max()), output_change_mean=float(change.mean()),
                     probe_inputs=int(change.numel()))
        if float(change.max()) == 0.0:
            raise RuntimeError(f"{stage}: weights changed but the outputs on {change.numel()} fixed inputs did not "
                               f"change at all: the trained parameters do not reach the forward pass (adapters "
                               f"disabled or merged into a copy?). Figures: {stats}")
        print(f"[{stage}] outputs moved: mean |change| {stats['output_change_mean']:.3g} over "
              f"{change.numel()} fixed inputs (max {stats['output_change_max']:.3g})")
        return stats


@torch.no_grad()
def _run_probe(model, probe) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return probe(model).detach().float().cpu()
    finally:
        model.train(was_training)


def causal_lm_probe(tokenizer, texts: list[str]):
    """Mean token log-prob of each fixed text under a causal LM."""
    def probe(model) -> torch.Tensor:
        out = []
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(model.device)
            logprobs, _, _ = token_logprobs(model, ids)                                       # (1, T-1)
            out.append(logprobs.mean())
        return torch.stack(out)
    return probe


def score_probe(tokenizer, texts: list[str]):
    """The score of each fixed text under a one-output head (a ranking or rating reward model)."""
    def probe(model) -> torch.Tensor:
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=128).to(model.device)
        return model(**enc).logits[:, 0].float()
    return probe


def classifier_probe(tokenizer, texts: list[str]):
    """P(label 1) of each fixed text under a sequence classifier."""
    def probe(model) -> torch.Tensor:
        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=128).to(model.device)
        return torch.softmax(model(**enc).logits.float(), dim=-1)[:, 1]
    return probe
