"""Every training objective the project writes itself, as pure functions of tensors.

Each takes log-probs (and advantages, values, masks) plus coefficients, and returns (loss, stats): `loss` a scalar
to backpropagate, `stats` a dict of detached tensors to log. No model, tokenizer or config goes in.

Preference losses take summed completion log-probs, shape (B,), under the policy (pi_*) and the frozen reference
(ref_*). The implicit reward of a completion y is r(y) = beta * (log pi(y) - log ref(y)).

DPO    -log s(beta * [(pi_w - ref_w) - (pi_l - ref_l)])                                  (Rafailov et al. 2023)
DPOP   -log s(beta * [(pi_w - ref_w) - (pi_l - ref_l) - lam * max(0, ref_w - pi_w)])       (Smaug, 2402.13228)
       The penalty is on the chosen completion's log-prob falling below the reference's: DPO alone can lower
       log pi(y_w) while widening the margin. The seed's code penalised max(0, -(pi_w - pi_l)) instead, which
       is a different quantity (`seed_dpop_loss`, kept only to show the difference in the tests).
PGCL   gold > y* > fail, each pair a DPO term on the implicit rewards, each weighted explicitly:
       gold_weight * -log s(r(gold) - r(y*)) + fail_weight * -log s(r(y*) - r(fail))
       The curriculum's formula weights the second term by gamma (gold_weight 1, fail_weight gamma); the seed's code
       weighted the first (gold_weight gamma, fail_weight 1).

PPO's losses take per-token tensors (B, T) and a mask that is 1 on real completion tokens; their means are per
token over the whole batch (masked_mean).

>>> import torch
>>> loss, stats = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.5)
>>> round(loss.item(), 4), stats["margin"].item()
(0.3133, 1.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x over the entries where mask is 1, taken over the whole batch (a per-token mean)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


# ---------------------------------------------------------------- preference losses (sequence log-probs, (B,))


def _preference_stats(r_chosen: Tensor, r_rejected: Tensor) -> dict[str, Tensor]:
    return {"reward_chosen": r_chosen.detach().mean(), "reward_rejected": r_rejected.detach().mean(),
            "margin": (r_chosen - r_rejected).detach().mean()}


def dpo_loss(pi_chosen: Tensor, pi_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO. Stats: mean implicit rewards of chosen and rejected, and their margin (beta * log-ratio units)."""
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)                  # (B,)
    loss = -F.logsigmoid(beta * margin).mean()
    return loss, _preference_stats(beta * (pi_chosen - ref_chosen), beta * (pi_rejected - ref_rejected))


def dpop_loss(pi_chosen: Tensor, pi_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
              beta: float, lam: float) -> tuple[Tensor, dict[str, Tensor]]:
    """DPO-Positive (Smaug, arXiv 2402.13228, eq. 3). Stats add chosen_drop = max(0, ref_w - pi_w)."""
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)                  # (B,)
    chosen_drop = torch.clamp(ref_chosen - pi_chosen, min=0.0)                         # (B,) 0 while pi_w >= ref_w
    loss = -F.logsigmoid(beta * (margin - lam * chosen_drop)).mean()
    stats = _preference_stats(beta * (pi_chosen - ref_chosen), beta * (pi_rejected - ref_rejected))
    return loss, {**stats, "chosen_drop": chosen_drop.detach().mean()}


def seed_dpop_loss(pi_chosen: Tensor, pi_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
                   beta: float, lam: float) -> tuple[Tensor, dict[str, Tensor]]:
    """The seed's code (not DPOP): penalises the policy preferring y_l to y_w, max(0, -(pi_w - pi_l))."""
    pi_logratios = pi_chosen - pi_rejected
    logits = pi_logratios - (ref_chosen - ref_rejected) - lam * torch.clamp(-pi_logratios, min=0.0)
    loss = -F.logsigmoid(beta * logits).mean()
    return loss, _preference_stats(beta * (pi_chosen - ref_chosen), beta * (pi_rejected - ref_rejected))


def pgcl_loss(pi_gold: Tensor, pi_mid: Tensor, pi_fail: Tensor, ref_gold: Tensor, ref_mid: Tensor, ref_fail: Tensor,
              beta: float, gold_weight: float = 1.0, fail_weight: float = 0.5) -> tuple[Tensor, dict[str, Tensor]]:
    """PGCL stage 2: gold > y* > fail, two weighted DPO terms on the implicit rewards."""
    r_gold, r_mid, r_fail = beta * (pi_gold - ref_gold), beta * (pi_mid - ref_mid), beta * (pi_fail - ref_fail)
    loss = (-gold_weight * F.logsigmoid(r_gold - r_mid) - fail_weight * F.logsigmoid(r_mid - r_fail)).mean()
    return loss, {**_preference_stats(r_gold, r_fail), "reward_middle": r_mid.detach().mean()}


# ---------------------------------------------------------------- PPO losses (per-token tensors, (B, T))


def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor,
                clip_range: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate (Schulman et al. 2017, eq. 7): mean over tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)). Stats: clip fraction and approx KL (k3 estimator)."""
    log_ratio = logprobs - old_logprobs                                     # (B, T)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": masked_mean((ratio - 1) - log_ratio, mask)}   # Schulman's k3 estimator
    return loss, stats


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor,
               clip_range_value: float) -> tuple[Tensor, dict[str, Tensor]]:
    """0.5 * mean over tokens of max((V - R)^2, (V_clipped - R)^2), V_clipped within clip_range_value of V_old."""
    clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_error, clipped_error = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped_error, clipped_error), mask)
    with torch.no_grad():
        stats = {"value_clipfrac": masked_mean((clipped_error > unclipped_error).float(), mask)}
    return loss, stats


def entropy_bonus(entropy: Tensor, mask: Tensor, coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """-coef * mean token entropy: subtracting it from the loss rewards a policy that keeps exploring."""
    mean_entropy = masked_mean(entropy, mask)
    return -coef * mean_entropy, {"entropy": mean_entropy.detach()}
