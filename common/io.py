"""Files that are either complete or absent: atomic text and folder writes, JSONL rows with located errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from data.files import decode_file


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
    for line_no, line in enumerate(decode_file(Path(path)).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: not a JSON object ({e.msg})") from None
        for key in required:
            if key not in rows[-1]:
                raise ValueError(f"{path}:{line_no}: row has no '{key}' field")
    return rows
