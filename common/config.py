"""Config loading: one YAML preset for the whole pipeline, one dataclass per stage, command-line overrides.

A preset looks like

    run_name: tiny              # shared keys: used by every stage whose config has that field
    policy_model: tiny:llama
    sft:                        # a stage section: keys for that stage only
      max_steps: 20

A stage reads the shared keys its dataclass knows, then its own section, then `--field value` overrides from the
command line (values are parsed as YAML: `--max_steps 3`, `--lora_target_modules '[q_proj, v_proj]'`).
A key no stage knows, or a section key its stage does not know, is an error; so is an unknown flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from common.stages import SECTIONS


def _field_types(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _check_type(name: str, value, hint, where: str):
    """Coerce YAML scalars to the field's type (int -> float is fine) and reject what cannot be."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else hint
        origin = typing.get_origin(hint)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):   # YAML 1.1 reads '1e-5' (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: '{name}' must be a number, got {value!r}") from None
    if hint is float and not isinstance(value, float):
        raise ValueError(f"{where}: '{name}' must be a number, got {value!r}")
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise ValueError(f"{where}: '{name}' must be {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise ValueError(f"{where}: '{name}' must be int, got {value!r}")
    if origin is list and not isinstance(value, list):
        raise ValueError(f"{where}: '{name}' must be a list, got {value!r}")
    if origin is dict and not isinstance(value, dict):
        raise ValueError(f"{where}: '{name}' must be a mapping, got {value!r}")
    return value


def read_preset(path: str | Path, stage: str, cls) -> dict:
    """The values a preset gives one stage: shared keys its dataclass knows, then its own section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: top level must be a mapping of config keys")
    known_anywhere = {f.name for c in SECTIONS.values() for f in dataclasses.fields(c)}  # typos vs other stages' keys
    fields = _field_types(cls)
    values = {}
    for key, value in raw.items():
        if key in SECTIONS:
            continue
        if key not in known_anywhere:
            raise ValueError(f"{path}: unknown key '{key}' (no stage config has this field)")
        if key in fields:
            values[key] = value
    section = raw.get(stage) or {}
    if not isinstance(section, dict):
        raise ValueError(f"{path}: section '{stage}' must be a mapping")
    for key, value in section.items():
        if key not in fields:
            raise ValueError(f"{path}: unknown key '{key}' in section '{stage}'; valid: {sorted(fields)}")
        values[key] = value
    for section_name in raw:
        if section_name in SECTIONS and not isinstance(raw[section_name] or {}, dict):
            raise ValueError(f"{path}: section '{section_name}' must be a mapping")
    return values


def parse_config(cls, stage: str, argv: list[str] | None = None):
    """Build `cls` from `--config FILE` (optional) plus `--field value` overrides."""
    fields = _field_types(cls)
    parser = argparse.ArgumentParser(prog=stage, description=(cls.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--config", help="YAML preset (configs/*.yaml)")
    for f in dataclasses.fields(cls):
        if f.init:
            parser.add_argument(f"--{f.name}", default=argparse.SUPPRESS, help=f.metadata.get("help", ""))
    args = vars(parser.parse_args(argv))
    config_path = args.pop("config", None)
    values = read_preset(config_path, stage, cls) if config_path else {}
    for key, text in args.items():
        values[key] = text if fields[key] in (str, str | None, typing.Optional[str]) else yaml.safe_load(text)
    where = config_path or "command line"
    values = {k: _check_type(k, v, fields[k], where) for k, v in values.items()}
    config = cls(**values)
    config.config_file = config_path
    return config


def to_dict(config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
