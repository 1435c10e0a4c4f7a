"""Ranking reward models: pairwise (Bradley-Terry, TRL RewardTrainer) and rating
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


@pytest.mark.e2e
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
    row = next(line for line in lines if line.startswith("| humicroedit |"))
    figures = s["held_out"]["humicroedit"]
    assert (f"{figures['pairwise_accuracy']:.3f} ({figures['pairwise_accuracy_lo']:.3f} to "
            f"{figures['pairwise_accuracy_hi']:.3f})") in row and f"{figures['longer_wins']:.3f}" in row


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
    rm_row = next(line for line in lines if line.startswith("| rm_reward"))
    rank_row = next(line for line in lines if line.startswith("| rank_reward"))
    assert "| 0.940 | 0.980 | 0.040 | 1.00 |" in rm_row          # saturated: every output > 0.9, spread 0.04
    assert "| 0.300 | 0.800 | 0.500 | 0.00 |" in rank_row


@pytest.mark.e2e
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


# each graded source's documented scale: the bottom of the scale normalises to 0, the top to 1
DOCUMENTED_SCALES = {"humicroedit": (0.0, 3.0), "hahackathon": (0.0, 5.0), "rjokes": (0.0, 11.0),
                     "haha2021": (1.0, 5.0), "ccl2019": (1.0, 5.0)}


def _graded_files(root):
    """Files in each graded source's real layout whose grades reach both ends of its scale and points between."""
    import gzip

    (root / "hahackathon").mkdir()
    (root / "hahackathon" / "hahackathon_train.csv").write_text(
        "id,text,is_humor,humor_rating,humor_controversy,offense_rating\n"
        + "".join(f"{i},hahackathon joke {i},1,{g},0,0\n" for i, g in enumerate([0, 0, 0, 0.4, 1, 2.5, 2.6, 4, 5, 5, 5])),
        encoding="utf-8")
    (root / "haha2021").mkdir()
    header = "id,text,is_humor,votes_no,votes_1,votes_2,votes_3,votes_4,votes_5,humor_rating,humor_mechanism,humor_target\n"
    for name, grades in (("haha_2021_train.csv", [1, 1, 1.5, 3, 3.2, 5, 5]), ("haha_2021_dev_gold.csv", [1, 5])):
        (root / "haha2021" / name).write_text(header + "".join(
            f"{name[:9]}{i},chiste {name} {i},1,0,1,0,0,0,0,{g},,\n" for i, g in enumerate(grades))
            + "x,no es un chiste,0,3,0,0,0,0,0,NULL,,\n", encoding="utf-8")
    (root / "ccl2019_chinese_humor" / "task2").mkdir(parents=True)
    (root / "ccl2019_chinese_humor" / "task2" / "task2_test_with_label.csv").write_text(
        ",joke,label\r\n" + "".join(f"{i},笑话{i},{g}\r\n" for i, g in enumerate([1, 1, 1, 3, 3, 5, 5, 5, 1, 5, 3])),
        encoding="utf-8")
    (root / "rjokes").mkdir()
    for name, grades in (("dev.tsv.gz", [0, 0, 1, 3, 7, 11, 11]), ("test.tsv.gz", [0, 11])):
        with gzip.open(root / "rjokes" / name, "wt", encoding="utf-8") as f:
            f.write("".join(f"{g}\trjokes {name} joke {i}\n" for i, g in enumerate(grades)))


def test_normalised_grades_span_exactly_0_to_1_over_each_sources_documented_scale(tmp_path):
    from common.stage_configs import RMArgs
    from data.grades import load_graded
    from reward.train_rm import ranking_data

    _graded_files(tmp_path)
    names = ["hahackathon", "rjokes", "haha2021", "ccl2019"]
    cfg = RMArgs(rm_objective="rating", graded_sources=names, data_dir=str(tmp_path), langs=["en", "es", "zh"])
    sources = {s.name: s for s in load_graded(names, tmp_path, ["en", "es", "zh"], None, seed=cfg.seed)}
    sources["humicroedit"] = load_graded(["humicroedit"], None, ["en"], None, seed=0)[0]     # the shipped sample
    assert sorted(sources) == sorted(DOCUMENTED_SCALES)
    for name, src in sources.items():
        lo, hi = DOCUMENTED_SCALES[name]
        assert src.scale == (lo, hi), name
        assert (src.normalised(lo), src.normalised(hi)) == (0.0, 1.0), name
        assert src.normalised((lo + hi) / 2) == pytest.approx(0.5), name
        assert all(0.0 <= src.normalised(g.grade) <= 1.0 for g in src.train + src.held_out), name

    # the rating objective's training targets, as train_rm builds them: every source reaches 0 and 1
    _, _, graded, _, _ = ranking_data(cfg)
    by_source = {}
    for text, target in graded:
        source = next(n for n, s in sources.items() if text in {g.text for g in s.train})
        by_source.setdefault(source, []).append(target)
    for name in names:
        assert min(by_source[name]) == 0.0 and max(by_source[name]) == 1.0, (name, by_source[name])
    # CCL2019's levels 1 / 3 / 5 are the bottom, the middle and the top of its scale
    levels = sorted({t for t in by_source["ccl2019"]})
    assert levels == [0.0, 0.5, 1.0]


def test_graded_pairs_respect_pair_min_grade_gap_and_their_count_follows_it(tmp_path):
    from common.stage_configs import RMArgs
    from data.grades import load_graded
    from reward.train_rm import ranking_data

    _graded_files(tmp_path)
    src = {s.name: s for s in load_graded(["hahackathon", "rjokes"], tmp_path, ["en"], None, seed=RMArgs().seed)}
    norm = {g.text: s.normalised(g.grade) for s in src.values() for g in s.train}
    counts = {}
    for gap in (0.0, 0.1, 0.3, 0.6):
        cfg = RMArgs(rm_objective="pairwise", graded_sources=["hahackathon", "rjokes"], data_dir=str(tmp_path),
                     langs=["en"], pair_min_grade_gap=gap)
        _, pairs, _, held_out, _ = ranking_data(cfg)
        assert pairs, gap
        for funnier, other in pairs:
            assert norm[funnier] - norm[other] >= gap - 1e-9, (gap, funnier, other)
            assert norm[funnier] > norm[other], (gap, funnier, other)      # never a pair of equal grades, even at 0
        for name, plan in held_out.items():
            grade = {g.text: src[name].normalised(g.grade) for g in plan["grades"]}
            assert all(grade[a] - grade[b] >= gap - 1e-9 and grade[a] > grade[b] for a, b in plan["pairs"])
        counts[gap] = len(pairs)
    assert counts[0.0] >= counts[0.1] > counts[0.3] > counts[0.6], counts

    # grouped rows (Humicroedit: edits of one headline) follow the same rule
    from data.grades import GradedText, pairs_from_grades

    rows = [GradedText(t, g, "h", t) for t, g in [("a", 1.0), ("b", 1.0), ("c", 1.2), ("d", 2.5)]]
    assert sorted(pairs_from_grades(rows, 0.0, (0.0, 3.0))) == [("c", "a"), ("c", "b"), ("d", "a"), ("d", "b"),
                                                                 ("d", "c")]
    assert sorted(pairs_from_grades(rows, 0.4, (0.0, 3.0))) == [("d", "a"), ("d", "b"), ("d", "c")]   # 1.2 points


def _votes_file(path):
    """Side-by-side votes on 12 themes: the joke that names its theme's word wins; one tie per theme."""
    rows = []
    for i in range(12):
        theme = f"word{i}, thing{i}"
        rows += [{"theme": theme, "a": f"My word{i} ate the thing{i}.", "b": f"Nothing happened {i}.", "winner": "a"},
                 {"theme": theme, "a": f"Plain text {i}.", "b": f"The word{i} sued the thing{i}.", "winner": "b"},
                 {"theme": theme, "a": f"Tie {i} one.", "b": f"Tie {i} two.", "winner": "tie"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_people_votes_are_a_ranking_source_held_out_by_theme_with_ties_counted(tmp_path):
    from data.grades import votes_source

    src = votes_source(str(_votes_file(tmp_path / "votes.jsonl")), seed=0)
    held_themes = {src.themes[a] for a, _ in src.held_out_pairs}
    assert len(held_themes) == 1 and src.ties == 1                       # 10 % of 12 themes, rounded: 1
    assert len(src.human_pairs) == 22 and len(src.held_out_pairs) == 2
    assert not held_themes & {src.themes[a] for a, _ in src.human_pairs}
    assert all(a.startswith(("My word", "The word")) for a, _ in src.human_pairs + src.held_out_pairs)   # winner first


def test_humicroedit_task2_reads_as_votes_with_its_ties():
    from data.preferences import humicroedit_votes, vote_counts

    votes = humicroedit_votes(None)
    counts = vote_counts(votes)
    assert counts["a"] + counts["b"] + counts["tie"] == len(votes) == 10 and counts["none"] == 0
    v = votes[0]
    assert (v.prompt, v.a, v.b, v.winner) == ("City council approves new budget for road repairs",
                                              "City council approves new trampoline for road repairs",
                                              "City toddlers approves new budget for road repairs", "a")


@pytest.mark.e2e
def test_a_prompt_aware_ranking_rm_reads_each_joke_beside_its_theme(tmp_path):
    from reward.model import RankingRewardModel, encode_texts
    from reward.train_rm import main as train_rm

    votes = _votes_file(tmp_path / "votes.jsonl")
    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "r"]
    s = train_rm(common + ["--rm_objective", "pairwise", "--max_steps", "4", "--with_prompt", "true",
                           "--graded_sources", "[]", "--vote_sources", f"[{votes}]"])
    figures = s["held_out"]["votes.jsonl"]
    assert figures["pairwise_accuracy_lo"] <= figures["pairwise_accuracy"] <= figures["pairwise_accuracy_hi"]
    assert figures["longer_wins_lo"] <= figures["longer_wins"] <= figures["longer_wins_hi"]
    report = (tmp_path / "r" / "rm_pairwise" / "report.md").read_text()
    assert "longer joke wins (95 % CI)" in report and "1 ties / neither not scored" in report
    rm = RankingRewardModel(tmp_path / "r" / "rm_pairwise" / "final")
    assert rm.meta["with_prompt"] is True
    text = "My cactus filed a lawsuit."
    enc = encode_texts(rm.tokenizer, [text], ["cactus, lawsuit"], 128, return_tensors="pt")
    assert "token_type_ids" not in enc          # TRL's reward collator trains without them: scoring must match
    assert rm.tokenizer.decode(enc["input_ids"][0], skip_special_tokens=True).startswith("cactus, lawsuit")
    with torch.no_grad():
        raw = rm.model(**enc).logits[0, 0].item()
    assert rm.score([text], themes=["cactus, lawsuit"])[0] == pytest.approx(
        torch.sigmoid(torch.tensor((raw - rm.meta["center"]) / rm.meta["scale"])).item(), abs=1e-5)
    assert rm.score([text], themes=["cactus, lawsuit"]) != pytest.approx(rm.score([text], themes=["tax, bread"]))
    with pytest.raises(ValueError, match="pass the themes too"):
        rm.score([text])


def test_ranking_figures_carry_an_interval_and_the_length_baseline_by_hand():
    from reward.train_rm import ranking_metrics

    # 4 pairs: the RM is right on 3 (scores by a lookup); the longer joke is the funnier one in 2 of 4
    scores = {"long funny": 3, "s": 1, "funny": 2, "a long flat one": 1, "yes!": 5, "no": 0, "ok": 1, "longer okay": 2}
    pairs = [("long funny", "s"), ("funny", "a long flat one"), ("yes!", "no"), ("ok", "longer okay")]
    m = ranking_metrics(lambda texts: [scores[t] for t in texts], pairs, [], train_mean_grade=0.0, rating=False)
    assert m["pairwise_accuracy"] == 0.75 and m["longer_wins"] == 0.5
    assert m["pairwise_accuracy_lo"] < 0.75 < m["pairwise_accuracy_hi"] <= 1.0
