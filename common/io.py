"""Files that are either complete or absent: atomic text and folder writes, JSONL rows with located errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from data.files import jsonl_rows


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_atomically(directory: Path, save_fn) -> None:
    """save_fn(tmp_dir) writes a model folder; it becomes `directory` only once complete."""
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_fn(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path, required: tuple[str, ...] = ("id", "text", "lang")) -> list[dict]:
    """Rows of a JSONL file; a line that is not JSON or lacks a required field is an error naming file and line."""
    rows = []
    for where, row in jsonl_rows(Path(path)):
        missing = [key for key in required if key not in row]
        if missing:
            raise ValueError(f"{where}: row has no '{missing[0]}' field")
        rows.append(row)
    return rows
