"""Preference losses on sequence log-probs (SPEC section 5). PPO's losses live in rl/ppo.py, with its loop.

Every function takes summed completion log-probs, shape (B,), under the policy (pi_*) and the frozen reference
(ref_*), and returns the per-example loss (B,). The implicit reward of a completion y is
    r(y) = beta * (log pi(y) - log ref(y)).

DPO    -log s(beta * [(pi_w - ref_w) - (pi_l - ref_l)])
DPOP   -log s(beta * [(pi_w - ref_w) - (pi_l - ref_l) - lam * max(0, ref_w - pi_w)])       (Smaug, 2402.13228)
       The penalty is on the chosen completion's log-prob falling below the reference's: DPO alone can lower
       log pi(y_w) while widening the margin. The seed's code penalised max(0, -(pi_w - pi_l)) instead, which
       is a different quantity (`seed_dpop_loss`, kept only to show the difference in the tests).
PGCL   gold > y* > fail, each pair a DPO term on the implicit rewards, each weighted explicitly:
       gold_weight * -log s(r(gold) - r(y*)) + fail_weight * -log s(r(y*) - r(fail))
       SPEC's formula weights the second term by gamma (gold_weight 1, fail_weight gamma); the seed's code
       weighted the first (gold_weight gamma, fail_weight 1).

>>> import torch
>>> round(dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.5).item(), 4)
0.3133
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)                  # (B,)
    return -F.logsigmoid(beta * margin)


def dpop_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, beta: float, lam: float) -> torch.Tensor:
    margin = (pi_chosen - ref_chosen) - (pi_rejected - ref_rejected)                  # (B,)
    chosen_drop = torch.clamp(ref_chosen - pi_chosen, min=0.0)                         # (B,) 0 while pi_w >= ref_w
    return -F.logsigmoid(beta * (margin - lam * chosen_drop))


def seed_dpop_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                   ref_rejected: torch.Tensor, beta: float, lam: float) -> torch.Tensor:
    """The seed's code (not DPOP): penalises the policy preferring y_l to y_w, max(0, -(pi_w - pi_l))."""
    pi_logratios = pi_chosen - pi_rejected
    logits = pi_logratios - (ref_chosen - ref_rejected) - lam * torch.clamp(-pi_logratios, min=0.0)
    return -F.logsigmoid(beta * logits)


def pgcl_loss(pi_gold: torch.Tensor, pi_mid: torch.Tensor, pi_fail: torch.Tensor, ref_gold: torch.Tensor,
              ref_mid: torch.Tensor, ref_fail: torch.Tensor, beta: float, gold_weight: float = 1.0,
              fail_weight: float = 0.5) -> torch.Tensor:
    r_gold, r_mid, r_fail = beta * (pi_gold - ref_gold), beta * (pi_mid - ref_mid), beta * (pi_fail - ref_fail)
    return -gold_weight * F.logsigmoid(r_gold - r_mid) - fail_weight * F.logsigmoid(r_mid - r_fail)
