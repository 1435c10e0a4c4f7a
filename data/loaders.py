"""Row types and loaders for the humor data sets.

Real sets are read from a data directory given by configuration (the ../shared/data layout, see SOURCES.md
there); the project's own sample set in data/sample/ needs nothing else. A bad row raises an error naming the
file, the line and what is wrong.
"""

from __future__ import annotations

import csv
import io
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from data.files import SourceSpec, check_text, decode_file, field_value, is_user_source, parse_source, read_records
from data.text import detect_lang

SAMPLE_DIR = Path(__file__).parent / "sample"
DEMO_DIR = Path(__file__).parent / "demo"          # ColBERT (MIT) subset + word pairs: the CPU demo's data
SHIPPED_SOURCES = ("sample", "demo")               # sources that ship with the project (no --data_dir)
LANGS = ("en", "es", "zh")
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class LabeledText:
    """A text labeled humor (1) or not humor (0)."""
    text: str
    label: int
    lang: str
    source: str
    id: str


@dataclass(frozen=True)
class TaskPrompt:
    """A generation task: write a joke about `headline` (prompt_type 'headline') or containing both `words`
    ('words'); or a pun on words[0] ('homographic') or on words[0] sounding like words[1] ('homophonic')."""
    id: str
    lang: str
    prompt_type: str
    headline: str | None = None
    words: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Demonstration:
    """A (task, joke) pair for SFT."""
    task: TaskPrompt
    joke: str


def _rows(path: Path, delimiter: str = ",", quoting: int = csv.QUOTE_MINIMAL, required: tuple[str, ...] = ()):
    """Yield (line number, row dict); check the header has the required columns."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (is --data_dir right?)")
    reader = csv.DictReader(io.StringIO(decode_file(path), newline=""), delimiter=delimiter, quoting=quoting)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
    for row in reader:
        if None in row:  # more fields than the header: a stray delimiter
            raise ValueError(f"{path}:{reader.line_num}: {len(row) - 1 + len(row[None])} fields, header has "
                             f"{len(reader.fieldnames)} (stray delimiter?)")
        yield reader.line_num, {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}


def _label(value, path: Path | str, line: int | None, column: str) -> int:
    """1 (humor) or 0 from 1/0, true/false (any case), or a JSON boolean or integer; else an error at path:line."""
    v = str(value if value is not None else "").strip().lower()
    if v in ("1", "true", "1.0"):
        return 1
    if v in ("0", "false", "0.0"):
        return 0
    where = f"{path}:{line}" if line is not None else str(path)
    raise ValueError(f"{where}: '{column}' must be 0 or 1 (or True/False), got {value!r}")


def _text(value, path: Path, line: int, column: str) -> str:
    if value is None or not value.strip():
        raise ValueError(f"{path}:{line}: '{column}' is empty")
    return check_text(value.strip(), f"{path}:{line}", column)


def read_labeled_table(path: Path, text_col: str, label_col: str, lang: str, source: str,
                       delimiter: str = ",", id_col: str | None = None) -> list[LabeledText]:
    out = []
    for line, row in _rows(path, delimiter, required=(text_col, label_col)):
        out.append(LabeledText(text=_text(row[text_col], path, line, text_col),
                               label=_label(row[label_col], path, line, label_col), lang=lang, source=source,
                               id=(row.get(id_col) or str(line)) if id_col else f"{source}:{line}"))
    return out


# ---------------------------------------------------------------- labeled sources

def read_labeled_tsv(path: Path, source: str) -> list[LabeledText]:
    """The shipped labeled format: lang, label (1 humor / 0 not), text; tab-separated, no quoting."""
    out = []
    for line, row in _rows(path, "\t", csv.QUOTE_NONE, required=("lang", "label", "text")):
        if row["lang"] not in LANGS:
            raise ValueError(f"{path}:{line}: 'lang' must be one of {LANGS}, got {row['lang']!r}")
        out.append(LabeledText(_text(row["text"], path, line, "text"), _label(row["label"], path, line, "label"),
                               row["lang"], source, f"{source}:{line}"))
    return out


def load_sample_labeled(data_dir: Path | None = None) -> list[LabeledText]:
    return read_labeled_tsv(SAMPLE_DIR / "labeled.tsv", "sample")


def load_demo_labeled(data_dir: Path | None = None) -> list[LabeledText]:
    """4,000 ColBERT rows (2,000 jokes, 2,000 news headlines) shipped in data/demo (MIT; see its README)."""
    return read_labeled_tsv(DEMO_DIR / "labeled.tsv", "demo")


def load_colbert(data_dir: Path) -> list[LabeledText]:
    """ColBERT (en): jokes vs news headlines; columns text, humor (True/False)."""
    return read_labeled_table(data_dir / "colbert_humor" / "dev.csv", "text", "humor", "en", "colbert")


def load_ccl2019(data_dir: Path) -> list[LabeledText]:
    """CCL2019 task 1 (zh) training file; columns id, joke, label."""
    return read_labeled_table(data_dir / "ccl2019_chinese_humor" / "task1" / "task1_train.csv",
                              "joke", "label", "zh", "ccl2019", id_col="id")


def load_haha2021(data_dir: Path) -> list[LabeledText]:
    """HAHA 2021 (es) training file; columns id, text, is_humor."""
    return read_labeled_table(data_dir / "haha2021" / "haha_2021_train.csv", "text", "is_humor", "es", "haha2021",
                              id_col="id")


LABELED_SOURCES = {"sample": load_sample_labeled, "demo": load_demo_labeled, "colbert": load_colbert, "ccl2019": load_ccl2019,
                   "haha2021": load_haha2021}


# ---------------------------------------------------------------- task prompts (MWAHAHA task-a format)

def read_task_tsv(path: Path) -> list[TaskPrompt]:
    """MWAHAHA task-a inputs: id, word1, word2, headline; '-' marks the unused fields. Quoting is off: headlines
    hold unbalanced '"'. The language is the id's prefix (en_0001)."""
    out = []
    for line, row in _rows(path, "\t", csv.QUOTE_NONE, required=("id", "word1", "word2", "headline")):
        pid = _text(row["id"], path, line, "id")
        lang = pid.split("_")[0]
        if lang not in LANGS:
            raise ValueError(f"{path}:{line}: id {pid!r} does not start with a language prefix {LANGS}")
        used = {k: row[k] for k in ("word1", "word2", "headline") if row[k] and row[k] != "-"}
        if "word1" in used or "word2" in used:
            used["words"] = _words([used.pop("word1", ""), used.pop("word2", "")], f"{path}:{line}")
        out += row_tasks(pid, lang, used.get("headline"), used.get("words"), None, False, f"{path}:{line}")
    return out


def row_tasks(pid: str, lang: str, headline: str | None, words: tuple[str, ...] | None, prompt_type: str | None,
              annotated: bool, where: str) -> list[TaskPrompt]:
    """The task prompts of one row, by one rule for every reader (MWAHAHA's files and yours): a task row asks
    for one joke, about a headline or with two words. A row with both is refused as ambiguous, unless its
    prompt_type says which, or it is an annotated joke (the joke beside its headline and words: both of its
    prompts, ids <id>:headline and <id>:words)."""
    if not headline and not words:
        raise ValueError(f"{where}: a prompt needs a headline or two words ('-' for unused; columns headline, "
                         f"words or word1 + word2)")
    if prompt_type not in (None, "headline", "words") or (prompt_type and not {"headline": headline, "words": words}[prompt_type]):
        raise ValueError(f"{where}: prompt_type {prompt_type!r} does not match the row's fields")
    both = bool(headline and words and prompt_type is None)
    if both and not annotated:
        raise ValueError(f"{where}: the row has both a headline and two words: which task is it? Set '-' in the "
                         f"unused fields or give a prompt_type column")
    out = []
    if headline and prompt_type in (None, "headline"):
        out.append(TaskPrompt(f"{pid}:headline" if both else pid, lang, "headline", headline=str(headline)))
    if words and prompt_type in (None, "words"):
        out.append(TaskPrompt(f"{pid}:words" if both else pid, lang, "words", words=tuple(words)))
    return out


def load_sample_prompts(data_dir: Path | None = None) -> list[TaskPrompt]:
    return read_task_tsv(SAMPLE_DIR / "prompts.tsv")


def load_demo_prompts(data_dir: Path | None = None) -> list[TaskPrompt]:
    """600 English prompts shipped in data/demo: 300 ColBERT news headlines, 300 pairs of unrelated nouns."""
    return read_task_tsv(DEMO_DIR / "prompts.tsv")


def load_mwahaha_test(data_dir: Path) -> list[TaskPrompt]:
    return [p for lang in LANGS for p in read_task_tsv(data_dir / "mwahaha" / "test" / f"task-a-{lang}.tsv")]


def load_mwahaha_dev(data_dir: Path) -> list[TaskPrompt]:
    return [p for lang in ("en", "es") for p in read_task_tsv(data_dir / "mwahaha" / "dev" / f"task-a-{lang}.tsv")]


PROMPT_SOURCES = {"sample": load_sample_prompts, "demo": load_demo_prompts, "mwahaha_test": load_mwahaha_test, "mwahaha_dev": load_mwahaha_dev}


# ---------------------------------------------------------------- your own files (data/files.py)

def _row_lang(row: dict, spec: SourceSpec, where: str, text: str) -> str:
    """The row's 'lang' column, else the source's lang, else detected from the text's script and words."""
    lang = field_value(row, spec, "lang", where, required=False) or spec.lang or detect_lang(text)
    if lang not in LANGS:
        raise ValueError(f"{where}: language {lang!r} is not one of {LANGS}")
    return lang


def read_user_labeled(spec: SourceSpec) -> list[LabeledText]:
    """Labeled texts from your file: columns text and label (1/0, true/false); optional lang and id."""
    out = []
    for where, row in read_records(spec):
        text = str(field_value(row, spec, "text", where))
        label = _label(field_value(row, spec, "label", where), where, None, spec.column("label"))
        row_id = field_value(row, spec, "id", where, required=False)
        out.append(LabeledText(text, label, _row_lang(row, spec, where, text), spec.name, str(row_id or where)))
    return out


def _words(value, where: str) -> tuple[str, ...]:
    words = [str(w).strip() for w in value] if isinstance(value, (list, tuple)) else re.split(r"\s*[,、，;]\s*", str(value).strip())
    words = [w for w in words if w and w != "-"]
    if len(words) != 2:
        raise ValueError(f"{where}: 'words' must hold two words (a list, or 'a, b'), got {value!r}")
    return tuple(words)


def read_user_prompts(spec: SourceSpec) -> list[TaskPrompt]:
    """Task prompts from your file: a headline, or two words ('words' as a list or 'a, b', or word1 + word2);
    optional id, lang and prompt_type; a row with both is refused unless prompt_type says which or it holds the
    joke they annotate (row_tasks). '-' counts as empty, as in MWAHAHA's files. An id given twice is refused
    with both places: the held-out split goes by id, so a repeated id would silently take other prompts with it."""
    out, first_seen = [], {}
    for where, row in read_records(spec):
        get = lambda name: (v if (v := field_value(row, spec, name, where, required=False)) != "-" else None)
        headline, words = get("headline"), get("words")
        if words is None and (get("word1") is not None or get("word2") is not None):
            words = [get("word1") or "", get("word2") or ""]
        if not headline and not words:
            raise ValueError(f"{where}: a prompt needs a headline or two words (columns headline, words or "
                             f"word1 + word2; map yours with columns: {{headline: ...}}); the row has {sorted(row)}")
        words = _words(words, where) if words else None
        text = " ".join([str(headline or ""), *(words or [])])
        lang, pid = _row_lang(row, spec, where, text), str(get("id") or where)
        if pid in first_seen:
            raise ValueError(f"{where}: id {pid!r} already used at {first_seen[pid]}; ids must be unique")
        first_seen[pid] = where
        annotated = get("joke") is not None           # the annotator's rows: a joke with both of its prompts
        out += row_tasks(pid, lang, headline, words, get("prompt_type"), annotated, where)
    return out


# ---------------------------------------------------------------- selection

def _select(loaders: dict, user_loader, sources: list, data_dir, langs, max_rows_per_source, seed, kind: str) -> list:
    """Rows of named sources (loaders) and of user files (user_loader), in the given languages."""
    unknown = [s for s in sources if not (isinstance(s, str) and s in loaders) and not is_user_source(s)]
    if unknown:
        raise ValueError(f"unknown {kind} source(s) {unknown}; valid: {sorted(loaders)}, a file (.jsonl, .json, .csv, "
                         f".tsv, .parquet), a datasets folder or hub name, or {{path: ..., columns: {{...}}}}")
    bad_langs = [lang for lang in langs if lang not in LANGS]
    if bad_langs:
        raise ValueError(f"unknown language(s) {bad_langs}; valid: {LANGS}")
    rows = []
    for source in sources:
        if isinstance(source, str) and source in loaders:
            if source not in SHIPPED_SOURCES and data_dir is None:
                raise ValueError(f"{kind} source '{source}' needs --data_dir (the directory holding the real data sets)")
            found = loaders[source](Path(data_dir) if data_dir else None)
        else:
            found = user_loader(parse_source(source, kind))
        read = len(found)
        found = [r for r in found if r.lang in langs]
        if max_rows_per_source is not None and len(found) > max_rows_per_source:
            found = random.Random(seed).sample(found, max_rows_per_source)
        if not found and len(sources) > 1:
            print(f"[data] warning: {kind} source {source!r} gave no rows ({read} read, none in languages {list(langs)})")
        rows += found
    if not rows:
        raise ValueError(f"no {kind} rows in sources {sources} for languages {langs}")
    return rows


def load_labeled(sources, data_dir=None, langs=LANGS, max_rows_per_source=None, seed=0) -> list[LabeledText]:
    return _select(LABELED_SOURCES, read_user_labeled, sources, data_dir, langs, max_rows_per_source, seed, "labeled")


def load_prompts(sources, data_dir=None, langs=LANGS, max_rows_per_source=None, seed=0) -> list[TaskPrompt]:
    """Task prompts of every source; an id two sources share is refused (the held-out split goes by id)."""
    prompts = _select(PROMPT_SOURCES, read_user_prompts, sources, data_dir, langs, max_rows_per_source, seed, "prompt")
    ids = [p.id for p in prompts]
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if repeated:
        raise ValueError(f"prompt sources {sources}: id(s) {repeated[:5]} occur more than once across the sources; "
                         f"ids must be unique (rename one source's ids)")
    return prompts


def split_prompts(prompts: list[TaskPrompt], n_eval: int, seed: int) -> tuple[list[TaskPrompt], list[TaskPrompt]]:
    """(train, held-out): a seeded shuffle, the held-out share keeping both prompt types when it can."""
    shuffled = random.Random(seed).sample(prompts, len(prompts))
    by_type = {t: [p for p in shuffled if p.prompt_type == t] for t in ("words", "headline")}
    held = []
    while len(held) < min(n_eval, len(prompts) - 1):
        for t in ("words", "headline"):
            if by_type[t] and len(held) < n_eval:
                held.append(by_type[t].pop(0))
    held_ids = {p.id for p in held}
    return [p for p in shuffled if p.id not in held_ids], held


def rl_prompt_split(cfg, balance: bool = False) -> tuple[list[TaskPrompt], list[TaskPrompt]]:
    """(training prompts, held-out prompts) of a run: its prompt sources, languages and seed, the same split in every
    stage (RL trains on the first share; evaluation samples the second). balance: repeat the rarer prompt type."""
    train, held_out = split_prompts(load_prompts(cfg.prompt_sources, cfg.data_dir, cfg.langs, cfg.max_rows_per_source,
                                                 cfg.seed), cfg.eval_prompts, cfg.seed)
    return (balance_prompt_types(train, cfg.seed) if balance else train), held_out


def prompt_counts(tasks: list[TaskPrompt]) -> dict[str, int]:
    """How many prompts of each type, and in total (for dry runs and reports).

    >>> prompt_counts([TaskPrompt("a", "en", "words", words=("x", "y")), TaskPrompt("b", "en", "headline", headline="h")])
    {'total': 2, 'headline': 1, 'words': 1}
    """
    counts: dict[str, int] = {"total": len(tasks)}
    for t in sorted({t.prompt_type for t in tasks}):
        counts[t] = sum(p.prompt_type == t for p in tasks)
    return counts


def prompt_plan(cfg) -> dict:
    """What a run's prompt sources give, for a dry run: distinct training and held-out prompts per type."""
    train, held_out = rl_prompt_split(cfg)
    return {"prompt_sources": cfg.prompt_sources, "prompts": len(train) + len(held_out),
            "train_prompts": prompt_counts(train), "held_out_prompts": prompt_counts(held_out)}


def balance_prompt_types(prompts: list[TaskPrompt], seed: int) -> list[TaskPrompt]:
    """Repeat the rarer prompt types until every type is as common as the most common one (seeded order).

    MWAHAHA's English dev set holds 100 word prompts in 1,200: drawn as they come, most RL steps would never see
    the constraint the coverage reward teaches.

    >>> ps = [TaskPrompt(f"h{i}", "en", "headline", headline="x") for i in range(4)] + [TaskPrompt("w", "en", "words", words=("a", "b"))]
    >>> sorted(p.id for p in balance_prompt_types(ps, 0))
    ['h0', 'h1', 'h2', 'h3', 'w', 'w', 'w', 'w']
    """
    by_type: dict[str, list[TaskPrompt]] = {}
    for p in prompts:
        by_type.setdefault(p.prompt_type, []).append(p)
    target = max((len(v) for v in by_type.values()), default=0)
    out = [p for group in by_type.values() for p in (group * (target // len(group) + 1))[:target]]
    return random.Random(seed).sample(out, len(out))


def load_headline_demonstrations(langs=LANGS) -> list[Demonstration]:
    """Hand-written (headline, joke) pairs shipped with the sample set."""
    path = SAMPLE_DIR / "headline_jokes.tsv"
    out = []
    for line, row in _rows(path, "\t", csv.QUOTE_NONE, required=("lang", "headline", "joke")):
        if row["lang"] in langs:
            task = TaskPrompt(f"sample_headline:{line}", row["lang"], "headline",
                              headline=_text(row["headline"], path, line, "headline"))
            out.append(Demonstration(task, _text(row["joke"], path, line, "joke")))
    return out


def sample_texts() -> list[str]:
    """Every text of the sample set: the corpus of the tiny test tokenizers."""
    texts = [r.text for r in load_sample_labeled()]
    texts += [p.headline or " ".join(p.words) for p in load_sample_prompts()]
    texts += [d.joke for d in load_headline_demonstrations()]
    return texts
