"""Ranking reward models (issue 17, first part): pairwise (Bradley-Terry, TRL RewardTrainer) and rating
(regression on grades) objectives, their held-out figures, the rank_reward component and the spread report."""

import json
import math

import pytest
import torch

from tests.conftest import TINY


def test_ranking_metrics_by_hand():
    from data.grades import GradedText
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
    assert {"pairwise_accuracy", "spearman", "mean_baseline_rmse"} <= set(s["held_out"]["humicroedit"])
    assert ("rmse" in s["held_out"]["humicroedit"]) == (objective == "rating")
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
    # the run's report shows its held-out figures per source
    from common.stage_configs import EvalArgs
    from eval.evaluate import run_report
    lines = run_report(EvalArgs(run_name="r", runs_dir=str(tmp_path)), tmp_path / "r", {}, {"sft": []}, tmp_path)
    row = next(l for l in lines if l.startswith("| humicroedit |"))
    assert f"{s['held_out']['humicroedit']['pairwise_accuracy']:.4f}" in row


def test_rating_rmse_maps_the_score_back_onto_the_sources_scale():
    from data.grades import GradedText
    from reward.train_rm import ranking_metrics

    score = lambda texts: [{"x": 0.25, "y": 1.0}[t] for t in texts]
    rows = [GradedText("x", 2.0, "", "1"), GradedText("y", 5.0, "", "2")]           # 1-5 scale: 0.25 -> 2, 1.0 -> 5
    m = ranking_metrics(score, [("y", "x")], rows, train_mean_grade=3.0, rating=True, scale=(1.0, 5.0))
    assert m["rmse"] == pytest.approx(0.0) and m["pairwise_accuracy"] == 1.0
    assert m["mean_baseline_rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))


def test_pairs_from_ungrouped_grades_keep_the_order_and_the_margin():
    from data.grades import GradedText, pairs_from_grades

    rows = [GradedText(t, g, "", t) for t, g in [("a", 0.0), ("b", 1.0), ("c", 5.0), ("d", 11.0)]]
    pairs = pairs_from_grades(rows, 0.15, (0.0, 11.0), seed=3, partners=4)      # margin 1.65 points of 0-11
    grade = {r.text: r.grade for r in rows}
    assert pairs and all(grade[a] - grade[b] >= 1.65 for a, b in pairs)
    assert ("b", "a") not in pairs and ("a", "b") not in pairs                   # 1 point apart: too close
    assert pairs == pairs_from_grades(rows, 0.15, (0.0, 11.0), seed=3, partners=4)   # seeded


def test_graded_sources_read_the_real_layouts(tmp_path):
    """Each graded reader on a file shaped like the real one: HaHackathon / HAHA 2021 ratings of humorous rows only,
    CCL2019 task-2 levels, r/Jokes gzipped '<score>\t<joke>' with a tab inside the joke; bad grades name the line."""
    import gzip

    from data.grades import load_graded, read_ccl2019_levels, read_rated_csv, read_rjokes

    hack = tmp_path / "hahackathon" / "hahackathon_train.csv"
    hack.parent.mkdir()
    hack.write_text("id,text,is_humor,humor_rating,humor_controversy,offense_rating\n"
                    "1,A funny one,1,2.42,1,0.2\n2,Not funny,0,,,0\n" +
                    "".join(f"{i},joke {i},1,{i % 5}.5,0,0\n" for i in range(3, 23)))
    rows = read_rated_csv(hack, "text", "humor_rating", "is_humor", (0.0, 5.0), "en", "hahackathon")
    assert [r.text for r in rows[:1]] == ["A funny one"] and rows[0].grade == 2.42 and len(rows) == 21
    ccl = tmp_path / "t2.csv"
    ccl.write_text(",joke,label\r\n0,笑话一,3\r\n1,笑话二,5\r\n", encoding="utf-8")
    assert [(r.text, r.grade, r.lang) for r in read_ccl2019_levels(ccl)] == [("笑话一", 3.0, "zh"), ("笑话二", 5.0, "zh")]
    jokes = tmp_path / "rjokes" / "dev.tsv.gz"
    jokes.parent.mkdir()
    with gzip.open(jokes, "wt", encoding="utf-8") as f:
        f.write("3\tWhy did the chicken\tcross? To get away.\n0\tA bad one\n")
    assert [(r.grade, r.text) for r in read_rjokes(jokes)] == [(3.0, "Why did the chicken\tcross? To get away."),
                                                             (0.0, "A bad one")]
    with gzip.open(jokes, "wt", encoding="utf-8") as f:
        f.write("3\tfine\n12\ttoo high\n")
    with pytest.raises(ValueError, match=r"dev.tsv.gz:2: score must be in \[0, 11\]"):
        read_rjokes(jokes)
    (src,) = load_graded(["hahackathon", "haha2021"], tmp_path, ["en"], None, seed=0)    # es filtered out by langs
    assert src.name == "hahackathon" and len(src.held_out) == 2 and len(src.train) == 19
    assert not {r.text for r in src.held_out} & {r.text for r in src.train}
    with pytest.raises(ValueError, match="need --data_dir"):
        load_graded(["hahackathon"], None, ["en"], None, seed=0)
    with pytest.raises(ValueError, match="hold no language"):
        load_graded(["haha2021"], tmp_path, ["en"], None, seed=0)


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
