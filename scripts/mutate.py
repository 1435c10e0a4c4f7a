"""Mutation check: break the code on purpose, one mutation at a time, and see whether the tests notice.

    python scripts/mutate.py              # every mutation below, about two minutes each on 2 cores
    python scripts/mutate.py --only ppo   # the mutations whose name contains 'ppo'

Each mutation replaces one snippet of one file in a copy of the repository and runs the tests meant to catch it;
a mutation is killed when they fail. The list holds the wrong code issue 16 found passing the whole suite, plus a
few more of the same kind. Not run by CI (it runs the suite many times over).
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
CONSTRUCTION = "tests/test_construction.py"

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
     ["tests/test_ppo.py::test_gae_terminal_reward_only_by_hand"]),
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
     ["tests/test_dpo.py"]),
    ("lora left folded after sampling", "common/generation.py",
     "            for layer in layers:\n                layer.unmerge()", "            for layer in layers:\n                pass",
     ["tests/test_sampling.py::test_folded_lora_samples_the_policy_itself_and_puts_the_weights_back"]),
    ("graded pairs ignore the source's scale", "data/grades.py",
     "gap = min_gap * (scale[1] - scale[0])", "gap = min_gap",
     ["tests/test_ranking.py::test_pairs_from_ungrouped_grades_keep_the_order_and_the_margin"]),
    ("rating rmse on the 0-1 scale", "reward/train_rm.py",
     "(lo + (hi - lo) * p - g) ** 2", "(p - g) ** 2",
     ["tests/test_ranking.py::test_rating_rmse_maps_the_score_back_onto_the_sources_scale"]),
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
