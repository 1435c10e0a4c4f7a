"""The arena: rank policies the way people judge humor, side by side.

    python eval/arena.py --config configs/cpu_default.yaml                    # the run's evaluation outputs
    python eval/arena.py --config configs/cpu_default.yaml --arena_judge llm:pkg:gemma-3-270m
    python eval/arena.py --config configs/cpu_default.yaml --outputs sft=a.jsonl --outputs grpo=b.jsonl
    python eval/arena.py --config configs/cpu_default.yaml --arena_votes '[people.jsonl]'   # the judge vs people

Battles: two policies' outputs for the same prompt id (sample k against sample k) go to a judge that should not
be the reward the policies trained on: a trained reward model of another data set, seed or backbone
(`rm:<dir>`, or `rm:<dir>,<dir>,...` for the mean of an ensemble), a score column the outputs already carry
(`component:<name>`), or an instruct LM asked which of two jokes is funnier (`llm:<model>`). Every battle is
judged in both orders; the two verdicts are averaged, so a judge that always picks the first joke gives ties, and
the share of battles whose two orders agree is reported as the judge's position consistency. A verdict within
`arena_tie_margin` of 0.5 is a tie.

Ratings: Bradley-Terry by maximum likelihood (ties count half a win for each side), on the Elo scale
(400 / ln 10 per unit of log-strength, mean 1000), with 95 % intervals from a bootstrap over prompts; plus the
win-rate matrix and a plot. `arena_best_of` policies enter as best-of-N rows: per prompt, the one of their
samples_per_prompt samples that `rank_by` scores highest among those with both required words (the select-best
recipe, eval/metrics.py best_of_rows), beside the policy itself.
With `arena_votes`, the judge is first checked against people's own side-by-side votes (data/preferences.py
read_votes): how often it sides with them, with an interval, beside the 'longer joke wins' baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from common.cli import cli
from common.config import parse_config
from common.generation import adds_special_tokens, fit_prompt
from common.io import atomic_write_text, read_jsonl
from common.models import load_base_policy
from common.stage_configs import EvalArgs, model_dirs
from common.stages import RL_STAGES
from common.stats import bootstrap_mean_ci, longer_first
from data.preferences import load_votes, vote_counts
from data.prompts import format_for_model
from eval.metrics import best_of_rows, read_named_outputs
from reward.model import RM_META, HumorRewardModel, RankingRewardModel, mean_scorer, read_meta

ELO_PER_NAT = 400 / math.log(10)      # Elo points per unit of log-strength (a 10x odds ratio is 400 points)
ELO_MEAN = 1000.0


@dataclass(frozen=True)
class Battle:
    """One judged comparison of policy `a`'s output with policy `b`'s on the same prompt; `score` is a's points
    (1 win, 0.5 tie, 0 loss); `consistent` is whether the judge's two orders agreed."""
    prompt_id: str
    a: str
    b: str
    score: float
    consistent: bool = True


# ---------------------------------------------------------------- Bradley-Terry (pure functions, hand-tested)


def bradley_terry(players: list[str], battles: list[Battle], prior: float = 1.0, tol: float = 1e-10,
                  max_iter: int = 10000) -> dict[str, float]:
    """Elo-scale ratings (mean ELO_MEAN) maximising the Bradley-Terry likelihood P(i beats j) = p_i / (p_i + p_j),
    a tie counting half a win for each side. `prior` adds that many virtual ties between every pair of players, so
    a player who won (or lost) every battle still gets a finite rating. Fitted by Hunter's (2004) MM iteration:
    p_i <- W_i / sum_j n_ij / (p_i + p_j), W_i the points of i and n_ij the battles of i against j.

    >>> r = bradley_terry(["x", "y"], [Battle("1", "x", "y", 1.0)] * 3 + [Battle("2", "x", "y", 0.0)], prior=0.0)
    >>> round(r["x"] - r["y"], 2)                      # odds 3 : 1 -> 400 * log10(3)
    190.85
    """
    index = {name: i for i, name in enumerate(players)}
    k = len(players)
    n = torch.zeros(k, k, dtype=torch.float64)          # (k, k) battles between i and j
    w = torch.zeros(k, k, dtype=torch.float64)          # (k, k) points of i against j
    for b in battles:
        i, j = index[b.a], index[b.b]
        n[i, j] += 1
        n[j, i] += 1
        w[i, j] += b.score
        w[j, i] += 1 - b.score
    off_diagonal = 1 - torch.eye(k, dtype=torch.float64)
    n += prior * off_diagonal                           # prior virtual ties: prior battles, prior / 2 points each
    w += prior / 2 * off_diagonal
    points = w.sum(dim=1)                               # (k,)
    if (points <= 0).any() or (points >= n.sum(dim=1)).any():
        raise ValueError("Bradley-Terry: a player won or lost every battle; use prior > 0 for finite ratings")
    p = torch.ones(k, dtype=torch.float64)
    for _ in range(max_iter):
        new = points / (n / (p[:, None] + p[None, :])).sum(dim=1)
        new = new / torch.exp(torch.log(new).mean())    # geometric mean 1: the scale is fixed only up to a factor
        done = (new - p).abs().max() < tol
        p = new
        if done:
            break
    return {name: ELO_MEAN + ELO_PER_NAT * math.log(p[index[name]].item()) for name in players}


def bootstrap_intervals(players: list[str], battles: list[Battle], rounds: int, seed: int, prior: float = 1.0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each rating over `rounds` refits on prompts drawn with replacement (all battles of a
    drawn prompt go together: outputs for one prompt are not independent)."""
    by_prompt: dict[str, list[Battle]] = {}
    for b in battles:
        by_prompt.setdefault(b.prompt_id, []).append(b)
    ids = sorted(by_prompt)
    rng = random.Random(seed)
    draws = {name: [] for name in players}
    for _ in range(rounds):
        sample = [b for pid in rng.choices(ids, k=len(ids)) for b in by_prompt[pid]]
        for name, rating in bradley_terry(players, sample, prior).items():
            draws[name].append(rating)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    out = {}
    for name, values in draws.items():
        values.sort()
        out[name] = (values[int(lo_q * (len(values) - 1))], values[math.ceil(hi_q * (len(values) - 1))])
    return out


def win_matrix(players: list[str], battles: list[Battle]) -> dict[str, dict[str, float | None]]:
    """matrix[a][b] = a's share of the points in its battles with b (ties half); None where they never met.

    >>> win_matrix(["x", "y"], [Battle("1", "x", "y", 1.0), Battle("2", "y", "x", 0.5)])
    {'x': {'x': None, 'y': 0.75}, 'y': {'x': 0.25, 'y': None}}
    """
    points = {a: {b: 0.0 for b in players} for a in players}
    count = {a: {b: 0 for b in players} for a in players}
    for b in battles:
        points[b.a][b.b] += b.score
        points[b.b][b.a] += 1 - b.score
        count[b.a][b.b] += 1
        count[b.b][b.a] += 1
    return {a: {b: points[a][b] / count[a][b] if count[a][b] else None for b in players} for a in players}


# ---------------------------------------------------------------- judges: P(the first joke is funnier)


def row_theme(row: dict) -> str:
    """An output row's theme (data/prompts.py task_theme): its own column, else its words or headline."""
    if row.get("theme") is not None:
        return row["theme"]
    return ", ".join(row["words"]) if row.get("words") else row.get("headline") or ""


class ScoreJudge:
    """Prefers the output a scorer rates higher: P(first funnier) = 1, 0.5 or 0 by the sign of the difference
    (ties within `tie` of each other). Order-blind by construction. `scores` maps (prompt, text) -> score; the
    scorer (text, its instruction and theme -> score) fills it in one batch through `prepare`."""

    def __init__(self, name: str, scorer=None, precomputed: dict | None = None, tie: float = 0.0):
        self.name, self.scorer, self.tie = name, scorer, tie
        self.scores: dict[tuple[str, str], float] = dict(precomputed or {})

    def prepare(self, prompts: list[str], texts: list[str], themes: list[str]) -> None:
        theme = dict(zip(zip(prompts, texts), themes))
        todo = sorted(set(theme) - set(self.scores))
        if todo and self.scorer is not None:
            values = self.scorer.score([t for _, t in todo], [p for p, _ in todo], [theme[k] for k in todo])
            self.scores.update(zip(todo, values))

    def prefer(self, prompts: list[str], first: list[str], second: list[str]) -> list[float]:
        out = []
        for p, x, y in zip(prompts, first, second):
            diff = self.scores[(p, x)] - self.scores[(p, y)]
            out.append(0.5 if abs(diff) <= self.tie else 1.0 if diff > 0 else 0.0)
        return out


JUDGE_JOKE_CHARS = 600      # a longer joke is cut to this before the judge's prompt is built (both orders alike)
JUDGE_PROMPT = ("Here are two jokes written for the same task.\n\nTask: {task}\n\nJoke A: {a}\n\nJoke B: {b}\n\n"
                "Which joke is funnier? Answer with one letter, A or B.")


class LLMJudge:
    """An instruct language model asked which of two jokes is funnier: P(A) = softmax over the next-token
    log-probs of the answers 'A' and 'B' (each the log-sum-exp over its spellings: 'A', ' A')."""

    def __init__(self, name: str, model, tokenizer, batch_size: int = 16, max_prompt_tokens: int = 512):
        self.name, self.model, self.tokenizer = name, model.eval(), tokenizer
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.answer_ids = [self._ids(letter) for letter in ("A", "B")]
        assert not set(self.answer_ids[0]) & set(self.answer_ids[1]), self.answer_ids

    def _ids(self, letter: str) -> list[int]:
        """The tokens that spell the answer on their own ('A', ' A'); a spelling that takes two tokens (a bare space,
        then the letter) is left out, or the space token would count for both answers."""
        ids = {tokens[0] for spelling in (letter, " " + letter)
               if len(tokens := self.tokenizer(spelling, add_special_tokens=False)["input_ids"]) == 1}
        if not ids:
            raise ValueError(f"llm judge {self.name}: the tokenizer has no single token for the answer {letter!r}")
        return sorted(ids)

    def prepare(self, prompts: list[str], texts: list[str], themes: list[str]) -> None:
        pass

    @torch.no_grad()
    def prefer(self, prompts: list[str], first: list[str], second: list[str]) -> list[float]:
        self.tokenizer.padding_side = "left"
        out = []
        for i in range(0, len(prompts), self.batch_size):
            cap = lambda text: text[:JUDGE_JOKE_CHARS]
            texts = [fit_prompt(self.tokenizer, format_for_model(
                         self.tokenizer, JUDGE_PROMPT.format(task=cap(p), a=cap(x), b=cap(y))), self.max_prompt_tokens)
                     for p, x, y in zip(prompts[i:i + self.batch_size], first[i:i + self.batch_size],
                                        second[i:i + self.batch_size])]
            enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                                 add_special_tokens=adds_special_tokens(self.tokenizer, texts)).to(self.model.device)
            logits = self.model(**enc).logits[:, -1].float().log_softmax(dim=-1)          # (B, V)
            a = torch.logsumexp(logits[:, self.answer_ids[0]], dim=-1)                  # (B,)
            b = torch.logsumexp(logits[:, self.answer_ids[1]], dim=-1)                  # (B,)
            out += torch.sigmoid(a - b).tolist()
        return out


def component_scorer(cfg, name: str):
    """The model behind a model component (the run's preference or humor RM), to score texts the outputs do not
    hold: people's votes."""
    if name == "rank_reward":
        return mean_scorer(cfg.ranking_model_dirs(), cfg.rm_batch_size, cfg.rm_max_length, RankingRewardModel)
    if name == "rm_reward":
        return HumorRewardModel(cfg.reward_model_dir(), cfg.rm_batch_size, cfg.rm_max_length)
    raise ValueError(f"arena_votes with arena_judge component:{name}: only rank_reward or rm_reward can score "
                     f"people's jokes; judge with rm:<dir> instead")


def load_judge(spec: str, cfg, outputs: dict[str, list[dict]]):
    """A judge from its spec: 'component:<name>' (a score the output rows carry), 'rm:<trained RM dir>' (any
    objective; several, comma-separated, for an ensemble) or 'llm:<model spec>' (a packaged model, a hub id or a
    local directory)."""
    kind, _, target = spec.partition(":")
    if kind == "component":
        rows = [r for rows in outputs.values() for r in rows]
        missing = sum(target not in r for r in rows)
        if missing:
            raise ValueError(f"arena_judge {spec}: {missing} of {len(rows)} outputs carry no '{target}' score")
        return ScoreJudge(spec, precomputed={(r["prompt"], r["text"]): r[target] for r in rows})
    if kind == "rm":
        # one trained RM directory, or several (seeds, data sets, backbones): the mean of their (0, 1) scores
        return ScoreJudge(spec, mean_scorer(model_dirs(target), cfg.rm_batch_size, cfg.rm_max_length))
    if kind == "llm":
        model, tokenizer = load_base_policy(target)
        return LLMJudge(spec, model, tokenizer)
    raise ValueError(f"arena_judge {spec!r}: expected component:<name>, rm:<dir> or llm:<model>")


# ---------------------------------------------------------------- battles


def pairings(outputs: dict[str, list[dict]]) -> list[tuple[str, str, str, dict, dict]]:
    """(prompt id, policy a, policy b, a's row, b's row) for every pair of policies and every prompt they share:
    sample k against sample k, the shorter list reused in turn (a best-of row meets every sample of the other)."""
    by_id = {name: {} for name in outputs}
    for name, rows in outputs.items():
        for r in rows:
            by_id[name].setdefault(r["id"], []).append(r)
    names = list(outputs)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for pid in sorted(set(by_id[a]) & set(by_id[b])):
                xs, ys = by_id[a][pid], by_id[b][pid]
                for k in range(max(len(xs), len(ys))):
                    out.append((pid, a, b, xs[k % len(xs)], ys[k % len(ys)]))
    return out


def judge_battles(judge, pairs: list[tuple], tie_margin: float) -> list[Battle]:
    """Every pairing judged in both orders: p = (P(a first) + 1 - P(b first)) / 2, a win for a above
    0.5 + tie_margin, a loss below 0.5 - tie_margin, a tie between; consistent when the two orders pick the
    same side (or both call it even)."""
    prompts, themes = [x["prompt"] for *_, x, _ in pairs], [row_theme(x) for *_, x, _ in pairs]
    firsts, seconds = [x["text"] for *_, x, _ in pairs], [y["text"] for *_, y in pairs]
    judge.prepare(prompts * 2, firsts + seconds, themes * 2)
    forward = judge.prefer(prompts, firsts, seconds)          # P(a's joke funnier), a shown first
    backward = judge.prefer(prompts, seconds, firsts)         # P(b's joke funnier), b shown first
    battles = []
    for (pid, a, b, _, _), p_ab, p_ba in zip(pairs, forward, backward):
        p = (p_ab + 1 - p_ba) / 2
        side = lambda q: 0 if abs(q - 0.5) <= tie_margin else (1 if q > 0.5 else -1)
        score = 1.0 if p > 0.5 + tie_margin else 0.0 if p < 0.5 - tie_margin else 0.5
        battles.append(Battle(pid, a, b, score, side(p_ab) == side(1 - p_ba)))
    return battles


def arena(outputs: dict[str, list[dict]], judge, tie_margin: float, rounds: int, seed: int,
          prior: float = 1.0) -> dict:
    """Battles, Bradley-Terry ratings with bootstrap intervals, the win-rate matrix and the judge's figures."""
    players = [name for name, rows in outputs.items() if rows]
    if len(players) < 2:
        raise ValueError(f"the arena needs at least 2 policies with outputs, got {players}")
    battles = judge_battles(judge, pairings({p: outputs[p] for p in players}), tie_margin)
    if not battles:
        raise ValueError("the arena's policies share no prompt id: nothing to compare")
    ratings = bradley_terry(players, battles, prior)
    intervals = bootstrap_intervals(players, battles, rounds, seed, prior)
    order = sorted(players, key=lambda name: -ratings[name])
    return {"judge": judge.name, "battles": len(battles), "prompts": len({b.prompt_id for b in battles}),
            "tie_rate": sum(b.score == 0.5 for b in battles) / len(battles),
            "position_consistency": sum(b.consistent for b in battles) / len(battles),
            "leaderboard": [{"policy": name, "elo": ratings[name], "ci95": list(intervals[name]),
                             "battles": sum(name in (b.a, b.b) for b in battles)} for name in order],
            "win_matrix": win_matrix(order, battles), "bootstrap_rounds": rounds, "prior_ties": prior}


# ---------------------------------------------------------------- the judge against people


def judge_against_people(judge, votes: list, tie_margin: float, rounds: int, seed: int) -> dict:
    """How often the judge sides with people on their decisive side-by-side votes (judged in both orders; a judge
    tie counts half), with a bootstrap 95 % interval, beside the 'longer joke wins' baseline on the same votes;
    and how often it calls a tie where people voted tie / neither, against where they did not."""
    pairs = [(v.where, "a", "b", {"prompt": v.prompt, "theme": v.prompt, "text": v.a},
              {"prompt": v.prompt, "theme": v.prompt, "text": v.b}) for v in votes]
    battles = judge_battles(judge, pairs, tie_margin)
    decisive = [(v, b) for v, b in zip(votes, battles) if v.winner in ("a", "b")]
    if not decisive:
        raise ValueError("votes: no decisive vote (a or b) to check the judge against")
    agree = [b.score if v.winner == "a" else 1 - b.score for v, b in decisive]
    longer = [longer_first(v.a, v.b) if v.winner == "a" else 1 - longer_first(v.a, v.b) for v, _ in decisive]
    even = [b for v, b in zip(votes, battles) if v.winner in ("tie", "none")]
    return {"votes": len(votes), "counts": vote_counts(votes), "decisive": len(decisive),
            "agreement": sum(agree) / len(agree), "agreement_ci95": list(bootstrap_mean_ci(agree, rounds, seed)),
            "longer_wins": sum(longer) / len(longer), "longer_wins_ci95": list(bootstrap_mean_ci(longer, rounds, seed)),
            "judge_tie_rate_on_decisive": sum(b.score == 0.5 for _, b in decisive) / len(decisive),
            "judge_tie_rate_on_people_ties": sum(b.score == 0.5 for b in even) / len(even) if even else None,
            "position_consistency": sum(b.consistent for b in battles) / len(battles)}


def people_markdown(name: str, checks: dict[str, dict]) -> list[str]:
    lines = [f"## The judge `{name}` against people's side-by-side votes", "",
             "| votes file | votes (a / b / tie / none) | agreement on decisive votes (95 % CI) | longer joke wins "
             "(95 % CI) | judge ties: decisive / people's ties | position consistency |", "|---|---|---|---|---|---|"]
    for path, c in checks.items():
        k = c["counts"]
        on_ties = "-" if c["judge_tie_rate_on_people_ties"] is None else f"{c['judge_tie_rate_on_people_ties']:.2f}"
        lines.append(f"| {path} | {c['votes']} ({k['a']} / {k['b']} / {k['tie']} / {k['none']}) | "
                     f"{c['agreement']:.3f} ({c['agreement_ci95'][0]:.3f} to {c['agreement_ci95'][1]:.3f}) | "
                     f"{c['longer_wins']:.3f} ({c['longer_wins_ci95'][0]:.3f} to {c['longer_wins_ci95'][1]:.3f}) | "
                     f"{c['judge_tie_rate_on_decisive']:.2f} / {on_ties} | {c['position_consistency']:.2f} |")
    return lines + ["", "Agreement counts a judge tie as half. A judge is worth its battles only where its interval "
                    "clears 0.5 and the length baseline's.", ""]


# ---------------------------------------------------------------- report


def arena_markdown(result: dict, plot: str | None = None, independent: str = "") -> list[str]:
    order = [row["policy"] for row in result["leaderboard"]]
    lines = [f"## Arena: judged side by side by `{result['judge']}`", "",
             f"{result['battles']} battles on {result['prompts']} prompts, each judged in both orders; tie rate "
             f"{result['tie_rate']:.2f}, the judge's position consistency {result['position_consistency']:.2f}. "
             f"Bradley-Terry ratings on the Elo scale (mean {ELO_MEAN:g}), 95 % intervals from "
             f"{result['bootstrap_rounds']} bootstraps over prompts. {independent}", "",
             "| rank | policy | Elo | 95 % CI | battles |", "|---|---|---|---|---|"]
    for rank, row in enumerate(result["leaderboard"], 1):
        lo, hi = row["ci95"]
        lines.append(f"| {rank} | {row['policy']} | {row['elo']:.0f} | {lo:.0f} to {hi:.0f} | {row['battles']} |")
    lines += ["", "Win rate of the row against the column (ties half):", "",
              "| | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for a in order:
        cells = ["-" if result["win_matrix"][a][b] is None else f"{result['win_matrix'][a][b]:.2f}" for b in order]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![arena]({plot})"]
    return lines + [""]


def plot_leaderboard(result: dict, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["leaderboard"][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.2))
    elo = [r["elo"] for r in rows]
    err = [[r["elo"] - r["ci95"][0] for r in rows], [r["ci95"][1] - r["elo"] for r in rows]]
    ax.errorbar(elo, range(len(rows)), xerr=err, fmt="o", capsize=4)
    ax.set_yticks(range(len(rows)), [r["policy"] for r in rows])
    ax.axvline(ELO_MEAN, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("Elo (Bradley-Terry), 95 % bootstrap CI")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_rewards(run_dir: Path) -> tuple[set[str], set[Path]]:
    """The reward components weighted (non-zero) in this run's online RL stages, and the resolved directories of
    the reward models behind them (rm_reward: reward_model; rank_reward: ranking_model), from their config.yaml."""
    names, dirs = set(), set()
    for stage in RL_STAGES:
        path = run_dir / stage / "config.yaml"
        if path.is_file():
            config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            weighted = {n for per_type in (config.get("reward_weights") or {}).values() for n, w in per_type.items() if w}
            names |= weighted
            if "rm_reward" in weighted:
                dirs.add(Path(config.get("reward_model") or run_dir / "rm" / "final").resolve())
            if "rank_reward" in weighted:
                dirs |= {d.resolve() for d in model_dirs(config.get("ranking_model") or
                                                         str(run_dir / "rm_pairwise" / "final"))}
    return names, dirs


def independence_note(spec: str, run_dir: Path) -> tuple[bool, str]:
    """Is the judge independent of the reward the run's RL stages trained on? (a component they weighted, or the
    reward model directory behind one, is not)."""
    kind, _, target = spec.partition(":")
    names, dirs = training_rewards(run_dir)
    if kind == "component" and target in names:
        return False, f"**The judge `{target}` is a reward the RL policies trained on: not an independent judge.**"
    if kind == "rm" and any(d.resolve() in dirs for d in model_dirs(target)):
        return False, "**The judge is (or holds) a reward model the RL policies trained on: not an independent judge.**"
    return True, "The judge is not a reward the RL policies trained on."


def judge_model_dirs(spec: str, cfg) -> list[Path]:
    """The trained reward model directories behind a judge: the run's RM for component:rank_reward / rm_reward,
    each directory of rm:<dir>,...; none for an LLM or a score the outputs carry without a model."""
    kind, _, target = spec.partition(":")
    if kind == "component":
        return {"rank_reward": cfg.ranking_model_dirs(), "rm_reward": [cfg.reward_model_dir()]}.get(target, [])
    return model_dirs(target) if kind == "rm" else []


def sample_note(spec: str, cfg) -> str:
    """A warning when the judge learnt from the shipped test sample rather than from people's choices at scale
    (a reward model trained without --data_dir or votes): its leaderboard then shows the arena working, not what
    people prefer."""
    for directory in judge_model_dirs(spec, cfg):
        if (directory / RM_META).is_file() and read_meta(directory).get("trained_on_sample"):
            return (f"**The judge ({directory}) learnt from the few pairs shipped for tests, not from people's "
                    f"choices at scale: this leaderboard shows the arena working, not which policy people prefer. "
                    f"Train the preference RM with --data_dir (Humicroedit) or --vote_sources for a judge worth "
                    f"reading.**")
    return ""


def check_against_people(cfg, judge) -> tuple[dict, list[str]]:
    """The judge against every votes source of cfg.arena_votes (at most arena_max_votes of each, seeded)."""
    kind, _, name = cfg.arena_judge.partition(":")
    if kind == "component" and judge.scorer is None:
        judge.scorer = component_scorer(cfg, name)
    checks = {}
    for source in cfg.arena_votes:
        votes = load_votes(source, cfg.data_dir)
        if len(votes) > cfg.arena_max_votes:
            votes = random.Random(cfg.seed).sample(votes, cfg.arena_max_votes)
        checks[str(source["path"] if isinstance(source, dict) else source)] = judge_against_people(
            judge, votes, cfg.arena_tie_margin, cfg.arena_bootstrap, cfg.seed)
    return checks, people_markdown(judge.name, checks)


def run_arena(cfg, outputs: dict[str, list[dict]], out_dir: Path, report_dir: Path) -> tuple[dict, list[str]]:
    """The arena of outputs (best-of rows added), written to out_dir/arena.json and plotted under report_dir/plots;
    returns the result and its Markdown section."""
    entrants = dict(outputs)
    for policy in cfg.arena_best_of:
        if policy not in outputs:
            raise ValueError(f"arena_best_of: {policy!r} has no outputs here (have {sorted(outputs)})")
        entrants[f"{policy}_best_of_{cfg.samples_per_prompt}"] = best_of_rows(outputs[policy], cfg.rank_by)
    judge = load_judge(cfg.arena_judge, cfg, entrants)
    t0 = time.time()
    result = arena(entrants, judge, cfg.arena_tie_margin, cfg.arena_bootstrap, cfg.seed)
    independent, note = independence_note(cfg.arena_judge, cfg.run_dir())
    warning = sample_note(cfg.arena_judge, cfg)
    note = f"{note} {warning}" if warning else note
    result.update(judge_independent=independent, judge_trained_on_sample=bool(warning),
                  seconds=round(time.time() - t0, 1),
                  best_of={name: {"n": cfg.samples_per_prompt, "rank_by": cfg.rank_by} for name in cfg.arena_best_of})
    lines = arena_markdown(result, "plots/arena.png", note)
    if cfg.arena_votes:
        result["against_people"], people = check_against_people(cfg, judge)
        lines += people
    atomic_write_text(out_dir / "arena.json", json.dumps(result, indent=2))
    plot_leaderboard(result, report_dir / "plots" / "arena.png", f"{cfg.run_name}: arena by {judge.name}")
    return result, lines


def main(argv: list[str] | None = None) -> dict:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--outputs", action="append", default=[],
                     help="NAME=FILE.jsonl: outputs to compare (eval/generate.py or evaluation rows). Default: the "
                          "run's evaluation outputs, <run>/eval/<policy>.jsonl.")
    cfg = parse_config(EvalArgs, "eval", argv, own=own)
    args, _ = own.parse_known_args(argv)
    if not cfg.arena_judge:
        raise SystemExit("arena: set --arena_judge (component:<name>, rm:<dir> or llm:<model>)")
    outputs = read_named_outputs(args.outputs)
    if not outputs:
        eval_dir = cfg.run_dir() / "eval"
        outputs = {p.stem: read_jsonl(p) for p in sorted(eval_dir.glob("*.jsonl"))}
        if not outputs and not cfg.arena_votes:
            raise SystemExit(f"arena: no outputs in {eval_dir}; run eval/evaluate.py first or give --outputs")
    out = cfg.run_dir() / "arena"
    out.mkdir(parents=True, exist_ok=True)
    if outputs:
        result, lines = run_arena(cfg, outputs, out, out)
    else:                                    # no policies yet: only the judge against people's votes
        kind, _, name = cfg.arena_judge.partition(":")
        judge = ScoreJudge(cfg.arena_judge) if kind == "component" else load_judge(cfg.arena_judge, cfg, {})
        checks, lines = check_against_people(cfg, judge)
        result = {"judge": cfg.arena_judge, "against_people": checks}
        atomic_write_text(out / "arena.json", json.dumps(result, indent=2))
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
