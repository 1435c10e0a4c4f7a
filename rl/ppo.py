"""PPO of the SFT policy against the text-level composite reward, in one file, CleanRL style.

Why our own: trl 1.16 has no PPOTrainer, and the old one fed the policy's token ids to the reward model, so a
humor classifier with its own tokenizer could not be used. Here the reward is computed on the decoded text:

    for each iteration:
      1. rollout   sample one completion per prompt; decode; score the text with the composite reward -> score
      2. evaluate  log pi_old, V_old under the policy, log pi_ref under the reference (the LoRA disabled = SFT)
      3. rewards   r_t = -beta * (log pi_old - log pi_ref)_t   on every completion token
                   r_T += score                               on the last real token (EOS when it stopped)
      4. GAE       delta_t = r_t + gamma * V_{t+1} - V_t;  A_t = delta_t + gamma * gae_lambda * A_{t+1};  R_t = A_t + V_t
                   A whitened over the rollout's tokens
      5. optimize  ppo_epochs passes over minibatches of:
                   L = clipped policy loss + vf_coef * clipped value loss - entropy_coef * entropy
                   (the losses are rl/losses.py's policy_loss, value_loss and entropy_bonus)
      6. beta      fixed, or adapted towards kl_target (Ziegler et al. 2019)

Padding and every token after EOS are masked out of every loss and statistic. The value head is a linear layer
on the policy's last hidden states, trained together with the LoRA (the LoRA also gets the value gradient).
Dropout is off throughout (the model stays in eval mode), so the ratio is exactly 1 at the start of each epoch.

    python rl/ppo.py --config configs/tiny.yaml
"""

from __future__ import annotations

import math
import random
import shutil
import time
from pathlib import Path

import torch
import torch.nn as nn
from peft import get_peft_model
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from common.accelerators import check_accelerators
from common.cli import cli
from common.config import parse_config
from common.generation import generate_ids, stop_token_ids
from common.io import save_atomically
from common.logprobs import token_logprobs
from common.models import load_policy, save_stage_adapter
from common.rundir import DivergenceWatch, checkpoints, dry_run, prepare_stage_dir
from common.stage_configs import PPOArgs
from common.training import lora_config, set_seed, use_bf16
from common.update_check import UpdateSentinel, causal_lm_probe, check_weights_moved, trainable_snapshot
from data.loaders import TaskPrompt, prompt_plan, rl_prompt_split, sample_texts
from data.prompts import format_for_model
from reward.composite import build_scorer, component_logs, component_names, score, task_columns
from rl.losses import entropy_bonus, masked_mean, policy_loss, value_loss
from rl.monitor import Alarms, generation_stats, samples_markdown
from rl.rollouts import finish_rl_stage, gold_watch

# ---------------------------------------------------------------- the math (pure functions, unit-tested)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the unmasked entries; masked entries become 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -beta * KL_t on every completion token, plus the text's score on its last real token.

    scores (B,); logprobs, ref_logprobs, mask (B, T), mask 1 on real completion tokens (contiguous from t=0).
    Returns rewards (B, T) and the per-token KL estimate log pi - log pi_ref (B, T), both 0 where masked."""
    kl = (logprobs - ref_logprobs) * mask                                   # (B, T)
    rewards = -beta * kl
    last = mask.sum(dim=1).long() - 1                                       # (B,) index of the last real token
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over completion tokens; returns (advantages, returns), each (B, T).

    Masked positions come after the last real token: their value counts as 0, so V_{T+1} = 0 at the end of
    every completion and nothing leaks in from padding."""
    values, rewards = values * mask, rewards * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])                        # (B,)
    T = rewards.shape[1]
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * gae_lambda * next_advantage
        advantages[:, t] = next_advantage
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over real tokens: 1 is a perfect critic, 0 no better than a constant."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    return float(1 - var_residual / var_returns) if var_returns > 0 else float("nan")


class KLController:
    """beta of the KL penalty: fixed (target None) or adaptive, Ziegler et al. 2019:
    beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon), KL the mean sequence KL of n samples."""

    def __init__(self, beta: float, target: float | None = None, horizon: int = 10000):
        self.beta, self.target, self.horizon = beta, target, horizon

    def update(self, sequence_kl: float, n: int) -> None:
        if self.target is None:
            return
        error = min(max(sequence_kl / self.target - 1, -0.2), 0.2)
        self.beta *= 1 + error * n / self.horizon


# ---------------------------------------------------------------- the model: policy + value head


class ValueHead(nn.Module):
    """V(s_t) from the policy's last hidden state; zero-initialised so the first values are 0."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:               # (B, T, H) -> (B, T)
        return self.linear(hidden.float()).squeeze(-1)


def forward(model, value_head: ValueHead | None, batch: dict, temperature: float, bf16: bool,
            with_entropy: bool = False) -> dict[str, torch.Tensor]:
    """Log-probs of the completion tokens (at the sampling temperature), their values and entropies.

    batch: prompt_ids, prompt_mask (B, Lq) left-padded; completion_ids, completion_mask (B, T)."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)             # (B, L)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)     # (B, L)
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)      # as generate() numbers left-padded rows
    T = batch["completion_ids"].shape[1]
    with torch.autocast(input_ids.device.type, dtype=torch.bfloat16, enabled=bf16):
        logprobs, logits, hidden = token_logprobs(model, input_ids, attention_mask, last=T, temperature=temperature,
                                                  position_ids=position_ids, hidden_states=value_head is not None)
    result = {"logprobs": logprobs}                                                          # (B, T)
    if value_head is not None:
        result["values"] = value_head(hidden)                                                # (B, T)
    if with_entropy:
        all_logprobs = torch.log_softmax(logits, dim=-1)                                     # (B, T, V)
        result["entropy"] = -(all_logprobs.exp() * all_logprobs).sum(dim=-1)                 # (B, T)
    return result


# ---------------------------------------------------------------- the run


class PromptStream:
    """Prompts in a seeded order, reshuffled every pass; prompts(i, n) is deterministic, so a resumed run sees
    the same prompts it would have seen."""

    def __init__(self, tasks: list[TaskPrompt], seed: int):
        self.tasks, self.seed = tasks, seed

    def prompts(self, start: int, n: int) -> list[TaskPrompt]:
        out = []
        for index in range(start, start + n):
            epoch, pos = divmod(index, len(self.tasks))
            order = list(range(len(self.tasks)))
            random.Random(self.seed + epoch).shuffle(order)
            out.append(self.tasks[order[pos]])
        return out


def rollout(model, value_head, tokenizer, tasks: list[TaskPrompt], fns: dict, cfg: PPOArgs, kl: KLController,
            bf16: bool) -> tuple[dict, dict, list[dict]]:
    """Steps 1-4: sample, score the text, evaluate, KL-penalised rewards, GAE. Returns the training batch,
    the iteration's logs and the samples (text + components) for the alarms and TensorBoard."""
    columns = task_columns(tasks)
    batch = generate_ids(model, tokenizer, [format_for_model(tokenizer, s) for s in columns["instruction"]],
                         cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.max_prompt_tokens, bf16=bf16)
    mask = batch["completion_mask"].float()                                               # (B, T)
    lengths = batch["completion_mask"].sum(dim=1).tolist()
    texts = [tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
             for ids, n in zip(batch["completion_ids"].tolist(), lengths)]
    finished = batch["finished"].tolist()
    types, langs = columns["prompt_type"], columns["lang"]
    scored = score(fns, texts, weights=cfg.reward_weights, finished=finished, **columns)
    scores = torch.tensor(scored["total"], dtype=torch.float32, device=mask.device)       # (B,)

    with torch.no_grad():
        old = forward(model, value_head, batch, cfg.temperature, bf16, with_entropy=True)
        with model.disable_adapter():
            ref = forward(model, None, batch, cfg.temperature, bf16)
    rewards, kl_tokens = kl_penalized_rewards(scores, old["logprobs"], ref["logprobs"], mask, kl.beta)
    old_values = old["values"] * mask
    advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    batch.update(old_logprobs=old["logprobs"], old_values=old_values, advantages=advantages, returns=returns)

    sequence_kl = kl_tokens.sum(dim=1)                                                    # (B,)
    logs = {"reward": scores.mean().item(), "reward_std": scores.std().item() if len(scores) > 1 else 0.0,
            "kl": masked_mean(kl_tokens, mask).item(), "ppo/kl_sequence": sequence_kl.mean().item(),
            "ppo/kl_beta": kl.beta, "ppo/reward_with_kl": rewards.sum(dim=1).mean().item(),
            "entropy": masked_mean(old["entropy"], mask).item(), "ppo/values_mean": masked_mean(old_values, mask).item(),
            "ppo/returns_mean": masked_mean(returns, mask).item(),
            "ppo/explained_variance": explained_variance(old_values, returns, mask),
            "completions/mean_length": float(sum(lengths)) / len(lengths),
            "completions/clipped_ratio": 1 - sum(finished) / len(finished)}
    logs.update(component_logs({name: scored[name] for name in fns}, types))
    logs.update({f"gen/{k}": v for k, v in generation_stats(texts, langs, finished, cfg).items()})
    samples = [{"prompt_type": t, "text": text, "finished": done, "total": round(total, 3),
                **{name: round(scored[name][i], 3) for name in fns if scored[name][i] is not None}}
               for i, (t, text, done, total) in enumerate(zip(types, texts, finished, scored["total"]))]
    return batch, logs, samples


def optimize(model, value_head, optimizer, batch: dict, cfg: PPOArgs, bf16: bool) -> dict:
    """Step 5: ppo_epochs passes of shuffled minibatches; returns the mean of each loss statistic, or at the first
    non-finite loss or gradient norm, those two, without the optimizer step that would spread them."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    B = batch["completion_ids"].shape[0]
    stats: dict[str, list[float]] = {}
    for _ in range(cfg.ppo_epochs):
        for idx in torch.randperm(B).split(cfg.minibatch_size):
            mb = {k: v[idx] for k, v in batch.items()}
            mask = mb["completion_mask"].float()
            new = forward(model, value_head, mb, cfg.temperature, bf16, with_entropy=cfg.entropy_coef > 0)
            pg_loss, pg_stats = policy_loss(new["logprobs"], mb["old_logprobs"], mb["advantages"], mask, cfg.clip_range)
            vf_loss, vf_stats = value_loss(new["values"], mb["old_values"], mb["returns"], mask, cfg.clip_range_value)
            loss = pg_loss + cfg.vf_coef * vf_loss
            if cfg.entropy_coef > 0:
                ent_loss, _ = entropy_bonus(new["entropy"], mask, cfg.entropy_coef)
                loss = loss + ent_loss
            optimizer.zero_grad()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if not (math.isfinite(loss.item()) and math.isfinite(float(grad_norm))):
                return {"loss": loss.item(), "grad_norm": float(grad_norm)}   # no step on it: the loop stops the run
            optimizer.step()
            for key, value in {"loss": loss.item(), "ppo/policy_loss": pg_loss.item(), "ppo/value_loss": vf_loss.item(),
                               "grad_norm": float(grad_norm),
                               **{f"ppo/{k}": v.item() for k, v in {**pg_stats, **vf_stats}.items()}}.items():
                stats.setdefault(key, []).append(value)
    return {k: sum(v) / len(v) for k, v in stats.items()}


def save_checkpoint(directory: Path, model, value_head, optimizer, iteration: int, kl: KLController,
                    summary_state: dict) -> None:
    """Everything a resume needs, written atomically: the adapter, value head, optimizer, KL beta, RNG, and what
    the summary reports (summary_state: history, alarms, first RM score, elapsed wall time)."""
    def save(tmp: Path):
        model.save_pretrained(str(tmp))                       # the adapter, usable on its own
        trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
        torch.save({"trainable": trainable, "value_head": value_head.state_dict(), "optimizer": optimizer.state_dict(),
                    "iteration": iteration, "kl_beta": kl.beta, "torch_rng": torch.get_rng_state(),
                    "summary_state": summary_state}, tmp / "ppo_state.pt")
    save_atomically(directory, save)
    for old in checkpoints(directory.parent)[:-2]:
        shutil.rmtree(old)


def load_checkpoint(directory: Path, model, value_head, optimizer, kl: KLController) -> tuple[int, dict]:
    """(iteration, summary_state) of a checkpoint, its weights, optimizer, KL beta and RNG restored."""
    state = torch.load(Path(directory) / "ppo_state.pt", weights_only=False)
    missing = set(state["trainable"]) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{directory}: checkpoint holds parameters this model lacks, e.g. {sorted(missing)[:3]}")
    model.load_state_dict(state["trainable"], strict=False)
    value_head.load_state_dict(state["value_head"])
    optimizer.load_state_dict(state["optimizer"])
    kl.beta = state["kl_beta"]
    torch.set_rng_state(state["torch_rng"])
    return state["iteration"], state.get("summary_state", {})


def take_learning_rates(optimizer, cfg: PPOArgs) -> None:
    """The configured learning rates (policy, value head) over those a resumed optimizer state brings back: a
    resume with a lowered --learning_rate (--resume_changed true: the way out of a diverged run) runs at it."""
    for group, rate in zip(optimizer.param_groups, (cfg.learning_rate, cfg.value_learning_rate or cfg.learning_rate)):
        group["lr"] = rate


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(PPOArgs, "ppo", argv)
    if cfg.dry_run:
        return dry_run(cfg, "ppo", **prompt_plan(cfg), reward_components=component_names(cfg))
    check_accelerators(cfg)
    set_seed(cfg.seed)
    started = time.time()
    out, resume = prepare_stage_dir(cfg, "ppo")
    bf16 = use_bf16(cfg.bf16)

    # policy = base + SFT adapter merged, + a fresh LoRA: "adapter disabled" is the SFT reference
    sft_dir = cfg.sft_adapter_dir()
    base, tokenizer = load_policy(cfg.policy_model, [sft_dir], dtype=cfg.model_dtype)
    stop_token_ids(base, tokenizer)
    model = get_peft_model(base, lora_config(cfg))
    model.eval()                                               # no dropout: ratio 1 at the start of every epoch
    value_head = ValueHead(model.config.hidden_size).to(model.device)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.learning_rate},
        {"params": value_head.parameters(), "lr": cfg.value_learning_rate or cfg.learning_rate}])
    kl = KLController(cfg.kl_beta, cfg.kl_target, cfg.kl_horizon)
    fns = build_scorer(cfg)

    train_tasks, held_out = rl_prompt_split(cfg, cfg.balance_prompt_types)
    stream = PromptStream(train_tasks, cfg.seed)
    print(f"[ppo] {len(train_tasks)} training prompts, {len(held_out)} held out; {cfg.max_steps} iterations of "
          f"{cfg.batch_size} completions, {cfg.ppo_epochs} epochs x {cfg.batch_size // cfg.minibatch_size} "
          f"minibatches; KL beta {cfg.kl_beta}{f' -> target {cfg.kl_target}' if cfg.kl_target else ' (fixed)'}")

    sentinel = UpdateSentinel(model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    value_before = trainable_snapshot(value_head)
    start, carried = load_checkpoint(Path(resume), model, value_head, optimizer, kl) if resume else (0, {})
    take_learning_rates(optimizer, cfg)
    if resume:
        print(f"[ppo] resumed at iteration {start}")
    divergence = DivergenceWatch("ppo", out, cfg.learning_rate, sentinel.probe, good_until=start)
    alarms = Alarms(cfg, stop=cfg.alarm_stop)
    alarms.fired.extend(carried.get("alarms", []))            # what the summary reports survives the resume
    alarms.first_rm = carried.get("first_rm")
    started -= carried.get("elapsed_s", 0.0)
    writer = SummaryWriter(log_dir=str(out / "tb"))
    history: list[dict] = list(carried.get("history", []))
    watch = gold_watch(cfg, lambda: model, tokenizer, held_out, fns, writer, out, alarms, carried.get("gold_watch"))
    iteration = start
    for iteration in tqdm(range(start + 1, cfg.max_steps + 1), desc="ppo", initial=start, total=cfg.max_steps):
        tasks = stream.prompts((iteration - 1) * cfg.batch_size, cfg.batch_size)
        batch, logs, samples = rollout(model, value_head, tokenizer, tasks, fns, cfg, kl, bf16)
        logs.update(optimize(model, value_head, optimizer, batch, cfg, bf16))
        divergence.check(iteration, logs, [model, value_head])     # before anything is logged or saved
        kl.update(logs["ppo/kl_sequence"], cfg.batch_size)
        logs["learning_rate"] = cfg.learning_rate
        alarms.last_batch = lambda: samples
        fired = alarms.observe(logs, iteration)
        for key, value in logs.items():
            writer.add_scalar(f"train/{key}", value, iteration)
        if cfg.log_samples_steps and iteration % cfg.log_samples_steps == 0:
            writer.add_text("samples", samples_markdown(samples[:4]), iteration)
        writer.flush()
        history.append({"step": iteration, **logs})
        tqdm.write(f"[ppo] {iteration}: reward {logs['reward']:.3f} kl {logs['kl']:.4f} value loss "
                   f"{logs['ppo/value_loss']:.4f} clipfrac {logs['ppo/clipfrac']:.2f} expl. var "
                   f"{logs['ppo/explained_variance']:.2f}")
        if watch is not None:
            watch.evaluate(iteration)
        if iteration % cfg.save_steps == 0 or (fired and cfg.alarm_stop):
            save_checkpoint(out / f"checkpoint-{iteration}", model, value_head, optimizer, iteration, kl,
                            {"history": history, "alarms": alarms.fired, "first_rm": alarms.first_rm,
                             "elapsed_s": time.time() - started, "gold_watch": watch.history if watch else []})
        if fired and cfg.alarm_stop:
            break
    writer.close()

    moved = sentinel.check(model, "ppo", iteration)
    moved["value_head"] = check_weights_moved(value_head, value_before, "ppo value head", iteration)

    # the PPO adapter applies on top of base + SFT adapter; the value head travels with it
    save_stage_adapter(out / "final", model, tokenizer, cfg.policy_model, parent=sft_dir,
                       extra=lambda d: torch.save(value_head.state_dict(), d / "value_head.pt"))

    first, last = (history[0], history[-1]) if history else ({}, {})
    nan = float("nan")
    head = [f"iterations {iteration} x {cfg.batch_size} completions, KL beta {cfg.kl_beta} -> {kl.beta:.4f}",
            f"reward (rollout mean) first -> last iteration: {first.get('reward', nan):.4f} -> {last.get('reward', nan):.4f}",
            f"explained variance first -> last: {first.get('ppo/explained_variance', nan):.3f} -> "
            f"{last.get('ppo/explained_variance', nan):.3f}"]
    return finish_rl_stage("ppo", cfg, out, model, tokenizer, held_out, fns, iteration, {
        "reward_first": first.get("reward"), "reward_last": last.get("reward"), "kl_last": last.get("kl"),
        "kl_beta_last": kl.beta, "history": history, **({"gold_watch": watch.history} if watch else {})}, head, alarms.fired, moved, started)


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
