"""Graded funniness: texts with human funniness grades, for the ranking and rating reward models.

A source gives training rows and held-out rows never trained on, each with a grade on the source's own scale:

| source      | lang | grade                                   | scale  | held-out rows                  |
|-------------|------|-----------------------------------------|--------|--------------------------------|
| humicroedit | en   | mean of five 0-3 grades of an edit      | 0-3    | task-1 dev (+ task-2 dev pairs)|
|             |      | (+ FunLines' train files where present) |        |                                |
| hahackathon | en   | mean humor rating of humorous texts     | 0-5    | a seeded 10 % of the file      |
| rjokes      | en   | r/Jokes upvote score (log-scaled)       | 0-11   | test.tsv.gz                    |
| haha2021    | es   | mean 1-5 vote of humorous tweets        | 1-5    | dev gold file                  |
| ccl2019     | zh   | task-2 humor level 1 / 3 / 5            | 1-5    | a seeded 10 % of the file      |

Grades are compared across sources only after normalising each to [0, 1] over its scale. Pairs for a
Bradley-Terry model are derived within a group (Humicroedit: edits of the same headline, which differ only in the
edit) or, for sources without groups, between randomly paired texts, when their normalised grades differ by at
least a margin. Without --data_dir, the shipped Humicroedit sample stands in (for tests).
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass, field
from pathlib import Path

from data.files import CONTROL
from data.loaders import SAMPLE_DIR, _rows, _text
from data.preferences import _edited, load_humicroedit, read_votes

HELD_OUT_SHARE = 0.1        # sources with one file: this share is held out (seeded)
HELD_OUT_CAP = 2000         # held-out rows scored per source at most (seeded): figures, not a second training set


@dataclass(frozen=True)
class GradedText:
    """A text with a human funniness grade on its source's scale; `group` names texts that compare like with like
    (Humicroedit: edits of one headline; '' = the whole source)."""
    text: str
    grade: float
    group: str
    id: str
    lang: str = "en"
    source: str = "humicroedit"


@dataclass(frozen=True)
class GradedSource:
    name: str
    lang: str
    scale: tuple[float, float]
    train: list[GradedText]
    held_out: list[GradedText]
    held_out_pairs: list[tuple[str, str]]   # (funnier, less funny) human pairs, when the source has them
    human_pairs: list[tuple[str, str]]      # training human pairs (Humicroedit task-2, people's votes)
    themes: dict = field(default_factory=dict)   # text -> what it is about (task_theme), for prompt-aware RMs
    ties: int = 0                            # held-out human votes of 'tie' or 'neither' (counted, not scored)

    def normalised(self, grade: float) -> float:
        lo, hi = self.scale
        return (grade - lo) / (hi - lo)


def _grade(value: str, path: Path, line: int, column: str, scale: tuple[float, float]) -> float:
    try:
        grade = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}:{line}: {column} must be a number, got {value!r}") from None
    if not scale[0] <= grade <= scale[1]:
        raise ValueError(f"{path}:{line}: {column} must be in [{scale[0]:g}, {scale[1]:g}], got {grade}")
    return grade


def read_humicroedit_grades(path: Path) -> list[GradedText]:
    """Task-1 rows: id, original (with the <word/> mark), edit, grades, meanGrade."""
    out = []
    for line, row in _rows(path, required=("id", "original", "edit", "meanGrade")):
        original = _text(row["original"], path, line, "original")
        grade = _grade(row["meanGrade"], path, line, "meanGrade", (0.0, 3.0))
        edited = _edited(original, _text(row["edit"], path, line, "edit"), path, line).strip('" ')
        out.append(GradedText(edited, grade, _edited(original, None, path, line), f"humicroedit:{row['id']}"))
    return out


def read_rated_csv(path: Path, text_col: str, rating_col: str, humor_col: str, scale: tuple[float, float],
                   lang: str, source: str) -> list[GradedText]:
    """Rows of a humor-rating CSV (HaHackathon, HAHA 2021): the humorous ones (humor_col 1), graded by rating_col;
    a non-humorous row has no rating and is skipped."""
    out = []
    for line, row in _rows(path, required=("id", text_col, humor_col, rating_col)):
        if row[humor_col] != "1":
            continue
        out.append(GradedText(_text(row[text_col], path, line, text_col),
                              _grade(row[rating_col], path, line, rating_col, scale), "", f"{source}:{row['id']}",
                              lang, source))
    return out


def read_ccl2019_levels(path: Path) -> list[GradedText]:
    """CCL2019 task 2: an unnamed row number, joke, label (humor level 1, 3 or 5)."""
    out = []
    for line, row in _rows(path, required=("joke", "label")):
        if row["label"] not in ("1", "3", "5"):
            raise ValueError(f"{path}:{line}: label must be a humor level 1, 3 or 5, got {row['label']!r}")
        out.append(GradedText(_text(row["joke"], path, line, "joke"), float(row["label"]), "", f"ccl2019:{line}",
                              "zh", "ccl2019"))
    return out


def read_rjokes(path: Path) -> list[GradedText]:
    """r/Jokes: gzipped lines '<score 0-11>\\t<joke>' (the joke may hold tabs: split on the first)."""
    out = []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for line, raw in enumerate(f, 1):
            score, sep, joke = raw.rstrip("\r\n").partition("\t")
            if not sep:
                raise ValueError(f"{path}:{line}: expected '<score>\\t<joke>', got {raw[:80]!r}")
            joke = CONTROL.sub(" ", joke)      # 3 posts of the dump hold stray DEL / control bytes from Reddit markup
            out.append(GradedText(_text(joke, path, line, "joke"), _grade(score, path, line, "score", (0.0, 11.0)),
                                  "", f"rjokes:{path.stem}:{line}", "en", "rjokes"))
    return out


def _split(rows: list[GradedText], seed: int) -> tuple[list[GradedText], list[GradedText]]:
    """(train, held-out) of a single-file source: a seeded HELD_OUT_SHARE of its rows held out."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    cut = max(1, round(len(rows) * HELD_OUT_SHARE))
    return rows[cut:], rows[:cut]


def _humicroedit(data_dir: Path | None, seed: int) -> GradedSource:
    if data_dir is None:                      # the shipped sample: no held-out file, a slice for tests only
        train = read_humicroedit_grades(SAMPLE_DIR / "humicroedit_grades.csv")
        held_out = train[::4]
    else:                                     # + FunLines (the same task, other headlines) where the files are there
        task1 = Path(data_dir) / "humicroedit" / "task-1"
        train, held_out = read_humicroedit_grades(task1 / "train.csv"), read_humicroedit_grades(task1 / "dev.csv")
        if (task1 / "train_funlines.csv").is_file():
            train += read_humicroedit_grades(task1 / "train_funlines.csv")
    human_examples = load_humicroedit(data_dir)
    if data_dir and (Path(data_dir) / "humicroedit" / "task-2" / "train_funlines.csv").is_file():
        human_examples += load_humicroedit(data_dir, split="train_funlines")
    held_examples = load_humicroedit(data_dir, split="dev") if data_dir else human_examples
    themes = {g.text: g.group.strip('" ') for g in train + held_out}       # an edit's theme: the original headline
    themes.update({text: ex.task.headline for ex in human_examples + held_examples for text in ex.completions})
    return GradedSource("humicroedit", "en", (0.0, 3.0), train, held_out,
                        [ex.completions for ex in held_examples], [ex.completions for ex in human_examples], themes)


def votes_source(source, seed: int) -> GradedSource:
    """People's side-by-side votes (data/preferences.py read_votes) as a ranking source: a seeded HELD_OUT_SHARE of
    the themes held out (every vote on a held-out theme), decisive votes as (funnier, other) pairs; held-out ties
    and 'neither' are counted."""
    votes = read_votes(source)
    themes = sorted({v.prompt for v in votes})
    random.Random(seed).shuffle(themes)
    held = set(themes[:max(1, round(len(themes) * HELD_OUT_SHARE))]) if len(themes) > 1 else set()
    decisive = [v for v in votes if v.winner in ("a", "b") and v.a != v.b]
    langs = [v.lang for v in votes]
    name = Path(source["path"] if isinstance(source, dict) else source).name
    return GradedSource(name, max(set(langs), key=langs.count), (0.0, 1.0), [], [],
                        [v.ranked() for v in decisive if v.prompt in held],
                        [v.ranked() for v in decisive if v.prompt not in held],
                        {t: v.prompt for v in votes for t in (v.a, v.b)},
                        sum(v.winner in ("tie", "none") for v in votes if v.prompt in held))


def _hahackathon(data_dir: Path, seed: int) -> GradedSource:
    rows = read_rated_csv(data_dir / "hahackathon" / "hahackathon_train.csv", "text", "humor_rating", "is_humor",
                          (0.0, 5.0), "en", "hahackathon")
    return GradedSource("hahackathon", "en", (0.0, 5.0), *_split(rows, seed), [], [])


def _haha2021(data_dir: Path, seed: int) -> GradedSource:
    read = lambda name: read_rated_csv(data_dir / "haha2021" / name, "text", "humor_rating", "is_humor", (1.0, 5.0),
                                       "es", "haha2021")
    return GradedSource("haha2021", "es", (1.0, 5.0), read("haha_2021_train.csv"), read("haha_2021_dev_gold.csv"), [], [])


def _ccl2019(data_dir: Path, seed: int) -> GradedSource:
    rows = read_ccl2019_levels(data_dir / "ccl2019_chinese_humor" / "task2" / "task2_test_with_label.csv")
    return GradedSource("ccl2019", "zh", (1.0, 5.0), *_split(rows, seed), [], [])


def _rjokes(data_dir: Path, seed: int) -> GradedSource:
    return GradedSource("rjokes", "en", (0.0, 11.0), read_rjokes(data_dir / "rjokes" / "dev.tsv.gz"),
                        read_rjokes(data_dir / "rjokes" / "test.tsv.gz"), [], [])


GRADED_SOURCES = {"humicroedit": _humicroedit, "hahackathon": _hahackathon, "rjokes": _rjokes,
                  "haha2021": _haha2021, "ccl2019": _ccl2019}
GRADED_LANGS = {"humicroedit": "en", "hahackathon": "en", "rjokes": "en", "haha2021": "es", "ccl2019": "zh"}


def _capped(rows: list, cap: int | None, seed: int) -> list:
    return rows if cap is None or len(rows) <= cap else random.Random(seed).sample(rows, cap)


def load_graded(sources: list[str], data_dir, langs, max_rows_per_source: int | None, seed: int) -> list[GradedSource]:
    """The named graded sources in the chosen languages, training rows capped at max_rows_per_source and held-out
    rows at HELD_OUT_CAP (both seeded)."""
    unknown = [s for s in sources if s not in GRADED_SOURCES]
    if unknown:
        raise ValueError(f"unknown graded source(s) {unknown}; valid: {sorted(GRADED_SOURCES)}")
    chosen = [s for s in sources if GRADED_LANGS[s] in langs]
    if not chosen:
        raise ValueError(f"graded_sources {sources} hold no language of langs {list(langs)} "
                         f"(languages: {GRADED_LANGS})")
    missing = [s for s in chosen if s != "humicroedit" and data_dir is None]
    if missing:
        raise ValueError(f"graded source(s) {missing} need --data_dir (only a Humicroedit sample ships)")
    out = []
    for name in chosen:
        src = GRADED_SOURCES[name](Path(data_dir) if data_dir else None, seed)
        out.append(GradedSource(src.name, src.lang, src.scale, _capped(src.train, max_rows_per_source, seed),
                                _capped(src.held_out, HELD_OUT_CAP, seed), src.held_out_pairs, src.human_pairs,
                                src.themes, src.ties))
    return out


def pairs_from_grades(rows: list[GradedText], min_gap: float, scale: tuple[float, float] = (0.0, 1.0),
                      seed: int = 0, partners: int = 2) -> list[tuple[str, str]]:
    """(funnier, less funny) pairs whose grades, normalised over `scale`, differ, and by at least min_gap: every such
    pair within a group, and for ungrouped rows (group '') each text against `partners` random others.

    >>> rows = [GradedText("a", 2.0, "h", "1"), GradedText("b", 0.4, "h", "2"), GradedText("c", 1.8, "h", "3")]
    >>> pairs_from_grades(rows, 0.5 / 3, (0.0, 3.0))
    [('a', 'b'), ('c', 'b')]
    """
    gap = min_gap * (scale[1] - scale[0])
    differ = lambda a, b: a.grade - b.grade >= gap and a.grade > b.grade     # a pair of equal grades teaches nothing
    by_group: dict[str, list[GradedText]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    out = [(a.text, b.text) for group, members in by_group.items() if group
           for a in members for b in members if differ(a, b)]
    loose = by_group.get("", [])
    rng = random.Random(seed)
    for _ in range(partners if len(loose) > 1 else 0):
        order = rng.sample(loose, len(loose))
        for a, b in zip(loose, order):
            if differ(a, b) or differ(b, a):
                out.append((a.text, b.text) if a.grade > b.grade else (b.text, a.text))
    return out
