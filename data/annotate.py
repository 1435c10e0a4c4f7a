"""The seed authors' data step: jokes labeled only humor / not humor -> task-shaped rows. An instruct LLM reads
each joke and writes a related news headline and two key words of the joke (a verb and a noun) as JSON; every
answer is parsed and validated before it is kept, and the rows `id, lang, joke, headline, word1, word2,
annotator, raw` feed SFT (both prompt types), the reward model (prompt + joke) and RL (prompts).

This module is the logic and knows no model: `annotate` takes a `generate(prompts) -> answers` function, so the
tests script it and sft/annotate.py plugs in a local causal LM (HF generation, or vLLM on a GPU).

Validation (a rejected answer is retried, then counted under its reason; nothing is dropped silently):
  no_json            no {...} object in the answer (code fences and chatter around it are fine)
  bad_json           the object does not parse
  missing_field      headline, word1 or word2 missing or not a string
  headline_length    headline outside the window (characters for zh, words for en/es)
  headline_copies_joke  the headline is (nearly) the joke itself
  same_words         word1 and word2 are the same
  word_not_in_joke   a word is not in the joke (data.text.contains_word: whole words, substrings for Chinese)
  stop_word          a word is a function word (en/es, no tagger needed)
  not_verb_and_noun  zh: jieba does not tag one word a verb and the other a noun (en/es: no tagger is installed,
                     so only stop_word applies there)
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from data.files import jsonl_rows
from data.loaders import Demonstration, LabeledText, TaskPrompt
from data.prompts import STOP_WORDS, annotate_prompt, zh_pos
from data.text import contains_word, text_units

REASONS = ("no_json", "bad_json", "missing_field", "headline_length", "headline_copies_joke", "same_words",
           "word_not_in_joke", "stop_word", "not_verb_and_noun")
COPY_SIMILARITY = 0.8      # a headline this similar to the joke (difflib ratio) copies it


@dataclass(frozen=True)
class Annotation:
    id: str
    lang: str
    joke: str
    headline: str
    word1: str
    word2: str
    annotator: str
    raw: str


def parse_answer(raw: str) -> tuple[dict | None, str | None]:
    """(the JSON object of an answer, None) or (None, reason). The object may sit in code fences or among chatter.

    >>> parse_answer('Sure! ```json\\n{"headline": "H", "word1": "a", "word2": "b"}\\n``` Hope it helps.')
    ({'headline': 'H', 'word1': 'a', 'word2': 'b'}, None)
    >>> parse_answer("I cannot do that."), parse_answer('{"headline": "H", "word1": }')[1]
    ((None, 'no_json'), 'bad_json')
    """
    start = raw.find("{")
    if start < 0:
        return None, "no_json"
    depth, end = 0, -1
    for i, ch in enumerate(raw[start:], start):        # the first balanced {...}
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0:
            end = i
            break
    if end < 0:
        return None, "bad_json"
    try:
        obj = json.loads(raw[start:end + 1])
    except json.JSONDecodeError:
        return None, "bad_json"
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) and obj[k].strip()
                                            for k in ("headline", "word1", "word2")):
        return None, "missing_field"
    return {k: obj[k].strip() for k in ("headline", "word1", "word2")}, None


def check_annotation(fields: dict, joke: str, lang: str, headline_window: dict) -> str | None:
    """The first rule (module docstring) the parsed answer breaks, or None when it is kept.

    >>> window = {"en": [3, 20], "zh": [10, 40]}
    >>> joke = "I told my cactus a secret. Now it keeps needling me."
    >>> check_annotation({"headline": "Man confides in houseplant", "word1": "needling", "word2": "cactus"}, joke, "en", window)
    >>> check_annotation({"headline": "Man confides in houseplant", "word1": "needling", "word2": "lawsuit"}, joke, "en", window)
    'word_not_in_joke'
    """
    headline, w1, w2 = fields["headline"], fields["word1"], fields["word2"]
    lo, hi = headline_window[lang]
    if not lo <= len(text_units(headline, lang)) <= hi:
        return "headline_length"
    if difflib.SequenceMatcher(None, headline.casefold(), joke.casefold()).ratio() >= COPY_SIMILARITY:
        return "headline_copies_joke"
    if w1.casefold() == w2.casefold():
        return "same_words"
    if not (contains_word(joke, w1, lang) and contains_word(joke, w2, lang)):
        return "word_not_in_joke"
    if lang in STOP_WORDS and any(w.casefold() in STOP_WORDS[lang] for w in (w1, w2)):
        return "stop_word"
    if lang == "zh" and {zh_pos(w1), zh_pos(w2)} != {"noun", "verb"}:
        return "not_verb_and_noun"
    return None


def _append(path: Path, rows: list[dict]) -> None:
    """Append rows to a JSONL file and flush them to disk: a kill loses at most the batch in flight."""
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _done_ids(*paths: Path) -> set[str]:
    return {row["id"] for path in paths if path.is_file() for _, row in jsonl_rows(path)}


def annotate(jokes: list[LabeledText], generate: Callable[[list[str], int], list[str]], out_dir: Path,
             annotator: str, headline_window: dict, batch_size: int = 8, max_retries: int = 2,
             progress: bool = True) -> dict:
    """Annotate the jokes not yet in out_dir (annotations.jsonl: kept; rejected.jsonl: refused after the retries,
    with the reason). generate(prompts, attempt) -> answers; attempt 0 is the first try, later ones may sample.
    Returns the counts: seen, skipped (done before), accepted, rejected by reason, retries, attempts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    kept_path, rejected_path = out_dir / "annotations.jsonl", out_dir / "rejected.jsonl"
    done = _done_ids(kept_path, rejected_path)
    todo = [j for j in jokes if j.id not in done]
    counts = {"jokes": len(jokes), "skipped_done_before": len(jokes) - len(todo), "accepted": 0, "retried": 0,
              "answers": 0, "rejected": {r: 0 for r in REASONS}}
    bar = tqdm(total=len(todo), desc="annotating", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        pending, last = {j.id: j for j in batch}, {}
        kept = []
        for attempt in range(max_retries + 1):
            items = list(pending.values())
            if not items:
                break
            counts["retried"] += len(items) if attempt else 0
            answers = generate([annotate_prompt(j.text, j.lang) for j in items], attempt)
            counts["answers"] += len(answers)
            for joke, raw in zip(items, answers):
                fields, reason = parse_answer(raw)
                reason = reason or check_annotation(fields, joke.text, joke.lang, headline_window)
                last[joke.id] = (reason, raw)
                if reason is None:
                    kept.append(asdict(Annotation(joke.id, joke.lang, joke.text, **fields, annotator=annotator, raw=raw)))
                    del pending[joke.id]
        refused = [{"id": jid, "lang": j.lang, "joke": j.text, "reason": last[jid][0], "raw": last[jid][1],
                    "annotator": annotator} for jid, j in pending.items()]
        _append(kept_path, kept)
        _append(rejected_path, refused)
        counts["accepted"] += len(kept)
        for row in refused:
            counts["rejected"][row["reason"]] += 1
        bar.update(len(batch))
        handled = counts["accepted"] + sum(counts["rejected"].values())
        bar.set_postfix(accepted=f"{counts['accepted'] / max(1, handled):.0%}")
    bar.close()
    return counts


# ---------------------------------------------------------------- what the annotations feed


def annotations_of(sources: list[str], run_dir: Path) -> list[Annotation]:
    """The kept rows of every source: an annotations.jsonl, its folder, or 'annotate' (the run's own)."""
    return [a for s in sources for a in read_annotations(run_dir / "annotate" if s == "annotate" else Path(s))]


def read_annotations(path: str | Path) -> list[Annotation]:
    """The kept rows of an annotations.jsonl (a path, or its folder)."""
    path = Path(path)
    path = path / "annotations.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no annotations here (run sft/annotate.py first)")
    rows = []
    for where, row in jsonl_rows(path):
        try:
            rows.append(Annotation(**row))
        except TypeError as e:
            raise ValueError(f"{where}: not an annotation row ({e})") from None
    return rows


def annotation_prompts(rows: list[Annotation]) -> list[TaskPrompt]:
    """Both task prompts of every annotated joke: its headline, and its two words."""
    out = []
    for r in rows:
        out.append(TaskPrompt(f"{r.id}:headline", r.lang, "headline", headline=r.headline))
        out.append(TaskPrompt(f"{r.id}:words", r.lang, "words", words=(r.word1, r.word2)))
    return out


def annotation_demonstrations(rows: list[Annotation]) -> list[Demonstration]:
    """SFT demonstrations of both prompt types: (headline -> joke) and (two words -> joke)."""
    return [Demonstration(task, r.joke) for r in rows for task in annotation_prompts([r])]


def annotated_prompt_by_text(rows: list[Annotation]) -> dict[str, TaskPrompt]:
    """joke text -> the headline prompt it answers, for a reward model trained on prompt + joke."""
    return {r.joke: TaskPrompt(f"{r.id}:headline", r.lang, "headline", headline=r.headline) for r in rows}
