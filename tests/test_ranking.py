"""Ranking reward models (issue 17, first part): pairwise (Bradley-Terry, TRL RewardTrainer) and rating
(regression on grades) objectives, their held-out figures, the rank_reward component and the spread report."""

import json
import math

import pytest
import torch

from tests.conftest import TINY


def test_ranking_metrics_by_hand():
    from data.preferences import GradedText
    from reward.train_rm import ranking_metrics

    scores = {"a": 2.0, "b": 1.0, "c": 0.5, "d": 0.5, "g1": 0.1, "g2": 0.5, "g3": 0.9}
    score = lambda texts: [scores[t] for t in texts]
    pairs = [("a", "b"), ("c", "a"), ("c", "d")]                      # right, wrong, tie -> (1 + 0 + 0.5) / 3
    grades = [GradedText("g1", 0.3, "h", "1"), GradedText("g2", 1.5, "h", "2"), GradedText("g3", 2.4, "h", "3")]
    m = ranking_metrics(score, pairs, grades, train_mean_grade=1.0, rating=True)
    assert m["pairwise_accuracy"] == pytest.approx(0.5) and m["spearman"] == pytest.approx(1.0)
    # rating: predicted grade = 3 * score: 0.3, 1.5, 2.7 -> errors 0, 0, 0.3; mean baseline 1.0 -> 0.7, 0.5, 1.4
    assert m["rmse"] == pytest.approx(math.sqrt(0.09 / 3))
    assert m["mean_baseline_rmse"] == pytest.approx(math.sqrt((0.49 + 0.25 + 1.96) / 3))


@pytest.mark.parametrize("objective", ["pairwise", "rating"])
def test_ranking_objectives_train_on_the_tiny_model_and_score_through_rank_reward(objective, tmp_path):
    from reward.model import RankingRewardModel
    from reward.score import main as score_main
    from reward.train_rm import main as train_rm

    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r"]
    s = train_rm(common + ["--rm_objective", objective, "--max_steps", "4"])
    assert s["stage"] == f"rm_{objective}" and s["update_check"]["weights_moved"] and s["update_check"]["output_change_max"] > 0
    assert {"pairwise_accuracy", "spearman", "mean_baseline_rmse"} <= set(s["held_out"])
    assert ("rmse" in s["held_out"]) == (objective == "rating")
    model_dir = tmp_path / "r" / f"rm_{objective}" / "final"
    meta = json.loads((model_dir / "humor_rm.json").read_text())
    rm = RankingRewardModel(model_dir)
    texts = ["Local goat wins national award", "Local shop wins national award"]
    with torch.no_grad():
        raw = rm.model(**rm.tokenizer(texts, padding=True, return_tensors="pt")).logits[:, 0]
    expected = torch.sigmoid((raw - meta["center"]) / meta["scale"]).tolist()
    assert rm.score(texts) == pytest.approx(expected, abs=1e-5)          # the centred sigmoid, in (0, 1)
    rows = score_main(common + ["--ranking_model", str(model_dir), "--prompt_type", "headline", "--lang", "en",
                                "--reward_weights", "{headline: {rank_reward: 1.0}}", "--text", texts[0]])
    assert rows[0]["total"] == pytest.approx(expected[0], abs=1e-5)
    with pytest.raises(ValueError, match="not a humor classifier"):
        from reward.model import HumorRewardModel
        HumorRewardModel(model_dir)


def test_the_report_shows_each_reward_models_spread_over_policies():
    from eval.evaluate import reward_model_spread

    outputs = {"base": [{"rm_reward": 0.95, "rank_reward": 0.2}, {"rm_reward": 0.93, "rank_reward": 0.4}],
               "grpo": [{"rm_reward": 0.97, "rank_reward": 0.7}, {"rm_reward": 0.99, "rank_reward": 0.9}]}
    lines = reward_model_spread(outputs)
    rm_row = next(l for l in lines if l.startswith("| rm_reward"))
    rank_row = next(l for l in lines if l.startswith("| rank_reward"))
    assert "| 0.940 | 0.980 | 0.040 | 1.00 |" in rm_row          # saturated: every output > 0.9, spread 0.04
    assert "| 0.300 | 0.800 | 0.500 | 0.00 |" in rank_row


def test_ensemble_reward_is_mean_minus_k_std_and_logs_the_disagreement(tmp_path):
    """Two classifiers (two seeds) behind ensemble_reward and ensemble_std, by hand against their P(humor)."""
    from common.stage_configs import RewardArgs
    from reward.composite import build_components, score
    from reward.model import HumorRewardModel
    from reward.train_rm import main as train_rm

    dirs = []
    for seed in (1, 2):
        train_rm(["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", f"s{seed}", "--seed", str(seed),
                  "--max_steps", "3"])
        dirs.append(str(tmp_path / f"s{seed}" / "rm" / "final"))
    cfg = RewardArgs(rm_ensemble=dirs, ensemble_k=2.0,
                     reward_weights={"headline": {"ensemble_reward": 1.0, "ensemble_std": 0.0}})
    texts = ["I told my cactus a secret.", "The council approved the budget."]
    out = score(build_components(cfg), texts, ["headline"] * 2, cfg.reward_weights, lang=["en"] * 2)
    p = torch.tensor([HumorRewardModel(d).score(texts) for d in dirs], dtype=torch.float64)      # (2, 2)
    mean, std = p.mean(0), p.std(0, unbiased=False)
    assert out["ensemble_reward"] == pytest.approx((mean - 2.0 * std).tolist(), abs=1e-6)
    assert out["ensemble_std"] == pytest.approx(std.tolist(), abs=1e-6) and max(out["ensemble_std"]) > 0
    assert out["total"] == pytest.approx(out["ensemble_reward"], abs=1e-9)                  # std weighted 0: logged only
