"""Log-probabilities of given tokens under a causal LM: the one forward pass behind PPO's log-probs and values,
DPO/DPOP/PGCL's sequence log-probs, the update check's probe and perplexity."""

from __future__ import annotations

import torch


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                   last: int | None = None, temperature: float = 1.0, position_ids: torch.Tensor | None = None,
                   hidden_states: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """log p(token_t | tokens_<t) for the last `last` tokens of input_ids (None: every token but the first).

    input_ids (B, L). Returns, with T = last:
      logprobs (B, T)      of the tokens input_ids[:, -T:], at the given sampling temperature
      logits   (B, T, V)   float, divided by the temperature (entropy needs them)
      hidden   (B, T, H)   the last layer's state at the position that predicts each token, or None
    Only the last T + 1 positions' logits are computed (logits_to_keep)."""
    T = input_ids.shape[1] - 1 if last is None else last
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                output_hidden_states=hidden_states, logits_to_keep=T + 1)
    logits = out.logits[:, :-1].float() / temperature                    # (B, T, V): position t predicts token t + 1
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, input_ids.shape[1] - T:].unsqueeze(-1)).squeeze(-1)   # (B, T)
    hidden = out.hidden_states[-1][:, -T - 1:-1] if hidden_states else None                               # (B, T, H)
    return logprobs, logits, hidden
