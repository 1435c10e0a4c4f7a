"""The update check: did a training stage change anything?

A stage that changes nothing (lr 0, frozen adapters, an accelerator that trains a copy) otherwise looks like a
finished run: the seed's PPO run went unnoticed until perplexities matched. Every stage snapshots its trainable
weights and its outputs on fixed inputs before training and compares both after, failing loudly when nothing moved.
It fails as loudly when they moved to nan or infinity (a learning rate far too high): such weights are no result.
"""

from __future__ import annotations

import math

import torch

from common.cli import TrainingDiverged
from common.logprobs import token_logprobs

# what a diverged run found only after training (no checkpoint is known good then) tells the user
RERUN_ADVICE = ("lower the learning rate and run again under a new --run_name or --output_dir (this run's "
                "checkpoints may hold the diverged weights)")


def non_finite(figures: dict) -> dict:
    """The figures (loss, grad_norm, ...) that are nan or infinite; None (not logged) is no figure."""
    return {k: float(v) for k, v in figures.items() if v is not None and not math.isfinite(float(v))}


def weight_norm_problem(named_parameters) -> dict:
    """{'weight norm': 'nan in 3/41 trainable tensors'} when some trainable tensor's norm is not finite, else {}.
    A float32 norm rather than an element test: one pass, and a norm that overflows also flags weights that are
    finite but far too large for any forward pass (a learning rate of 1e30 leaves them about 1e30)."""
    params = [p.detach() for _, p in named_parameters if p.requires_grad]
    if not params:
        return {}
    device = params[0].device
    norms = torch.stack([torch.linalg.vector_norm(p, dtype=torch.float32).to(device) for p in params])
    bad = int((~torch.isfinite(norms)).sum())
    if not bad:
        return {}
    worst = "nan" if bool(torch.isnan(norms).any()) else "inf"
    return {"weight norm": f"{worst} in {bad}/{len(params)} trainable tensors"}


def outputs_problem(model, probe) -> dict:
    """non_finite_outputs of the model on the probe's fixed inputs (UpdateSentinel): a policy about to be sampled
    from cannot be when they are not finite, though its weights may still look so."""
    return non_finite_outputs(_run_probe(model, probe))


def non_finite_outputs(outputs: torch.Tensor) -> dict:
    """{'outputs on fixed inputs': 'non-finite on 2/4'} when some output is nan or infinite, else {}."""
    bad = int((~torch.isfinite(outputs)).sum())
    return {"outputs on fixed inputs": f"non-finite on {bad}/{outputs.numel()}"} if bad else {}


def describe(figures: dict) -> str:
    """'loss nan; grad_norm inf; weight norm nan in 3/41 trainable tensors'."""
    return "; ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())


def diverged(stage: str, step: int, figures: dict, advice: str) -> TrainingDiverged:
    """The one-line error of a stage whose training went non-finite: where, what, and the way out."""
    return TrainingDiverged(f"{stage}: diverged at step {step} ({describe(figures)}); {advice}")


def trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}


def check_weights_moved(model, before: dict[str, torch.Tensor], stage: str, steps: int) -> dict:
    """Compare trainable parameters with their snapshot; raise if none changed.

    A stage that changes nothing (lr 0, frozen adapters, an accelerator that trains a copy) otherwise looks
    like a finished run: the seed's PPO run went unnoticed until perplexities matched."""
    if not before:
        raise RuntimeError(f"{stage}: the model has no trainable parameters (LoRA not attached?)")
    after = dict(model.named_parameters())
    broken = weight_norm_problem((name, after[name]) for name in before)
    if broken:
        raise diverged(stage, steps, broken, RERUN_ADVICE)
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
    if not math.isfinite(stats["relative_change"]):
        raise diverged(stage, steps, {"relative weight change": stats["relative_change"]}, RERUN_ADVICE)
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
        outputs = _run_probe(model, self.probe)
        broken = non_finite_outputs(outputs)
        if broken:
            raise diverged(stage, steps, broken, RERUN_ADVICE)
        change = (outputs - self.outputs_before).abs()
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
