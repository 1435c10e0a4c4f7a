"""The arena (eval/arena.py): Bradley-Terry ratings against numbers worked by hand, ties, judging in both orders,
bootstrap intervals, best-of-N rows, and the arena on a tiny run."""

import json
import math

import pytest

from eval.arena import (
    ELO_MEAN,
    ELO_PER_NAT,
    Battle,
    LLMJudge,
    ScoreJudge,
    arena,
    bootstrap_intervals,
    bradley_terry,
    judge_battles,
    pairings,
    win_matrix,
)
from eval.metrics import best_of_rows
from tests.conftest import TINY


def battles(a: str, b: str, wins: int, losses: int, ties: int = 0, prompt: str = "p") -> list[Battle]:
    return ([Battle(f"{prompt}{i}", a, b, 1.0) for i in range(wins)]
            + [Battle(f"{prompt}w{i}", a, b, 0.0) for i in range(losses)]
            + [Battle(f"{prompt}t{i}", a, b, 0.5) for i in range(ties)])


# ---------------------------------------------------------------- Bradley-Terry by hand


def test_two_players_rating_gap_is_the_log_odds_of_their_record():
    # x beat y 3 times, lost once: p_x / p_y = 3, a gap of 400 * log10(3) = 190.85 Elo, centred on 1000
    r = bradley_terry(["x", "y"], battles("x", "y", 3, 1), prior=0.0)
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(3))
    assert (r["x"] + r["y"]) / 2 == pytest.approx(ELO_MEAN)
    # one virtual tie (prior 1): 3.5 points against 1.5, odds 7 : 3
    r = bradley_terry(["x", "y"], battles("x", "y", 3, 1), prior=1.0)
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(7 / 3))


def test_a_tie_counts_half_a_win_for_each_side():
    # 2 wins, 1 loss, 2 ties = 3 points of 5: odds 3 : 2
    r = bradley_terry(["x", "y"], battles("x", "y", 2, 1, ties=2), prior=0.0)
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(3 / 2))
    even = bradley_terry(["x", "y"], battles("x", "y", 0, 0, ties=4), prior=0.0)
    assert even["x"] == pytest.approx(even["y"]) == pytest.approx(ELO_MEAN)


def test_three_players_fit_the_likelihoods_fixed_point():
    # at the maximum, each player's expected points under the fitted strengths equal the points it scored
    record = battles("a", "b", 6, 2, 1) + battles("b", "c", 5, 3) + battles("a", "c", 4, 1, 2)
    r = bradley_terry(["a", "b", "c"], record, prior=0.0)
    strength = {k: math.exp((v - ELO_MEAN) / ELO_PER_NAT) for k, v in r.items()}
    for player in "abc":
        scored = sum(b.score if b.a == player else 1 - b.score for b in record if player in (b.a, b.b))
        expected = sum(strength[player] / (strength[player] + strength[b.b if b.a == player else b.a])
                       for b in record if player in (b.a, b.b))
        assert expected == pytest.approx(scored, abs=1e-6), player
    assert r["a"] > r["b"] > r["c"]


def test_an_unbeaten_player_needs_the_prior():
    with pytest.raises(ValueError, match="won or lost every battle"):
        bradley_terry(["x", "y"], battles("x", "y", 4, 0), prior=0.0)
    r = bradley_terry(["x", "y"], battles("x", "y", 4, 0), prior=1.0)       # 4.5 : 0.5 -> odds 9
    assert r["x"] - r["y"] == pytest.approx(400 * math.log10(9))


def test_win_matrix_by_hand():
    m = win_matrix(["x", "y", "z"], battles("x", "y", 2, 1, ties=1) + battles("z", "x", 1, 0))
    assert m["x"]["y"] == pytest.approx(2.5 / 4) and m["y"]["x"] == pytest.approx(1.5 / 4)
    assert m["x"]["z"] == 0.0 and m["z"]["x"] == 1.0 and m["y"]["z"] is None


@pytest.mark.e2e
def test_bootstrap_intervals_hold_the_estimate_are_seeded_and_narrow_with_more_prompts():
    few = battles("x", "y", 6, 4)
    many = battles("x", "y", 70, 30)
    r = bradley_terry(["x", "y"], many)
    ci_many = bootstrap_intervals(["x", "y"], many, rounds=200, seed=1)
    ci_few = bootstrap_intervals(["x", "y"], few, rounds=200, seed=1)
    assert ci_many == bootstrap_intervals(["x", "y"], many, rounds=200, seed=1)
    assert ci_many["x"][0] <= r["x"] <= ci_many["x"][1]
    width = lambda ci: ci["x"][1] - ci["x"][0]
    assert width(ci_many) < width(ci_few)
    assert ci_many["x"][0] > ci_many["y"][1]          # 70 : 30 over 100 prompts separates them


# ---------------------------------------------------------------- judging in both orders


class FirstAlwaysWins:
    name = "first"

    def prepare(self, prompts, texts, themes):
        pass

    def prefer(self, prompts, first, second):
        return [0.9] * len(first)


def _rows(policy: str, scores: list[float], samples: int = 1) -> list[dict]:
    return [{"id": str(i), "prompt": f"prompt {i}", "text": f"{policy} joke {i}.{k}", "s": s + 0.01 * k}
            for i, s in enumerate(scores) for k in range(samples)]


def test_a_judge_that_always_picks_the_first_joke_calls_every_battle_a_tie():
    outputs = {"x": _rows("x", [0.9, 0.8]), "y": _rows("y", [0.1, 0.2])}
    result = judge_battles(FirstAlwaysWins(), pairings(outputs), tie_margin=0.05)
    assert [b.score for b in result] == [0.5, 0.5]
    assert not any(b.consistent for b in result)       # each order picked the joke shown first


def test_a_score_judge_is_order_blind_and_ties_within_its_margin():
    outputs = {"x": _rows("x", [0.9, 0.5]), "y": _rows("y", [0.1, 0.5])}
    precomputed = {(r["prompt"], r["text"]): r["s"] for rows in outputs.values() for r in rows}
    result = judge_battles(ScoreJudge("s", precomputed=precomputed, tie=0.001), pairings(outputs), tie_margin=0.05)
    assert [(b.prompt_id, b.a, b.b, b.score, b.consistent) for b in result] == [("0", "x", "y", 1.0, True),
                                                                                ("1", "x", "y", 0.5, True)]


def test_pairings_match_samples_by_index_and_reuse_a_best_of_row():
    outputs = {"x": _rows("x", [0.3, 0.4], samples=3), "best": best_of_rows(_rows("x", [0.3, 0.4], samples=3), "s")}
    pairs = pairings(outputs)
    assert len(pairs) == 6                              # 2 prompts x max(3, 1) samples
    assert {p[4]["text"] for p in pairs} == {"x joke 0.2", "x joke 1.2"}       # the highest-scored sample per prompt
    assert [p[3]["text"] for p in pairs if p[0] == "0"] == ["x joke 0.0", "x joke 0.1", "x joke 0.2"]


def test_best_of_n_picks_the_top_scored_sample_per_prompt():
    rows = [{"id": "1", "text": "a", "total": 0.2}, {"id": "1", "text": "b", "total": 0.9},
            {"id": "2", "text": "c", "total": 0.5}, {"id": "2", "text": "d", "total": 0.5}]
    assert [r["text"] for r in best_of_rows(rows, "total")] == ["b", "c"]
    with pytest.raises(ValueError, match="no 'rank' score"):
        best_of_rows(rows, "rank")


@pytest.mark.e2e
def test_the_arena_ranks_a_policy_the_judge_prefers_first_with_intervals():
    scores = [0.1 * (i % 10) for i in range(40)]
    outputs = {"weak": _rows("weak", scores), "strong": _rows("strong", [s + 0.05 for s in scores]),
               "mid": _rows("mid", [s + 0.02 if i % 2 else s - 0.02 for i, s in enumerate(scores)])}
    precomputed = {(r["prompt"], r["text"]): r["s"] for rows in outputs.values() for r in rows}
    result = arena(outputs, ScoreJudge("s", precomputed=precomputed), tie_margin=0.05, rounds=100, seed=0)
    board = {row["policy"]: row for row in result["leaderboard"]}
    assert [row["policy"] for row in result["leaderboard"]][0] == "strong"
    assert board["strong"]["ci95"][0] > board["weak"]["ci95"][1]
    assert result["battles"] == 120 and result["prompts"] == 40 and result["position_consistency"] == 1.0
    assert result["win_matrix"]["strong"]["weak"] > 0.9
    assert sum(row["elo"] for row in result["leaderboard"]) / 3 == pytest.approx(ELO_MEAN)


def test_an_llm_judge_on_a_tiny_model_gives_probabilities_that_depend_on_the_order():
    from common.models import load_base_policy

    model, tok = load_base_policy("tiny:llama")
    judge = LLMJudge("llm:tiny", model, tok, batch_size=2)
    a, b = ["A cactus sued the desert.", "Why did the chicken cross?"], ["Tax forms.", "Bread is bread."]
    forward, backward = judge.prefer(["p1", "p2"], a, b), judge.prefer(["p1", "p2"], b, a)
    assert all(0.0 < p < 1.0 for p in forward + backward)
    assert forward == pytest.approx(judge.prefer(["p1", "p2"], a, b))      # deterministic
    assert forward != pytest.approx([1 - p for p in backward], abs=1e-6)   # a random LM has a position bias
    a_ids, b_ids = judge.answer_ids
    assert a_ids and b_ids and not set(a_ids) & set(b_ids)
    assert all(len(tok.decode([i]).strip()) == 1 for i in a_ids + b_ids)     # 'A' / ' A', never a bare space


@pytest.mark.e2e
def test_the_arena_on_a_tiny_run_writes_its_leaderboard_plot_and_flags_a_training_reward_judge(run):
    from eval.arena import main as arena_main

    run_dir, _ = run
    common = ["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name,
              "--samples_per_prompt", "2", "--arena_bootstrap", "20"]
    result = arena_main(common + ["--arena_judge", "component:rm_reward", "--arena_best_of", "[sft]", "--rank_by", "total"])
    names = {row["policy"] for row in result["leaderboard"]}
    assert {"base", "sft", "grpo", "sft_best_of_2"} <= names
    assert result["judge_independent"] is False                    # GRPO trained on rm_reward
    assert (run_dir / "arena" / "arena.json").is_file() and (run_dir / "arena" / "plots" / "arena.png").is_file()
    report = (run_dir / "arena" / "report.md").read_text()
    assert "not an independent judge" in report and "| rank | policy | Elo | 95 % CI | battles |" in report
    assert json.loads((run_dir / "arena" / "arena.json").read_text())["leaderboard"][0]["policy"] in names
    for row in result["leaderboard"]:
        assert row["ci95"][0] <= row["ci95"][1]


# ---------------------------------------------------------------- people's votes


def test_votes_in_the_shapes_people_publish_are_read_with_ties_kept(tmp_path):
    from data.preferences import read_preferences, read_votes, vote_counts

    jsonl = tmp_path / "votes.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in [
        {"theme": "cactus", "joke_a": "A cactus sued.", "joke_b": "Cacti are plants.", "winner": "a"},
        {"theme": "tax", "joke_a": "Taxes.", "joke_b": "My taxes filed for divorce.", "winner": "model_b"},
        {"theme": "tax", "joke_a": "x", "joke_b": "y", "winner": "tie"},
        {"theme": "bread", "joke_a": "p", "joke_b": "q", "winner": "tie (bothbad)"}]) + "\n")
    votes = read_votes(str(jsonl))
    assert [v.winner for v in votes] == ["a", "b", "tie", "none"] and votes[0].prompt == "cactus"
    assert vote_counts(votes) == {"a": 1, "b": 1, "tie": 1, "none": 1}
    array = tmp_path / "votes.json"                          # a JSON array with the file's own column names
    array.write_text(json.dumps([{"topic_words": "cactus, lawsuit", "left": "L", "right": "R", "pick": "second"}]))
    (v,) = read_votes({"path": str(array), "columns": {"prompt": "topic_words", "a": "left", "b": "right",
                                                      "winner": "pick"}})
    assert (v.prompt, v.a, v.b, v.winner) == ("cactus, lawsuit", "L", "R", "b")
    pairs = read_preferences(str(jsonl))                     # training: the two decisive votes, winner first
    assert [p.completions for p in pairs] == [("A cactus sued.", "Cacti are plants."),
                                              ("My taxes filed for divorce.", "Taxes.")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"theme": "t", "a": "x", "b": "y", "winner": "c"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: winner 'c' is not one of"):
        read_votes(str(bad))
    bad.write_text(json.dumps({"theme": "t", "a": "x", "b": "y", "winner": "1"}) + "\n")
    with pytest.raises(ValueError, match=r"numbers are ambiguous"):
        read_votes(str(bad))


def test_the_judge_is_checked_against_people_beside_the_length_baseline():
    from data.preferences import Vote
    from eval.arena import judge_against_people

    # people prefer the longer joke 3 times of 4 decisive votes; the judge scores by a hidden funniness that sides
    # with people on all 4 and calls one of the 2 human ties a tie
    votes = [Vote("p1", "long funny joke", "short", "a", "en", "f:1"), Vote("p2", "tiny", "longer funny", "b", "en", "f:2"),
             Vote("p3", "long funny two", "meh", "a", "en", "f:3"), Vote("p4", "zap!", "long but flat", "a", "en", "f:4"),
             Vote("p5", "same", "same", "tie", "en", "f:5"), Vote("p6", "funny x", "flat", "none", "en", "f:6")]
    funny = {"long funny joke": 1, "short": 0, "tiny": 0, "longer funny": 1, "long funny two": 1, "meh": 0,
             "zap!": 1, "long but flat": 0, "same": 0, "funny x": 1, "flat": 0}
    judge = ScoreJudge("hidden", precomputed={(v.prompt, t): funny[t] for v in votes for t in (v.a, v.b)})
    check = judge_against_people(judge, votes, tie_margin=0.05, rounds=200, seed=0)
    assert check["decisive"] == 4 and check["agreement"] == 1.0 and check["agreement_ci95"] == [1.0, 1.0]
    assert check["longer_wins"] == 0.75
    assert check["judge_tie_rate_on_people_ties"] == 0.5 and check["judge_tie_rate_on_decisive"] == 0.0


@pytest.mark.parametrize("settings, message", [
    ({"arena_judge": "judge-me"}, "expected component:<name>, rm:<dir> or llm:<model>"),
    ({"arena_judge": "component:"}, "expected component:<name>"),
    ({"arena_judge": "component:rank_reward", "arena_best_of": ["sft"], "samples_per_prompt": 1},
     "needs samples_per_prompt >= 2"),
    ({"arena_judge": "component:rank_reward", "arena_best_of": ["sft"], "samples_per_prompt": 4,
      "rank_by": "rank_reward"}, "would win the arena by construction"),
])
def test_arena_settings_are_checked_before_anything_loads(settings, message):
    from common.stage_configs import EvalArgs

    with pytest.raises(ValueError, match=message):
        EvalArgs(**settings)


def test_chosen_rejected_files_read_as_decisive_votes(tmp_path):
    from data.preferences import read_votes

    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": "cactus, lawsuit", "chosen": "The cactus sued.", "rejected": "Cactus."},
                                {"conversations": [{"from": "human", "value": "tax"}], "chosen": {"from": "gpt", "value": "My taxes left me."},
                                 "rejected": {"from": "gpt", "value": "Tax."}}]))
    votes = read_votes(str(path))
    assert [(v.prompt, v.a, v.b, v.winner) for v in votes] == [("cactus, lawsuit", "The cactus sued.", "Cactus.", "a"),
                                                               ("tax", "My taxes left me.", "Tax.", "a")]


@pytest.mark.e2e
def test_an_rm_judge_of_several_directories_is_their_mean_and_names_a_trained_on_member(tmp_path):
    """rm:<dir>,<dir>: the judge scores each joke by the mean of the members' centred scores (worked from each member
    alone), and an ensemble holding the reward an RL stage trained on is flagged as not independent."""
    import yaml

    from common.stage_configs import EvalArgs
    from eval.arena import independence_note, load_judge
    from reward.model import RankingRewardModel
    from reward.train_rm import main as train_rm

    dirs = []
    for seed in (1, 2):
        train_rm(["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", f"s{seed}", "--seed", str(seed),
                  "--rm_objective", "pairwise", "--max_steps", "3"])
        dirs.append(str(tmp_path / f"s{seed}" / "rm_pairwise" / "final"))
    judge = load_judge("rm:" + ",".join(dirs), EvalArgs(), {})
    texts = ["Local goat wins national award", "Local shop wins national award", "Cactus sues the desert"]
    judge.prepare(["p"] * 3, texts, [""] * 3)
    members = [RankingRewardModel(d).score(texts) for d in dirs]
    assert members[0] != pytest.approx(members[1])                       # two seeds: two different scorers
    assert [judge.scores[("p", t)] for t in texts] == pytest.approx(
        [(a + b) / 2 for a, b in zip(*members)], abs=1e-6)
    run_dir = tmp_path / "run"
    (run_dir / "grpo").mkdir(parents=True)
    (run_dir / "grpo" / "config.yaml").write_text(yaml.safe_dump(
        {"reward_weights": {"words": {"rank_reward": 1.0}}, "ranking_model": dirs[1]}))
    assert not independence_note("rm:" + ",".join(dirs), run_dir)[0]
    assert independence_note(f"rm:{dirs[0]}", run_dir)[0]
    # the same mean as GRPO's humor term: rank_reward behind --ranking_model <dir>,<dir>
    from common.stage_configs import RewardArgs
    from reward.composite import build_components, score
    cfg = RewardArgs(ranking_model=",".join(dirs), reward_weights={"headline": {"rank_reward": 1.0}})
    out = score(build_components(cfg), texts, ["headline"] * 3, cfg.reward_weights, lang=["en"] * 3)
    assert out["rank_reward"] == pytest.approx([(a + b) / 2 for a, b in zip(*members)], abs=1e-6)
    (run_dir / "grpo" / "config.yaml").write_text(yaml.safe_dump(
        {"reward_weights": {"words": {"rank_reward": 1.0}}, "ranking_model": ",".join(dirs)}))
    assert not independence_note(f"rm:{dirs[0]}", run_dir)[0]            # a member of GRPO's ensemble reward


def test_a_judge_that_learnt_from_the_shipped_sample_is_flagged_and_one_from_people_is_not(tmp_path):
    from common.stage_configs import EvalArgs
    from eval.arena import sample_note

    cfg = EvalArgs(run_name="r", runs_dir=str(tmp_path))
    for name, sample in (("sample_rm", True), ("people_rm", False)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "humor_rm.json").write_text(json.dumps({"objective": "pairwise", "trained_on_sample": sample}))
    assert "not from people's choices" in sample_note(f"rm:{tmp_path / 'sample_rm'}", cfg)
    assert sample_note(f"rm:{tmp_path / 'people_rm'}", cfg) == ""
    assert "not from people's choices" in sample_note(f"rm:{tmp_path / 'people_rm'},{tmp_path / 'sample_rm'}", cfg)
    run_rm = tmp_path / "r" / "rm_pairwise" / "final"             # component:rank_reward is the run's preference RM
    run_rm.mkdir(parents=True)
    (run_rm / "humor_rm.json").write_text(json.dumps({"objective": "pairwise", "trained_on_sample": True}))
    assert "not from people's choices" in sample_note("component:rank_reward", cfg)
    assert sample_note("component:length_reward", cfg) == "" and sample_note("llm:pkg:gemma-3-270m", cfg) == ""
