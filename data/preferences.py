"""Preference data for DPO / DPOP / PGCL: where pairs come from, and their file formats.

An example is a prompt and its completions ranked best first: (chosen, rejected) for DPO and DPOP, (gold, y*,
fail) for PGCL's second stage. Sources:
- Humicroedit task-2: human judgements of which of two edits of the same headline is funnier (ties dropped);
  prompt = the original headline, completions = the edited headlines;
- the policy's own samples: N per prompt, scored by the composite reward and the structure check (the required
  word(s) present): the best structure-ok sample against the worst;
- puns (ChinesePun, Pun2Pun) with the seed's homographic / homophonic prompts: the gold pun against the policy's
  own samples, failing the structure check (stage 1) or passing it (y*, stage 2).
Files: TRL (standard and conversational), ms-swift (`messages` + `rejected_response`) and LLaMA-Factory
(ShareGPT `conversations` or alpaca `instruction`, with `chosen` / `rejected`, `system`, `history`) rows are read,
as JSONL or a JSON array; ms-swift and LLaMA-Factory JSONL are written. A system prompt and earlier turns are
kept as the example's context. A third completion travels as `gold_response` / `gold` in our own extension.
People's side-by-side votes ({prompt or theme, a, b, winner: a | b | tie | none}, the shape arenas publish) are
read too: decisive votes become pairs, ties and 'none' are counted and kept for the arena's judge check.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from data.files import check_length, decode_file, parse_source, read_records
from data.loaders import SAMPLE_DIR, TaskPrompt, _rows, _text
from data.prompts import prompt_text
from data.text import contains_word, detect_lang, repeated_ngram_share


@dataclass(frozen=True)
class PreferenceExample:
    task: TaskPrompt              # what is asked (prompt_text(task) is the instruction)
    completions: tuple[str, ...]  # best first
    source: str
    context: tuple[dict, ...] = ()   # {role, content} turns before the instruction: system prompt, history


# ---------------------------------------------------------------- Humicroedit task-2

def _edited(headline: str, edit: str | None, path: Path, line: int) -> str:
    """'Last <Astronaut/> on the Moon' -> with the marked word replaced by `edit` (or kept when edit is None)."""
    match = re.search(r"<([^<>]+)/>", headline)
    if match is None:
        raise ValueError(f"{path}:{line}: headline has no <word/> mark: {headline[:80]!r}")
    return re.sub(r"\s+", " ", headline.replace(match.group(0), edit if edit is not None else match.group(1))).strip()


def read_humicroedit_pairs(path: Path, min_grade_gap: float = 0.0) -> list[PreferenceExample]:
    """Task-2 rows: id, original1, edit1, meanGrade1, original2, edit2, meanGrade2, label (1 or 2 funnier, 0 tie)."""
    out = []
    for line, row in _rows(path, required=("id", "original1", "edit1", "meanGrade1", "original2", "edit2",
                                           "meanGrade2", "label")):
        label = row["label"].strip()
        if label not in ("0", "1", "2"):
            raise ValueError(f"{path}:{line}: label must be 0, 1 or 2, got {row['label']!r}")
        try:
            gap = abs(float(row["meanGrade1"]) - float(row["meanGrade2"]))
        except ValueError:
            raise ValueError(f"{path}:{line}: meanGrade1/meanGrade2 must be numbers") from None
        if label == "0" or gap < min_grade_gap:
            continue
        first = _edited(_text(row["original1"], path, line, "original1"), row["edit1"], path, line)
        second = _edited(_text(row["original2"], path, line, "original2"), row["edit2"], path, line)
        original = _edited(row["original1"], None, path, line)
        chosen, rejected = (first, second) if label == "1" else (second, first)
        task = TaskPrompt(f"humicroedit:{row['id']}", "en", "headline", headline=original.strip('" '))
        out.append(PreferenceExample(task, (chosen.strip('" '), rejected.strip('" ')), "humicroedit"))
    return out


def load_humicroedit(data_dir: Path | None, min_grade_gap: float = 0.0, split: str = "train") -> list[PreferenceExample]:
    """Task-2 human pairs: 'train', 'train_funlines' or 'dev' with --data_dir; the shipped sample without (for tests
    and demos)."""
    if data_dir is None:
        return read_humicroedit_pairs(SAMPLE_DIR / "humicroedit_pairs.csv", min_grade_gap)
    return read_humicroedit_pairs(Path(data_dir) / "humicroedit" / "task-2" / f"{split}.csv", min_grade_gap)


# ---------------------------------------------------------------- puns

@dataclass(frozen=True)
class Pun:
    id: str
    lang: str
    kind: str                 # homographic | homophonic
    text: str
    pun_word: str
    alternative: str | None   # the same-sounding word a homophonic pun plays on

    def task(self) -> TaskPrompt:
        words = (self.pun_word,) if self.kind == "homographic" else (self.pun_word, self.alternative or self.pun_word)
        return TaskPrompt(self.id, self.lang, self.kind, words=words)


def read_chinesepun(path: Path) -> list[Pun]:
    """ChinesePun.json: {"homographic": [{id, content, key_words: {pun_words, alternative_words?}}], "homophonic": [...]}
    (an item may name its "lang"; the default is zh)."""
    try:
        data = json.loads(decode_file(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None
    out = []
    for kind in ("homographic", "homophonic"):
        for i, item in enumerate(data.get(kind, [])):
            where = f"{path}: {kind}[{i}]"
            words = (item.get("key_words") or {}).get("pun_words") or []
            if not item.get("content") or not words:
                raise ValueError(f"{where}: needs 'content' and key_words.pun_words")
            alternatives = item["key_words"].get("alternative_words") or [None]
            out.append(Pun(f"{path.stem}:{kind}:{item.get('id', i)}", item.get("lang", "zh"), kind, item["content"].strip(), words[0],
                           alternatives[0]))
    return out


def read_pun2pun(directory: Path, lang: str) -> list[Pun]:
    """Pun2Pun: <lang>/{graphic,phonic}.json ([{index, sentence}]) + <lang>_{graphic,phonic}_pun.jsonl
    ({index, pun}: 'pun' or 'pun/alternative'). Sentences without a pun word are skipped."""
    out = []
    for kind, name in (("homographic", "graphic"), ("homophonic", "phonic")):
        sentences_path = directory / lang / f"{name}.json"
        sentences = {item["index"]: item["sentence"] for item in json.loads(decode_file(sentences_path))}
        words_path = directory / lang / f"{lang}_{name}_pun.jsonl"
        for line_no, line in enumerate(decode_file(words_path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{words_path}:{line_no}: not JSON ({e.msg})") from None
            if item.get("index") not in sentences or not item.get("pun"):
                continue
            pun, _, alternative = str(item["pun"]).partition("/")
            out.append(Pun(f"pun2pun:{lang}:{name}:{item['index']}", lang, kind, sentences[item["index"]].strip(),
                           pun.strip(), alternative.strip() or None))
    return out


def load_puns(sources: list[str], data_dir: Path | None, langs) -> list[Pun]:
    """Puns of the given sources ('sample', 'chinesepun', 'pun2pun') in the given languages."""
    puns = []
    for source in sources:
        if source == "sample":
            puns += read_chinesepun(SAMPLE_DIR / "puns.json")
        elif source == "chinesepun":
            puns += read_chinesepun(Path(data_dir) / "chinesepun" / "ChinesePun.json")
        elif source == "pun2pun":
            puns += [p for lang in ("zh", "en") for p in read_pun2pun(Path(data_dir) / "pun2pun", lang)]
        else:
            raise ValueError(f"unknown pun source {source!r}; valid: sample, chinesepun, pun2pun")
    return [p for p in puns if p.lang in langs]


def structure_ok(text: str, task: TaskPrompt) -> bool:
    """The structure check: a words prompt needs both words, a pun prompt its pun word (the written side of a
    homophonic pun; the alternative is what it sounds like). Headline prompts have no structure to check.

    >>> structure_ok("The cactus sued.", TaskPrompt("x", "en", "words", words=("cactus", "lawsuit")))
    False
    >>> structure_ok("我要唱宫的歌", TaskPrompt("x", "zh", "homophonic", words=("宫", "公")))
    True
    """
    if task.prompt_type == "words":
        return all(contains_word(text, w, task.lang) for w in task.words)
    if task.prompt_type in ("homographic", "homophonic"):
        return contains_word(text, task.words[0], task.lang)
    return True


def pun_ok(text: str, task: TaskPrompt, max_repetition: float, ngram: int) -> bool:
    """A pun sample that passes: the pun word is there and the text is not one phrase repeated (a small policy
    learns to satisfy the word check with '庙庙庙庙...'; such a sample counts as a failure). max_repetition and
    ngram are the config's repetition_threshold and repetition_ngram.

    >>> t = TaskPrompt("x", "zh", "homographic", words=("庙",))
    >>> pun_ok("今夜庙庙庙庙庙庙庙庙庙庙庙庙庙庙", t, 0.2, 3), pun_ok("和尚说庙里的猫最会念经", t, 0.2, 3)
    (False, True)
    """
    return structure_ok(text, task) and repeated_ngram_share(text, task.lang, ngram) <= max_repetition


# ---------------------------------------------------------------- pairs from the policy's own samples

def pairs_from_samples(tasks: dict[str, TaskPrompt], rows: list[dict], min_score_gap: float) -> list[PreferenceExample]:
    """rows: rl/rollouts.generate_rows rows (id, text, total). Per prompt: the highest-scoring structure-ok sample is chosen,
    the lowest-scoring one (a structure failure when there is one) rejected; pairs closer than min_score_gap are
    dropped as noise."""
    by_id: dict[str, list[dict]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r)
    out = []
    for pid, group in by_id.items():
        task = tasks[pid]
        ok = [r for r in group if structure_ok(r["text"], task) and r["text"]]
        if not ok:
            continue
        chosen = max(ok, key=lambda r: r["total"])
        failing = [r for r in group if not structure_ok(r["text"], task)]
        rejected = min(failing or [r for r in group if r is not chosen] or [chosen], key=lambda r: r["total"])
        if rejected is chosen or (not failing and chosen["total"] - rejected["total"] < min_score_gap):
            continue
        out.append(PreferenceExample(task, (chosen["text"], rejected["text"]), "self"))
    return out


def pun_examples(puns: list[Pun], rows: list[dict], three_way: bool, max_repetition: float, ngram: int,
                 rm_scores: dict | None = None) -> list[PreferenceExample]:
    """PGCL data from the policy's samples of each pun prompt (rows: id, text); `pun_ok` is the structure check
    (max_repetition, ngram: its thresholds).
    Stage 1 (three_way False): (gold, a sample failing the check).
    Stage 2 (three_way True): (gold, y* = a sample passing it, the weakest by the RM when rm_scores (text ->
    P(humor)) is given, fail = a sample failing it). Prompts lacking a needed sample are skipped."""
    by_id: dict[str, list[str]] = {}
    for r in rows:
        by_id.setdefault(r["id"], []).append(r["text"])
    out = []
    for pun in puns:
        task = pun.task()
        samples = by_id.get(pun.id, [])
        failing = [t for t in samples if not pun_ok(t, task, max_repetition, ngram)]
        ok = [t for t in samples if pun_ok(t, task, max_repetition, ngram) and t.strip()]
        if not failing or (three_way and not ok):
            continue
        if not three_way:
            out.append(PreferenceExample(task, (pun.text, failing[0]), "pun-structure"))
            continue
        weak = min(ok, key=lambda t: rm_scores.get(t, 0.0)) if rm_scores else ok[0]
        out.append(PreferenceExample(task, (pun.text, weak, failing[0]), "pun-humor"))
    return out


# ---------------------------------------------------------------- files: the ecosystem's preference formats

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
         "observation": "user", "function_call": "assistant", "tool": "user"}


def _content(message, where: str, field_name: str) -> str:
    """The text of a message: a string, or a {role, content} / {from, value} dict."""
    if isinstance(message, str):
        return check_length(message, where, field_name)
    if isinstance(message, dict):
        for key in ("content", "value"):
            if isinstance(message.get(key), str):
                return check_length(message[key], where, field_name)
    raise ValueError(f"{where}: '{field_name}' must be a string or a message with 'content' (or 'value'), got {message!r}")


def _messages(turns, where: str, field_name: str) -> list[dict]:
    """A list of {role, content} or ShareGPT {from, value} turns -> [{role, content}] with standard roles."""
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where}: '{field_name}' must be a non-empty list of messages, got {turns!r}")
    out = []
    for i, turn in enumerate(turns):
        role = turn.get("role", turn.get("from")) if isinstance(turn, dict) else None
        if role not in ROLES:
            raise ValueError(f"{where}: {field_name}[{i}] needs a role (user/assistant/system or human/gpt), got {turn!r}")
        out.append({"role": ROLES[role], "content": _content(turn, where, f"{field_name}[{i}]")})
    return out


def _split_last_user(messages: list[dict], where: str) -> tuple[list[dict], str]:
    """(everything before the last user turn: system and history, the last user turn's text)."""
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise ValueError(f"{where}: the conversation has no user turn")
    return messages[:users[-1]], messages[users[-1]]["content"]


def parse_preference_row(row: dict, where: str) -> tuple[list[dict], str, str, str, str | None]:
    """(context = system + earlier turns, prompt = the last user turn, chosen, rejected, gold or None) from a row
    in any of these shapes, detected by its keys:
      ms-swift             messages [..., user, assistant] + rejected_response (+ gold_response, ours)
      LLaMA-Factory        conversations [{from, value}] + chosen + rejected (+ system, + gold, ours)
      LLaMA-Factory alpaca instruction (+ input) + chosen + rejected (+ system, history [[q, a], ...])
      TRL standard         prompt + chosen + rejected, strings
      TRL conversational   prompt [messages] + chosen [assistant] + rejected [assistant]; or, prompt implicit,
                           chosen and rejected as whole conversations sharing everything but the last turn."""
    gold = None
    if "messages" in row:
        if "rejected_response" not in row:
            raise ValueError(f"{where}: ms-swift rows need 'rejected_response' beside 'messages'")
        messages = _messages(row["messages"], where, "messages")
        if messages[-1]["role"] != "assistant":
            raise ValueError(f"{where}: ms-swift 'messages' must end with the assistant's (chosen) answer")
        context, prompt = _split_last_user(messages[:-1], where)
        chosen, rejected = messages[-1]["content"], _content(row["rejected_response"], where, "rejected_response")
        gold = row.get("gold_response")
    elif "conversations" in row:
        for key in ("chosen", "rejected"):
            if key not in row:
                raise ValueError(f"{where}: LLaMA-Factory rows need 'chosen' and 'rejected' beside 'conversations'")
        context, prompt = _split_last_user(_messages(row["conversations"], where, "conversations"), where)
        chosen, rejected = _content(row["chosen"], where, "chosen"), _content(row["rejected"], where, "rejected")
        gold = _content(row["gold"], where, "gold") if row.get("gold") is not None else None
        if row.get("system"):
            context = [{"role": "system", "content": str(row["system"])}, *context]
    elif "instruction" in row:
        prompt = check_length("\n".join(str(row[k]) for k in ("instruction", "input") if row.get(k)), where, "instruction")
        context = [{"role": "system", "content": str(row["system"])}] if row.get("system") else []
        for i, pair in enumerate(row.get("history") or []):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"{where}: history[{i}] must be a [question, answer] pair, got {pair!r}")
            context += [{"role": "user", "content": _content(str(pair[0]), where, f"history[{i}]")},
                        {"role": "assistant", "content": _content(str(pair[1]), where, f"history[{i}]")}]
        chosen, rejected = _content(row.get("chosen"), where, "chosen"), _content(row.get("rejected"), where, "rejected")
    elif "chosen" in row and "rejected" in row:
        if isinstance(row.get("prompt"), str):
            context, prompt = [], row["prompt"]
        elif isinstance(row.get("prompt"), list):
            context, prompt = _split_last_user(_messages(row["prompt"], where, "prompt"), where)
        elif "prompt" in row:
            raise ValueError(f"{where}: 'prompt' must be a string or a list of messages, got {row['prompt']!r}")
        else:        # implicit prompt: the shared conversation before the last turn
            full = _messages(row["chosen"], where, "chosen")
            context, prompt = _split_last_user(full[:-1], where)
            row = {**row, "chosen": full[-1:], "rejected": _messages(row["rejected"], where, "rejected")[-1:]}
        answer = lambda value, key: _content(value[-1] if isinstance(value, list) and value else value, where, key)
        chosen, rejected = answer(row["chosen"], "chosen"), answer(row["rejected"], "rejected")
    else:
        raise ValueError(f"{where}: not a preference row: expected TRL (prompt, chosen, rejected), ms-swift "
                         f"(messages, rejected_response) or LLaMA-Factory (conversations or instruction, chosen, "
                         f"rejected) keys; the row has {sorted(row)}")
    if not chosen.strip() or not rejected.strip():
        raise ValueError(f"{where}: empty chosen or rejected completion")
    if chosen.strip() == rejected.strip():
        raise ValueError(f"{where}: chosen and rejected are the same text: no preference to learn")
    return context, prompt, chosen, rejected, gold


def read_preferences(source) -> list[PreferenceExample]:
    """Preference examples from a file (.jsonl, .json array, .parquet, ...; see data/files.py) in the shapes of
    parse_preference_row. Rows written by write_preferences also carry the task (id, lang, prompt_type,
    words/headline); others become 'raw' tasks whose instruction is the last user turn, with the system prompt and
    earlier turns kept as context, and a language from a 'lang' column or detected from the text."""
    spec = parse_source(source, "preference")
    out, votes = [], []
    for where, row in read_records(spec):
        if is_vote_row(row) or "winner" in spec.columns:          # a side-by-side vote: its decisive winner is chosen
            vote = parse_vote(row, spec.columns, where, spec.lang)
            votes.append(vote)
            if vote.winner in ("a", "b") and vote.a != vote.b:
                task = TaskPrompt(where, vote.lang, "raw", headline=vote.prompt)
                out.append(PreferenceExample(task, vote.ranked(), spec.name))
            continue
        row = {**row, **{ours: row[theirs] for ours, theirs in spec.columns.items() if theirs in row}}   # mapping
        context, prompt, chosen, rejected, gold = parse_preference_row(row, where)
        completions = (gold, chosen, rejected) if gold else (chosen, rejected)
        # the instruction's language is the row's (a Chinese question may be answered with English code)
        lang = row.get("lang") or spec.lang or detect_lang(prompt if re.search(r"[^\W\d_]", prompt) else chosen)
        if "prompt_type" in row:
            words = tuple(row["words"]) if row.get("words") else None
            task = TaskPrompt(row.get("id", where), lang, row["prompt_type"], headline=row.get("headline"), words=words)
        else:
            task = TaskPrompt(str(row.get("id", where)), lang, "raw", headline=prompt)
        out.append(PreferenceExample(task, completions, spec.name, tuple(context)))
    if votes:
        counts = vote_counts(votes)
        print(f"[preferences] {spec.path}: {len(votes)} side-by-side votes ({counts}); {len(out)} decisive pairs "
              f"used, {counts['tie'] + counts['none']} ties / 'none' not trained on (the arena's --votes check reads "
              f"them), {counts['a'] + counts['b'] - len(out)} with two identical jokes dropped")
    return out


# ---------------------------------------------------------------- people's side-by-side votes

# a vote's winner as people's arenas publish it -> ours: 'a', 'b', 'tie' (both as funny) or 'none' (neither)
# (bare numbers are refused: 0 / 1 mean a / b in one file and tie / a in another)
VOTE_WINNERS = {"a": "a", "model_a": "a", "joke_a": "a", "first": "a",
                "b": "b", "model_b": "b", "joke_b": "b", "second": "b",
                "tie": "tie", "both": "tie", "both_good": "tie", "equal": "tie",
                "none": "none", "neither": "none", "both_bad": "none", "tie (bothbad)": "none"}
# our column -> the names a file may use for it, tried in order (a `columns` mapping overrides them)
VOTE_COLUMNS = {"prompt": ("prompt", "theme", "headline", "instruction", "question", "topic"),
                "a": ("a", "joke_a", "response_a", "text_a", "joke1"),
                "b": ("b", "joke_b", "response_b", "text_b", "joke2"),
                "winner": ("winner", "label", "choice", "preference")}


@dataclass(frozen=True)
class Vote:
    """One person's side-by-side choice between two jokes written for the same prompt (or theme)."""
    prompt: str
    a: str
    b: str
    winner: str          # 'a', 'b', 'tie' (both as funny) or 'none' (neither funny)
    lang: str
    where: str           # file:line, for errors and for reading back

    def ranked(self) -> tuple[str, str]:
        """(funnier, other) of a decisive vote."""
        return (self.a, self.b) if self.winner == "a" else (self.b, self.a)


def is_vote_row(row: dict) -> bool:
    """A side-by-side vote (two jokes and a winner) rather than a chosen / rejected pair."""
    has = lambda ours: any(name in row for name in VOTE_COLUMNS[ours])
    return has("a") and has("b") and has("winner") and "chosen" not in row


def parse_vote(row: dict, columns: dict, where: str, lang: str | None = None) -> Vote:
    """A Vote from one row of an arena-shaped file: {prompt | theme | headline, a, b, winner}."""
    def value(ours: str, required: bool = True) -> str:
        names = (columns[ours],) if ours in columns else VOTE_COLUMNS[ours]
        for name in names:
            if row.get(name) is not None and str(row[name]).strip():
                return check_length(str(row[name]).strip(), where, name)
        if required:
            raise ValueError(f"{where}: no '{ours}' (looked for {list(names)}); the row has {sorted(row)}. "
                             f"Map yours with columns: {{{ours}: <your column>}}")
        return ""
    raw = value("winner")
    winner = VOTE_WINNERS.get(raw.lower())
    if winner is None:
        hint = "; numbers are ambiguous: write a / b / tie / none" if raw.isdigit() else ""
        raise ValueError(f"{where}: winner {raw!r} is not one of {sorted(set(VOTE_WINNERS))}{hint}")
    prompt, a, b = value("prompt", required=False), value("a"), value("b")
    return Vote(prompt, a, b, winner, lang or str(row.get("lang") or "") or detect_lang(prompt + " " + a), where)


def read_votes(source) -> list[Vote]:
    """Every vote of a side-by-side file (.jsonl, .json array, .csv, ...; a path or {path, columns, lang}); ties
    and 'neither' are kept: training uses the decisive votes, the arena's judge check uses them all. A preference
    row in any shape parse_preference_row reads (TRL, ms-swift, LLaMA-Factory) is a decisive vote for its chosen."""
    spec = parse_source(source, "votes")
    votes = []
    for where, row in read_records(spec):
        if is_vote_row(row) or "winner" in spec.columns:
            votes.append(parse_vote(row, spec.columns, where, spec.lang))
            continue
        row = {**row, **{ours: row[theirs] for ours, theirs in spec.columns.items() if theirs in row}}
        _, prompt, chosen, rejected, _ = parse_preference_row(row, where)
        votes.append(Vote(prompt, chosen, rejected, "a", spec.lang or detect_lang(prompt + " " + chosen), where))
    if not votes:
        raise ValueError(f"{spec.path}: no votes in the file")
    return votes


def humicroedit_votes(data_dir: Path | None, split: str = "dev") -> list[Vote]:
    """Humicroedit task-2 as side-by-side votes, ties kept: which of two edits of one headline is funnier (label
    1 or 2; 0 a tie), the original headline as the prompt. The shipped sample without data_dir (tests only)."""
    path = SAMPLE_DIR / "humicroedit_pairs.csv" if data_dir is None else Path(data_dir) / "humicroedit" / "task-2" / f"{split}.csv"
    out = []
    for line, row in _rows(path, required=("id", "original1", "edit1", "original2", "edit2", "label")):
        winner = {"1": "a", "2": "b", "0": "tie"}.get(row["label"].strip())
        if winner is None:
            raise ValueError(f"{path}:{line}: label must be 0, 1 or 2, got {row['label']!r}")
        first = _edited(_text(row["original1"], path, line, "original1"), row["edit1"], path, line).strip('" ')
        second = _edited(_text(row["original2"], path, line, "original2"), row["edit2"], path, line).strip('" ')
        out.append(Vote(_edited(row["original1"], None, path, line).strip('" '), first, second, winner, "en",
                        f"{path}:{line}"))
    return out


def load_votes(source, data_dir: Path | None = None) -> list[Vote]:
    """Votes from a file (read_votes) or by name: 'humicroedit' (task-2 dev, ties kept; needs data_dir: the shipped
    sample is what a reward model trained without data_dir learnt from, no check of it)."""
    if source == "humicroedit":
        if data_dir is None:
            raise ValueError("arena_votes 'humicroedit' needs --data_dir (its task-2 dev file)")
        return humicroedit_votes(data_dir)
    return read_votes(source)


def vote_counts(votes: list[Vote]) -> dict[str, int]:
    """How many votes of each kind.

    >>> vote_counts([Vote("p", "x", "y", "a", "en", "f:1"), Vote("p", "x", "y", "none", "en", "f:2")])
    {'a': 1, 'b': 0, 'tie': 0, 'none': 1}
    """
    return {kind: sum(v.winner == kind for v in votes) for kind in ("a", "b", "tie", "none")}


def to_record(example: PreferenceExample, fmt: str) -> dict:
    """One example as an ms-swift ('swift') or LLaMA-Factory ShareGPT ('llamafactory') row, context included."""
    best, worst = example.completions[0], example.completions[-1]
    prompt, context = example_prompt(example), list(example.context)
    if fmt == "swift":
        record = {"messages": [*context, {"role": "user", "content": prompt}, {"role": "assistant", "content": best}],
                  "rejected_response": worst}
        if len(example.completions) == 3:     # our extension: gold first, y* as the response, fail rejected
            record["messages"][-1]["content"] = example.completions[1]
            record["gold_response"] = best
    elif fmt == "llamafactory":
        system = [m["content"] for m in context if m["role"] == "system"]
        turns = [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]}
                 for m in context if m["role"] != "system"]
        record = {"conversations": [*turns, {"from": "human", "value": prompt}], "chosen": {"from": "gpt", "value": best},
                  "rejected": {"from": "gpt", "value": worst}}
        if system:
            record["system"] = "\n".join(system)
        if len(example.completions) == 3:
            record["chosen"]["value"] = example.completions[1]
            record["gold"] = {"from": "gpt", "value": best}
    else:
        raise ValueError(f"unknown preference format {fmt!r}; valid: swift, llamafactory")
    record.update({"id": example.task.id, "lang": example.task.lang, "prompt_type": example.task.prompt_type})
    if example.task.words:
        record["words"] = list(example.task.words)
    if example.task.headline:
        record["headline"] = example.task.headline
    return record


def write_preferences(path: Path, examples: list[PreferenceExample], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(to_record(ex, fmt), ensure_ascii=False) + "\n")
    tmp.replace(path)


def example_prompt(example: PreferenceExample) -> str:
    """The instruction of an example: the template for known prompt types, the stored user message for raw rows."""
    return example.task.headline if example.task.prompt_type == "raw" else prompt_text(example.task)


def example_messages(example: PreferenceExample) -> list[dict]:
    """The conversation the completions answer: system prompt and earlier turns, then the instruction."""
    return [*example.context, {"role": "user", "content": example_prompt(example)}]
