"""The evaluation metrics over a set of generated outputs: the one implementation behind `eval/evaluate.py`,
the demo report and the sweep summary.

An output row is a dict with at least: id, lang, prompt_type, words (list or None), text, finished (bool), plus
every reward component and `total` as rl/rollouts.generate_rows writes them. Units are characters for Chinese, words
otherwise (data.text.text_units).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from common.generation import adds_special_tokens
from common.io import read_jsonl
from common.logprobs import token_logprobs
from data.text import distinct_n, text_units
from reward.components import coverage_reward, text_flags
from reward.composite import component_names


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def summarize(rows: list[dict], cfg) -> dict:
    """Every metric that needs only the outputs (perplexity and win rate need models).
    cfg: the thresholds of TextCheckArgs, the reward weights (mean_<component> for each component they use, and
    mean_total) and rm_component, whose mean is also reported as mean_rm."""
    if not rows:
        raise ValueError("no outputs to evaluate")
    texts, langs = [r["text"] for r in rows], [r["lang"] for r in rows]
    word_rows = [r for r in rows if r.get("words")]
    out = {"outputs": len(rows), "prompts": len({r["id"] for r in rows}),
           "stop_rate": sum(bool(r["finished"]) for r in rows) / len(rows),
           "mean_length": _mean(len(text_units(text, lang)) for text, lang in zip(texts, langs))}
    for n in (1, 2):
        out[f"dist{n}_corpus"], out[f"dist{n}_sentence"] = distinct_n(texts, langs, n)
    if word_rows:
        cov = coverage_reward([r["text"] for r in word_rows], words=[r["words"] for r in word_rows],
                              lang=[r["lang"] for r in word_rows])
        out["word_prompts"] = len(word_rows)
        out["coverage"] = _mean(cov)
        out["structure_success"] = sum(c == 1.0 for c in cov) / len(cov)   # both required words present
    flags = text_flags(texts, langs, cfg)
    for flag, key in (("drifted", "script_drift_rate"), ("repetitive", "repetition_rate"), ("gibberish", "gibberish_rate")):
        out[key] = sum(flags[flag]) / len(rows)
    for key in dict.fromkeys([*component_names(cfg), cfg.rm_component, "total"]):
        if key in rows[0]:
            out[f"mean_{key}"] = _mean(r.get(key) for r in rows)
    out["mean_rm"] = out.get(f"mean_{cfg.rm_component}")
    return out


@torch.no_grad()
def perplexity(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 8) -> float:
    """exp(mean NLL per completion token) of the completions given their (formatted) prompts, under `model`:
    fluency as a reference LM sees it. Tokens of the prompt and padding do not count."""
    model.eval()
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(prompts), batch_size):
        ids, labels = [], []
        for prompt, completion in zip(prompts[i:i + batch_size], completions[i:i + batch_size]):
            p = tokenizer(prompt, add_special_tokens=adds_special_tokens(tokenizer, [prompt]))["input_ids"]
            c = tokenizer(completion, add_special_tokens=False)["input_ids"]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(len(x) for x in ids)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])           # (B, T)
        attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        target = torch.tensor([y + [-100] * (width - len(y)) for y in labels])
        logprobs, _, _ = token_logprobs(model, input_ids.to(model.device), attention.to(model.device))   # (B, T-1)
        mask = target[:, 1:].to(model.device) != -100                                      # token t+1 from t
        nll = -logprobs
        total_nll += float(nll[mask].sum())
        total_tokens += int(mask.sum())
    return math.exp(total_nll / total_tokens) if total_tokens else float("nan")


def read_named_outputs(specs: list[str]) -> dict[str, list[dict]]:
    """--outputs NAME=FILE.jsonl (repeatable) -> {NAME: rows}: outputs written by eval/generate.py or evaluation."""
    outputs = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--outputs {spec!r}: expected NAME=FILE.jsonl")
        outputs[name] = read_jsonl(Path(path))
    return outputs


def best_of_rows(rows: list[dict], rank_by: str) -> list[dict]:
    """Select-best: per prompt id, the sample `rank_by` (a component the rows carry, or 'total') scores highest
    among those that hold both required words (word prompts; among all when none does); the first on a tie.

    >>> rows = [{"id": "1", "text": "a", "s": 0.2, "coverage_reward": 1.0}, {"id": "1", "text": "b", "s": 0.9,
    ...          "coverage_reward": 0.5}, {"id": "2", "text": "c", "s": 0.5}, {"id": "2", "text": "d", "s": 0.7}]
    >>> [r["text"] for r in best_of_rows(rows, "s")]
    ['a', 'd']
    """
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        if not isinstance(r.get(rank_by), (int, float)):
            raise ValueError(f"best-of: output {r.get('id')!r} has no '{rank_by}' score to rank by")
        by_id.setdefault(r["id"], []).append(r)

    def covers(r: dict) -> bool:      # the rows' coverage, or the words checked here when the rows lack it
        if "coverage_reward" in r:
            return r["coverage_reward"] in (None, 1.0)
        return not r.get("words") or coverage_reward([r["text"]], words=[r["words"]], lang=[r.get("lang", "en")]) == [1.0]

    best = []
    for samples in by_id.values():
        covering = [r for r in samples if covers(r)]
        best.append(max(covering or samples, key=lambda r: r[rank_by]))
    return best


def win_rate(rows: list[dict], baseline: list[dict], key: str) -> dict:
    """Pairwise win rate against a baseline on the same prompt ids, judged by the component `key` (rm_component):
    each pair of outputs for a shared id is a battle; a tie counts half.

    >>> win_rate([{"id": "a", "rm_reward": 0.9}, {"id": "b", "rm_reward": 0.2}],
    ...          [{"id": "a", "rm_reward": 0.5}, {"id": "b", "rm_reward": 0.2}, {"id": "c", "rm_reward": 0.1}], "rm_reward")
    {'win_rate': 0.75, 'battles': 2, 'shared_prompts': 2}
    """
    theirs: dict[str, list[float]] = {}
    by_id: dict[str, list[float]] = {}
    for r in baseline:
        theirs.setdefault(r["id"], []).append(r[key])
    for r in rows:
        by_id.setdefault(r["id"], []).append(r[key])
    score, battles = 0.0, 0
    for pid, values in by_id.items():
        for a in values:
            for b in theirs.get(pid, []):
                score += 1.0 if a > b else 0.5 if a == b else 0.0
                battles += 1
    shared = len(set(by_id) & set(theirs))
    if not battles:
        raise ValueError("win rate: the two output sets share no prompt id")
    return {"win_rate": score / battles, "battles": battles, "shared_prompts": shared}
