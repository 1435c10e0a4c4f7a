"""Your own data: rows from a file or a Hugging Face dataset, each with the place it came from, and the column
mapping that turns the file's names into ours.

A source is a named set ('demo', 'colbert', ...), a path, or a mapping for a file whose columns need renaming:

    labeled_sources: [demo, my_jokes.jsonl, {path: jokes.csv, columns: {text: joke, label: is_funny}, lang: en}]

Files: .jsonl, .json (an array of objects), .csv, .tsv, .parquet; a folder written by `datasets.save_to_disk`;
anything else that is not a path is tried as a Hugging Face hub dataset name (needs internet). A row's place is
`file:line` (JSONL, CSV, TSV) or `file[index]` (JSON arrays, parquet, datasets), and every error names it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow.parquet as pq

csv.field_size_limit(sys.maxsize)
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


@dataclass(frozen=True)
class SourceSpec:
    """A user file or dataset and how to read it."""
    path: str
    columns: dict = field(default_factory=dict)   # our column name -> the file's column name
    lang: str | None = None                       # the language of every row (else a 'lang' column, else detected)
    split: str = "train"                          # for datasets with splits
    encoding: str = "utf-8-sig"                   # of a text file (a UTF-8 byte-order mark is skipped)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def column(self, ours: str) -> str:
        return self.columns.get(ours, ours)


def parse_source(source, kind: str) -> SourceSpec:
    """A path or a {path, columns, lang, split} mapping -> SourceSpec; anything else is an error."""
    if isinstance(source, (str, Path)):
        return SourceSpec(str(source))
    if isinstance(source, dict):
        unknown = sorted(set(source) - {"path", "columns", "lang", "split", "encoding"})
        if "path" not in source or unknown:
            raise ValueError(f"{kind} source {source!r}: a mapping needs 'path' and may have columns, lang, split, encoding"
                             + (f" (unknown: {unknown})" if unknown else ""))
        columns = source.get("columns") or {}
        if not isinstance(columns, dict):
            raise ValueError(f"{kind} source {source['path']}: 'columns' must map our names to the file's, got {columns!r}")
        return SourceSpec(str(source["path"]), dict(columns), source.get("lang"), source.get("split", "train"),
                          source.get("encoding", "utf-8-sig"))
    raise ValueError(f"{kind} source {source!r}: give a source name, a file path or a mapping with 'path'")


def is_user_source(source) -> bool:
    """A mapping, an existing path, a name with a data-file suffix, or an 'owner/name' hub id."""
    if isinstance(source, (dict, Path)):
        return True
    return isinstance(source, str) and (Path(source).exists() or source.endswith(FILE_SUFFIXES) or "/" in source)


def read_records(spec: SourceSpec) -> list[tuple[str, dict]]:
    """(place, row) for every row of the file or dataset."""
    path = Path(spec.path)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if spec.split not in loaded:
                raise ValueError(f"{path}: no split {spec.split!r}; it has {sorted(loaded)}")
            loaded = loaded[spec.split]
        return [(f"{path}[{i}]", dict(row)) for i, row in enumerate(loaded)]
    if path.suffix in FILE_SUFFIXES:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
        return _read_file(path, spec.encoding)
    if path.exists():
        raise ValueError(f"{path}: unknown file type; use one of {FILE_SUFFIXES}, or a datasets.save_to_disk folder")
    try:   # a hub dataset name (users with internet)
        loaded = datasets.load_dataset(spec.path, split=spec.split)
    except Exception as e:     # offline, or no such dataset: say which source, not a retry log
        raise ValueError(f"{spec.path}: neither a file nor a dataset folder, and not loadable from the hub "
                         f"({type(e).__name__}: {str(e)[:200]})") from None
    return [(f"{spec.path}[{i}]", dict(row)) for i, row in enumerate(loaded)]


def decode_file(path: Path, encoding: str = "utf-8-sig") -> str:
    """The text of a file (UTF-8 by default, a byte-order mark skipped); bytes the encoding cannot read are one
    error naming the file, the line and the byte."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        line = path.read_bytes()[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not {encoding.removesuffix('-sig').upper()} (byte {e.object[e.start]:#x}); "
                         f"save it as UTF-8, or name its encoding: {{path: {path}, encoding: latin-1}}") from None


def _read_file(path: Path, encoding: str) -> list[tuple[str, dict]]:
    if path.suffix == ".parquet":
        return [(f"{path}[{i}]", row) for i, row in enumerate(pq.read_table(path).to_pylist())]
    if path.suffix == ".jsonl":
        return jsonl_rows(path, encoding)
    text = decode_file(path, encoding)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json data file must hold an array of objects (JSON Lines: use .jsonl)")
        return [(f"{path}[{i}]", _object(row, f"{path}[{i}]")) for i, row in enumerate(data)]
    tsv = path.suffix == ".tsv"      # TSVs go unquoted (MWAHAHA's headlines hold unbalanced '"')
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",",
                            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)   # quoted CSV fields may hold newlines
    header = reader.fieldnames or []
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:        # DictReader would keep the last column of a name and drop the others without a word
        raise ValueError(f"{path}:1: column(s) {repeated} appear more than once in the header {header}")
    out = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row:
            raise ValueError(f"{where}: more fields than the header's {len(reader.fieldnames)} (stray delimiter?)")
        out.append((where, row))
    return out


def jsonl_rows(path: Path, encoding: str = "utf-8-sig") -> list[tuple[str, dict]]:
    """(file:line, object) for every non-blank line of a JSON Lines file; anything else is an error at its line."""
    out = []
    for line_no, line in enumerate(decode_file(Path(path), encoding).splitlines(), 1):
        if line.strip():
            where = f"{path}:{line_no}"
            try:
                out.append((where, _object(json.loads(line), where)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not a JSON object ({e.msg})") from None
    return out


def _object(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: not a JSON object, got {type(row).__name__}")
    return row


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")    # not DEL: real scraped posts hold it (HAHA 2021)
# No joke, prompt or answer in any data set we read comes near this; a field this long is nearly always a quote
# left open that swallowed the rows after it, or a whole document pasted into one cell.
MAX_FIELD_CHARS = 100_000


def check_length(value: str, where: str, column: str) -> str:
    """The text, unless it is longer than MAX_FIELD_CHARS characters: refused with its place rather than
    tokenized for minutes and cut to a few hundred tokens without a word."""
    if len(value) > MAX_FIELD_CHARS:
        raise ValueError(f"{where}: '{column}' is {len(value):,} characters long, above the limit of "
                         f"{MAX_FIELD_CHARS:,} (a quote left open that swallowed the rows after it?)")
    return value


def check_text(value: str, where: str, column: str) -> str:
    """The text, unless it holds a NUL or another control character (tab and newlines are fine): a sign of a
    binary or mis-decoded file, refused with its place; or is longer than MAX_FIELD_CHARS.

    >>> check_text("a\\tb", "f.csv:2", "text")
    'a\\tb'
    """
    check_length(value, where, column)
    bad = CONTROL.search(value)
    if bad:
        raise ValueError(f"{where}: '{column}' holds the control character {bad.group(0)!r} at position "
                         f"{bad.start()}; is the file binary or in another encoding?")
    return value


def field_value(row: dict, spec: SourceSpec, ours: str, where: str, required: bool = True):
    """The row's value for one of our column names, through the mapping; a missing required column names the
    place, the column looked for and the columns the row has."""
    column = spec.column(ours)
    if column not in row or row[column] is None or (isinstance(row[column], str) and not row[column].strip()):
        if not required:
            return None
        mapped = f" (mapped from '{ours}')" if column != ours else ""
        raise ValueError(f"{where}: no value in column '{column}'{mapped}; the row has columns {sorted(row)}. "
                         f"Map yours with columns: {{{ours}: <your column>}}")
    value = row[column]
    return check_text(value.strip(), where, column) if isinstance(value, str) else value
