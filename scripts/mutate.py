"""Mutation check: break the code on purpose, one mutation at a time, and see whether the tests notice.

    python scripts/mutate.py              # every mutation below, 20-60 s each on 2 cores
    python scripts/mutate.py --only ppo   # the mutations whose name contains 'ppo'

Each mutation replaces one snippet of one file in a copy of the repository and runs the tests meant to catch it;
a mutation is killed when they fail. The list holds wrong code that once passed the whole suite, plus a few more
of the same kind. Not run by CI (it runs the tests once per mutation: about 20-40 minutes on 2 cores); run it
after changing a tested area, and add the mutation a new test is written against.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRUCTION = "tests/pipeline/test_construction.py"
PPO, PRESETS, RANKING = "tests/rl/test_ppo.py", "tests/pipeline/test_presets.py", "tests/reward/test_ranking.py"

# (name, file, snippet, replacement, tests that must fail)
MUTATIONS = [
    ("ppo log-probs one position off", "common/logprobs.py",
     "logits = out.logits[:, :-1].float() / temperature", "logits = out.logits[:, 1:].float() / temperature",
     [f"{CONSTRUCTION}::test_ppo_logprobs_and_values_match_a_manual_full_forward_at_the_sampling_temperature"]),
    ("ppo values one position off", "common/logprobs.py",
     "hidden = out.hidden_states[-1][:, -T - 1:-1]", "hidden = out.hidden_states[-1][:, -T:]",
     [f"{CONSTRUCTION}::test_ppo_logprobs_and_values_match_a_manual_full_forward_at_the_sampling_temperature"]),
    ("ppo sampling temperature dropped from the log-probs", "rl/ppo.py",
     "last=T, temperature=temperature,", "last=T, temperature=1.0,",
     [f"{CONSTRUCTION}::test_ppo_logprobs_and_values_match_a_manual_full_forward_at_the_sampling_temperature"]),
    ("ppo reference is the policy (adapter not disabled)", "rl/ppo.py",
     "        with model.disable_adapter():\n            ref = forward(", "        with torch.no_grad():\n            ref = forward(",
     [f"{CONSTRUCTION}::test_ppo_kl_is_positive_once_the_policy_differs_from_its_reference"]),
    ("preference reference is the policy (adapter not disabled)", "rl/preference.py",
     "with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():", "with torch.no_grad():",
     [f"{CONSTRUCTION}::test_preference_trainer_loss_equals_the_pure_loss_on_the_same_logprobs"]),
    ("gae ignores lambda", "rl/ppo.py",
     "next_advantage = delta + gamma * gae_lambda * next_advantage", "next_advantage = delta + gamma * next_advantage",
     ["tests/rl/test_ppo.py::test_gae_terminal_reward_only_by_hand"]),
    ("seed formula's repetition weight with its sign flipped", "common/stage_configs.py",
     '"repetition_penalty": -0.15}', '"repetition_penalty": 0.15}',
     [f"{CONSTRUCTION}::test_the_seed_formula_on_a_repetitive_text_by_hand"]),
    ("f1 of the not-humor class", "reward/train_rm.py",
     'average="binary", zero_division=0)', 'average="binary", pos_label=0, zero_division=0)',
     [f"{CONSTRUCTION}::test_f1_is_the_humor_class_when_the_classes_differ"]),
    ("substring keyword coverage", "data/text.py",
     '    if lang == "zh" or any(', '    if True or any(',
     [f"{CONSTRUCTION}::test_coverage_matches_whole_words_and_their_inflections"]),
    ("no inflected forms in keyword coverage", "data/text.py",
     "return token == required or (", "return token == required and (",
     [f"{CONSTRUCTION}::test_coverage_matches_whole_words_and_their_inflections"]),
    ("rl/ doctests not collected", "pyproject.toml",
     'testpaths = ["tests", "common", "data", "reward", "rl", "eval"]', 'testpaths = ["tests", "common", "data", "reward", "eval"]',
     [f"{CONSTRUCTION}::test_every_package_with_doctests_is_collected"]),
    ("rm scores the other label", "reward/model.py",
     "    return int(index)\n", "    return 1 - int(index)\n",
     [f"{CONSTRUCTION}::test_the_rm_reads_the_humor_label_it_was_trained_with_and_refuses_unknown_labels"]),
    ("prompts cut on the right", "common/generation.py",
     "return tokenizer.decode(ids[-max_tokens:]", "return tokenizer.decode(ids[:max_tokens]",
     [f"{CONSTRUCTION}::test_long_prompts_keep_their_end_in_every_stage"]),
    ("dpop penalty on the wrong log-prob (the seed's formula)", "rl/losses.py",
     "chosen_drop = torch.clamp(ref_chosen - pi_chosen, min=0.0)", "chosen_drop = torch.clamp(pi_rejected - pi_chosen, min=0.0)",
     ["tests/rl/test_dpo.py"]),
    ("lora left folded after sampling", "common/generation.py",
     "            for layer in layers:\n                layer.unmerge()", "            for layer in layers:\n                pass",
     ["tests/common/test_sampling.py::test_folded_lora_samples_the_policy_itself_and_puts_the_weights_back"]),
    ("graded pairs ignore the source's scale", "data/grades.py",
     "gap = min_gap * (scale[1] - scale[0])", "gap = min_gap",
     ["tests/reward/test_ranking.py::test_pairs_from_ungrouped_grades_keep_the_order_and_the_margin"]),
    ("rating rmse on the 0-1 scale", "reward/train_rm.py",
     "(lo + (hi - lo) * p - g) ** 2", "(p - g) ** 2",
     ["tests/reward/test_ranking.py::test_rating_rmse_maps_the_score_back_onto_the_sources_scale"]),
    # a second round: bugs that once passed every test (signs, masks, a missing finally, a constant, a field left out)
    ("ppo kl penalty with policy and reference swapped", "rl/ppo.py",
     'kl_penalized_rewards(scores, old["logprobs"], ref["logprobs"], mask, kl.beta)',
     'kl_penalized_rewards(scores, ref["logprobs"], old["logprobs"], mask, kl.beta)',
     [f"{PPO}::test_rollout_rewards_are_minus_beta_kl_per_token_plus_the_score_on_the_last_token"]),
    ("ppo advantage whitening switched off", "rl/ppo.py",
     "    if cfg.whiten_advantages:\n        advantages = masked_whiten(advantages, mask)",
     "    if False:\n        advantages = masked_whiten(advantages, mask)",
     [f"{PPO}::test_whitened_advantages_have_mean_0_and_std_1_over_real_tokens_only"]),
    ("ppo advantages whitened over the padding too", "rl/ppo.py",
     "advantages = masked_whiten(advantages, mask)", "advantages = masked_whiten(advantages, torch.ones_like(mask))",
     [f"{PPO}::test_whitened_advantages_have_mean_0_and_std_1_over_real_tokens_only"]),
    ("entropy bonus with its sign flipped", "rl/losses.py",
     "return -coef * mean_entropy,", "return coef * mean_entropy,",
     [f"{PPO}::test_entropy_bonus_by_hand_and_its_gradient_raises_entropy",
      f"{PPO}::test_a_ppo_update_with_only_the_entropy_bonus_raises_the_policys_entropy"]),
    ("entropy bonus subtracted in the ppo loss", "rl/ppo.py",
     "loss = loss + ent_loss", "loss = loss - ent_loss",
     [f"{PPO}::test_a_ppo_update_with_only_the_entropy_bonus_raises_the_policys_entropy"]),
    ("lora left folded when sampling raises", "common/generation.py",
     "    try:\n        yield len(layers)\n    finally:\n        with torch.no_grad():\n            for layer in layers:\n"
     "                layer.unmerge()",
     "    yield len(layers)\n    with torch.no_grad():\n        for layer in layers:\n            layer.unmerge()",
     ["tests/common/test_sampling.py::test_sampling_that_raises_leaves_every_weight_and_setting_as_it_was"]),
    ("bf16 weight copies left in place when sampling raises", "common/generation.py",
     "    try:\n        yield len(params)\n    finally:\n        for p, data in zip(params, saved):\n            p.data = data",
     "    yield len(params)\n    for p, data in zip(params, saved):\n        p.data = data",
     ["tests/common/test_sampling.py::test_sampling_that_raises_leaves_every_weight_and_setting_as_it_was"]),
    ("coverage without the same-first-letter guard", "data/text.py",
     "token == required or (token[0] == required[0] and _lemma", "token == required or (_lemma",
     [f"{CONSTRUCTION}::test_coverage_matches_whole_words_and_their_inflections"]),
    ("gibberish penalty's sign flipped in the default preset", "common/stage_configs.py",
     '"gibberish_penalty": -0.20', '"gibberish_penalty": 0.20',
     [f"{PRESETS}::test_every_shipped_weighting_has_penalties_that_lower_the_total"]),
    ("gibberish penalty's sign flipped in a sweep setting", "configs/sweeps/cpu_default_weights.yaml",
     "words: {rm_reward: 0.35, coverage_reward: 0.50, length_reward: 0.10, repetition_penalty: -0.10, "
     "script_drift_penalty: -0.3, no_eos_penalty: -0.1, gibberish_penalty: -0.2}",
     "words: {rm_reward: 0.35, coverage_reward: 0.50, length_reward: 0.10, repetition_penalty: -0.10, "
     "script_drift_penalty: -0.3, no_eos_penalty: -0.1, gibberish_penalty: 0.2}",
     [f"{PRESETS}::test_every_shipped_weighting_has_penalties_that_lower_the_total"]),
    ("graded pairs ignore pair_min_grade_gap", "reward/train_rm.py",
     "pairs_from_grades(src.train, cfg.pair_min_grade_gap, src.scale, cfg.seed)",
     "pairs_from_grades(src.train, 0.0, src.scale, cfg.seed)",
     [f"{RANKING}::test_graded_pairs_respect_pair_min_grade_gap_and_their_count_follows_it"]),
    ("grades divided by the top of their scale", "data/grades.py",
     "return (grade - lo) / (hi - lo)", "return grade / hi",
     [f"{RANKING}::test_normalised_grades_span_exactly_0_to_1_over_each_sources_documented_scale"]),
    ("a changed learning rate passes a resume", "common/rundir.py",
     '"output_dir", "runs_dir", "run_name"}', '"output_dir", "runs_dir", "run_name", "learning_rate"}',
     ["tests/common/test_never_lose.py::test_resuming_with_any_training_setting_changed_is_refused"]),
    ("TRL samples at temperature 1 under the fast nucleus", "common/generation.py",
     "warpers = _warpers(saved[\"temperature\"], saved[\"top_k\"], top_p)", "warpers = _warpers(1.0, saved[\"top_k\"], top_p)",
     ["tests/rl/test_online.py::test_each_online_algorithm_trains_through_the_seam_and_logs_what_the_alarms_read[grpo]"]),
]


def run_tests(path: str | None, old: str, new: str, tests: list[str]) -> tuple[bool, float]:
    """(the tests failed, seconds) on a fresh copy of the repository, with one mutation applied unless path is None."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", "runs", ".git", "__pycache__", "exports"))
        if path is not None:
            target = copy / path
            source = target.read_text(encoding="utf-8")
            if source.count(old) != 1:
                raise SystemExit(f"mutation in {path}: the snippet occurs {source.count(old)} times; update the list")
            target.write_text(source.replace(old, new), encoding="utf-8")
        started = time.time()
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:warnings", *tests], cwd=copy,
                                env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True)
        return result.returncode != 0, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="Run only the mutations whose name contains this.")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only in m[0]]
    baseline = sorted({t for m in chosen for t in m[4]})
    failed, _ = run_tests(None, "", "", baseline)           # a kill only counts if the tests pass on the real code
    if failed:
        raise SystemExit(f"the tests fail on the unmutated code: {baseline}")
    killed = 0
    print("| mutation | file | result | seconds |\n|---|---|---|---|")
    for name, path, old, new, tests in chosen:
        dead, seconds = run_tests(path, old, new, tests)
        killed += dead
        print(f"| {name} | {path} | {'killed' if dead else '**survived**'} | {seconds:.0f} |", flush=True)
    print(f"\n{killed} of {len(chosen)} mutations killed")
    if killed < len(chosen):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
