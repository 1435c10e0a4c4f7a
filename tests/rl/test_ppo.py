"""PPO (rl/ppo.py): every piece of the math against numbers worked by hand, the masking of padding and
post-EOS tokens, and short runs on the tiny model."""

import json
import math
import shutil

import pytest
import torch

from rl.losses import policy_loss, value_loss
from rl.ppo import KLController, ValueHead, explained_variance, forward, gae, kl_penalized_rewards, masked_whiten
from tests.conftest import TINY

# ---------------------------------------------------------------- GAE


def test_gae_terminal_reward_only_by_hand():
    # one completion of 3 tokens, the text's score 1.0 on the last one, V = (0.5, 0.4, 0.2), gamma 1, lam 0.9
    #   delta_2 = 1 + 0 - 0.2 = 0.8                    A_2 = 0.8
    #   delta_1 = 0 + 0.2 - 0.4 = -0.2                 A_1 = -0.2 + 0.9 * 0.8 = 0.52
    #   delta_0 = 0 + 0.4 - 0.5 = -0.1                 A_0 = -0.1 + 0.9 * 0.52 = 0.368
    rewards, values, mask = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.4, 0.2]]), torch.ones(1, 3)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, gae_lambda=0.9)
    assert advantages.tolist()[0] == pytest.approx([0.368, 0.52, 0.8])
    assert returns.tolist()[0] == pytest.approx([0.868, 0.92, 1.0])
    # lam = 1: Monte-Carlo, A_t = score - V_t; returns = the score everywhere
    advantages, returns = gae(rewards, values, mask, gamma=1.0, gae_lambda=1.0)
    assert advantages.tolist()[0] == pytest.approx([0.5, 0.6, 0.8]) and returns.tolist()[0] == pytest.approx([1.0] * 3)


def test_gae_with_discount_and_per_token_rewards_by_hand():
    # rewards (-0.1, 0.5), V = (0.3, 0.6), gamma 0.9, lam 0.5
    #   delta_1 = 0.5 - 0.6 = -0.1                     A_1 = -0.1
    #   delta_0 = -0.1 + 0.9 * 0.6 - 0.3 = 0.14        A_0 = 0.14 + 0.9 * 0.5 * -0.1 = 0.095
    advantages, _ = gae(torch.tensor([[-0.1, 0.5]]), torch.tensor([[0.3, 0.6]]), torch.ones(1, 2), gamma=0.9, gae_lambda=0.5)
    assert advantages.tolist()[0] == pytest.approx([0.095, -0.1])


def test_gae_ignores_padding_after_the_last_token():
    # the same completion padded to 5 tokens with garbage values and rewards in the padding
    rewards = torch.tensor([[0.0, 0.0, 1.0, 7.0, 7.0]])
    values = torch.tensor([[0.5, 0.4, 0.2, 9.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, gae_lambda=0.9)
    assert advantages.tolist()[0] == pytest.approx([0.368, 0.52, 0.8, 0.0, 0.0])
    assert returns.tolist()[0] == pytest.approx([0.868, 0.92, 1.0, 0.0, 0.0])


def test_kl_penalized_rewards_put_the_score_on_the_last_real_token():
    # row 0: 3 tokens, row 1: 2 tokens + 1 pad; beta 0.1
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([0.8, 0.3]), logprobs, ref, mask, beta=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1, 0.8], [-0.1, 0.3, 0.0]]))


# ---------------------------------------------------------------- losses


def test_clipped_policy_loss_by_hand():
    # ratios 1.5, 0.5, 1.5, 0.5 with advantages +1, +1, -1, -1, clip 0.2; a 5th masked token must not count
    #   A=+1, r=1.5: max(-1.5, -1.2) = -1.2 (clipped)    A=+1, r=0.5: max(-0.5, -0.8) = -0.5
    #   A=-1, r=1.5: max( 1.5,  1.2) =  1.5              A=-1, r=0.5: max( 0.5,  0.8) =  0.8 (clipped)
    #   loss = (-1.2 - 0.5 + 1.5 + 0.8) / 4 = 0.15, clip fraction 2/4
    ratio = torch.tensor([[1.5, 0.5, 1.5, 0.5, 100.0]])
    old = torch.zeros(1, 5)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0, 50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    loss, stats = policy_loss(torch.log(ratio), old, advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(0.15) and stats["clipfrac"].item() == pytest.approx(0.5)
    # approx KL (k3) = mean of (r - 1) - log r over the 4 real tokens
    k3 = [(r - 1) - torch.log(torch.tensor(r)).item() for r in (1.5, 0.5, 1.5, 0.5)]
    assert stats["approx_kl"].item() == pytest.approx(sum(k3) / 4, rel=1e-5)


def test_policy_loss_gradient_raises_the_probability_of_a_good_token():
    logprob = torch.tensor([[-1.0]], requires_grad=True)
    loss, _ = policy_loss(logprob, torch.tensor([[-1.0]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    loss.backward()
    assert logprob.grad.item() == pytest.approx(-2.0)       # d(-A * ratio)/d logprob = -A at ratio 1


def test_clipped_value_loss_by_hand():
    # token 0: V_old 0, V 0.5, R 1, clip 0.2: V_clipped 0.2; max((0.5-1)^2, (0.2-1)^2) = 0.64
    # token 1: V_old 0, V -0.1, R 0: inside the clip range; 0.01
    # loss = 0.5 * (0.64 + 0.01) / 2 = 0.1625; clipped on 1 of 2 tokens
    values = torch.tensor([[0.5, -0.1, 3.0]])
    old = torch.tensor([[0.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 0.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, stats = value_loss(values, old, returns, mask, clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.1625) and stats["value_clipfrac"].item() == pytest.approx(0.5)


def test_whitening_and_explained_variance_use_only_real_tokens():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_whiten(x, mask).tolist()[0] == pytest.approx([-1.0, 1.0, 0.0], abs=1e-4)
    returns = torch.tensor([[1.0, 3.0, 50.0]])
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    # V = (2, 2): residual (-1, 1), var 1; var(R) = 1 -> 0
    assert explained_variance(torch.tensor([[2.0, 2.0, 0.0]]), returns, mask) == pytest.approx(0.0)


def test_adaptive_kl_controller_by_hand():
    fixed = KLController(0.1)
    fixed.update(100.0, 8)
    assert fixed.beta == 0.1
    kl = KLController(0.1, target=6.0, horizon=10000)
    kl.update(12.0, 8)              # error clipped to +0.2: beta * (1 + 0.2 * 8 / 10000)
    assert kl.beta == pytest.approx(0.1 * 1.00016)
    kl = KLController(0.1, target=6.0, horizon=100)
    kl.update(5.4, 10)              # error -0.1: beta * (1 - 0.1 * 10 / 100)
    assert kl.beta == pytest.approx(0.099)


# ---------------------------------------------------------------- masking on a real model


def test_post_eos_tokens_are_masked_from_generation_and_every_loss():
    from peft import get_peft_model

    from common.generation import generate_ids
    from common.models import load_base_policy
    from common.stage_configs import PPOArgs
    from common.training import lora_config

    model, tok = load_base_policy("tiny:llama")
    eos, pad = tok.eos_token_id, tok.pad_token_id
    enc = tok(["a b c", "d e"], return_tensors="pt", padding=True)
    canned = torch.tensor([[11, 12, eos, 13, 14], [15, 16, 17, 18, 19]])      # row 0 stops at t=2, row 1 never
    model.generate = lambda **kw: torch.cat([kw["input_ids"], canned], dim=1)
    gen = generate_ids(model, tok, ["a b c", "d e"], 5, 1.0, 1.0)
    assert gen["completion_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert gen["completion_ids"].tolist() == [[11, 12, eos, pad, pad], [15, 16, 17, 18, 19]]
    assert gen["finished"].tolist() == [True, False] and gen["prompt_ids"].shape == enc["input_ids"].shape

    # whatever sits after EOS changes neither the real tokens' log-probs and values nor any loss
    policy = get_peft_model(load_base_policy("tiny:llama")[0], lora_config(PPOArgs()))
    head = ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    other = dict(gen, completion_ids=gen["completion_ids"].clone())
    other["completion_ids"][0, 3:] = torch.tensor([21, 22])
    a, b = (forward(policy, head, g, 0.9, False, with_entropy=True) for g in (gen, other))
    mask = gen["completion_mask"].float()
    for key in ("logprobs", "values", "entropy"):
        assert torch.allclose(a[key] * mask, b[key] * mask, atol=1e-5), key
        assert not torch.allclose(a[key], b[key]), key          # the masked positions did differ
    adv, ret = torch.randn(2, 5), torch.randn(2, 5)
    for fn, extra in ((policy_loss, (adv,)), (value_loss, (ret,))):
        key = "logprobs" if fn is policy_loss else "values"
        la, _ = fn(a[key], a[key].detach() - 0.1, *extra, mask, 0.2)
        lb, _ = fn(b[key], a[key].detach() - 0.1, *extra, mask, 0.2)
        assert la.item() == pytest.approx(lb.item(), abs=1e-5)


# ---------------------------------------------------------------- runs on the tiny model


def test_ppo_run_moves_policy_and_value_head_and_logs_everything(run):
    from tests.pipeline.test_pipeline import scalars

    run_dir, s = run
    p = s["ppo"]
    assert p["steps"] == 3 and len(p["history"]) == 3
    check = p["update_check"]
    assert check["weights_moved"] and check["moved_tensors"] == check["trainable_tensors"] > 0
    assert check["output_change_max"] > 0
    assert check["value_head"]["weights_moved"] and check["value_head"]["moved_tensors"] == 2
    tags = set(scalars(run_dir / "ppo"))
    for tag in ("train/reward", "train/reward_std", "train/kl", "train/entropy", "train/ppo/value_loss",
                "train/ppo/policy_loss", "train/ppo/explained_variance", "train/ppo/approx_kl", "train/ppo/clipfrac",
                "train/ppo/kl_beta", "train/rewards/rm_reward/mean", "train/rewards/words/coverage_reward/mean",
                "train/gen/stop_rate", "train/gen/dist2", "train/completions/clipped_ratio", "eval/reward"):
        assert tag in tags, tag
    final = run_dir / "ppo" / "final"
    assert (final / "value_head.pt").is_file() and (final / "adapter_config.json").is_file()
    assert json.loads((final / "lineage.json").read_text())["parents"] == [str(run_dir / "sft" / "final")]
    assert all(math.isfinite(h["ppo/value_loss"]) for h in p["history"])


@pytest.mark.e2e
def test_ppo_resumes_from_its_checkpoint_to_the_same_weights(run, tmp_path):
    from rl.ppo import main as ppo

    run_dir, _ = run
    common = ["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name, "--max_steps", "3",
              "--save_steps", "1", "--eval_prompts", "2"]
    uninterrupted = ppo(common + ["--output_dir", str(tmp_path / "a")])
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")   # as if it died after 2
    summary = ppo(common + ["--output_dir", str(tmp_path / "b")])
    assert [h["step"] for h in summary["history"]] == [1, 2, 3]          # carried across the resume
    a = torch.load(tmp_path / "a" / "checkpoint-3" / "ppo_state.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoint-3" / "ppo_state.pt", weights_only=False)
    for name, tensor in a["trainable"].items():
        assert torch.allclose(tensor, b["trainable"][name], atol=1e-6), name
    assert torch.allclose(a["value_head"]["linear.weight"], b["value_head"]["linear.weight"], atol=1e-6)
    assert summary["reward_first"] == uninterrupted["reward_first"] and summary["alarms"] == uninterrupted["alarms"]


def test_ppo_with_a_frozen_optimizer_fails_loudly(run, tmp_path, monkeypatch):
    from rl.ppo import main as ppo

    run_dir, _ = run
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, closure=None: None)
    with pytest.raises(RuntimeError, match="ppo: no trainable parameter changed in 2 steps"):
        ppo(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name, "--max_steps", "2",
             "--output_dir", str(tmp_path / "frozen")])


# ---------------------------------------------------------------- one rollout and one update, checked by hand


def _policy_value_head_and_canned_rollout(monkeypatch, scores: list[float]):
    """A tiny policy whose LoRA differs from its reference, a random value head, and a rollout of 3 canned
    completions of 4, 2 and 3 real tokens (rows 1 and 2 padded after their EOS), scored `scores`."""
    from peft import get_peft_model

    import rl.ppo as ppo
    from common.models import load_base_policy
    from common.stage_configs import PPOArgs
    from common.training import lora_config
    from data.loaders import TaskPrompt

    torch.manual_seed(0)
    cfg = PPOArgs(lora_dropout=0.0)                         # no dropout noise between the rollout and the checks
    model, tok = load_base_policy("tiny:llama")
    policy = get_peft_model(model, lora_config(cfg))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.5)                           # B != 0: the policy is not its reference
    head = ValueHead(policy.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight, std=0.5)
    eos = tok.eos_token_id
    canned = torch.tensor([[11, 12, 13, 14], [15, eos, 16, 17], [18, 19, eos, 20]])     # real lengths 4, 2, 3
    policy.generate = lambda **kw: torch.cat([kw["input_ids"], canned], dim=1)
    tasks = [TaskPrompt(str(i), "en", "headline", headline=f"headline {i}") for i in range(3)]
    monkeypatch.setattr(ppo, "score", lambda fns, texts, **kw: {"total": list(scores)})
    return policy, tok, head, tasks, cfg


def _rollout(policy, tok, head, tasks, cfg, beta: float):
    from rl.ppo import KLController, rollout

    batch, logs, _ = rollout(policy, head, tok, tasks, {}, cfg, KLController(beta), bf16=False)
    return batch, logs


@pytest.fixture
def canned(monkeypatch):
    return _policy_value_head_and_canned_rollout(monkeypatch, scores=[1.0, -0.5, 0.25])


def test_rollout_rewards_are_minus_beta_kl_per_token_plus_the_score_on_the_last_token(canned):
    # gamma = lambda = 1, no whitening: returns_t = sum_{k >= t} r_k, the Monte-Carlo return, with
    #   r_k = -beta * (log pi(y_k) - log pi_ref(y_k)) on every real token, + the text's score on the last real one
    policy, tok, head, tasks, cfg = canned
    cfg.gamma, cfg.gae_lambda, cfg.whiten_advantages, beta = 1.0, 1.0, False, 0.3
    batch, logs = _rollout(policy, tok, head, tasks, cfg, beta)
    mask = batch["completion_mask"].float()
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    with torch.no_grad():
        logp = forward(policy, None, batch, cfg.temperature, False)["logprobs"]
        with policy.disable_adapter():
            ref_logp = forward(policy, None, batch, cfg.temperature, False)["logprobs"]
    assert not torch.allclose(logp * mask, ref_logp * mask, atol=1e-3)      # the test would not see a swap otherwise
    for i, (score, n) in enumerate(zip([1.0, -0.5, 0.25], [4, 2, 3])):
        per_token = [-beta * (logp[i, t] - ref_logp[i, t]).item() for t in range(n)]
        per_token[-1] += score
        expected = [sum(per_token[t:]) for t in range(n)]
        assert batch["returns"][i, :n].tolist() == pytest.approx(expected, abs=1e-4), i
        assert batch["returns"][i, n:].abs().sum().item() == 0.0
        values = batch["old_values"][i, :n]
        assert batch["advantages"][i, :n].tolist() == pytest.approx((torch.tensor(expected) - values).tolist(), abs=1e-4)
    # the logged KL is log pi - log pi_ref averaged over real tokens (its sign is part of the definition)
    assert logs["kl"] == pytest.approx(((logp - ref_logp) * mask).sum().item() / mask.sum().item(), abs=1e-5)


def test_whitened_advantages_have_mean_0_and_std_1_over_real_tokens_only(canned):
    policy, tok, head, tasks, cfg = canned
    cfg.whiten_advantages = False
    raw, _ = _rollout(policy, tok, head, tasks, cfg, 0.1)
    cfg.whiten_advantages = True
    white, _ = _rollout(policy, tok, head, tasks, cfg, 0.1)
    mask = white["completion_mask"].float()
    real = white["advantages"][mask.bool()]
    assert real.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert real.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert white["advantages"][~mask.bool()].abs().sum().item() == 0.0        # padding stays 0
    # the same rollout, whitened by hand from its raw advantages over the 9 real tokens
    x = raw["advantages"][mask.bool()]
    assert real.tolist() == pytest.approx(((x - x.mean()) / x.std(unbiased=False)).tolist(), abs=1e-4)
    assert not torch.allclose(raw["advantages"], white["advantages"])
    assert torch.equal(raw["returns"], white["returns"])               # whitening touches advantages only


def test_entropy_bonus_by_hand_and_its_gradient_raises_entropy():
    from rl.losses import entropy_bonus

    # token entropies 1.0, 2.0 and a masked 9.0; coef 0.1: loss = -0.1 * (1 + 2) / 2 = -0.15
    entropy = torch.tensor([[1.0, 2.0, 9.0]], requires_grad=True)
    loss, stats = entropy_bonus(entropy, torch.tensor([[1.0, 1.0, 0.0]]), coef=0.1)
    assert loss.item() == pytest.approx(-0.15) and stats["entropy"].item() == pytest.approx(1.5)
    loss.backward()
    assert entropy.grad.tolist()[0] == pytest.approx([-0.05, -0.05, 0.0])    # descending the loss raises entropy


def test_a_ppo_update_with_only_the_value_loss_brings_the_values_closer_to_the_returns(canned):
    # advantages 0 and entropy_coef 0: the value loss alone moves the value head, so after one small step on a
    # fixed rollout its values must sit closer to that rollout's returns (a sign error would push them away)
    from rl.ppo import optimize

    policy, tok, head, tasks, cfg = canned
    batch, _ = _rollout(policy, tok, head, tasks, cfg, 0.1)
    batch["advantages"] = torch.zeros_like(batch["advantages"])
    cfg.entropy_coef, cfg.vf_coef, cfg.ppo_epochs, cfg.minibatch_size, cfg.max_grad_norm = 0.0, 1.0, 1, 3, 1e9
    cfg.clip_range_value = 1e9                                       # no clipping: the plain squared error
    mask = batch["completion_mask"].float()

    def value_error():
        with torch.no_grad():
            values = forward(policy, head, batch, cfg.temperature, False)["values"]
            return (((values - batch["returns"]) ** 2) * mask).sum() / mask.sum()

    before = value_error().item()
    optimize(policy, head, torch.optim.SGD(head.parameters(), lr=1e-2), batch, cfg, bf16=False)
    assert value_error().item() < before - 1e-7


def test_a_ppo_update_with_only_the_entropy_bonus_raises_the_policys_entropy(canned):
    # advantages 0 and vf_coef 0: the only gradient on the policy is the entropy bonus's, so one small SGD step on
    # it must raise the mean token entropy of the batch (and lower it if the bonus's sign were flipped)
    from rl.ppo import optimize

    policy, tok, head, tasks, cfg = canned
    batch, _ = _rollout(policy, tok, head, tasks, cfg, 0.1)
    batch["advantages"] = torch.zeros_like(batch["advantages"])
    cfg.entropy_coef, cfg.vf_coef, cfg.ppo_epochs, cfg.minibatch_size, cfg.max_grad_norm = 1.0, 0.0, 1, 3, 1e9
    mask = batch["completion_mask"].float()

    def mean_entropy():
        with torch.no_grad():
            return (forward(policy, None, batch, cfg.temperature, False, with_entropy=True)["entropy"] * mask).sum() / mask.sum()

    before = mean_entropy().item()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimize(policy, head, torch.optim.SGD(params, lr=1e-2), batch, cfg, bf16=False)
    assert mean_entropy().item() > before + 1e-6
