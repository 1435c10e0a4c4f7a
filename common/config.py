"""Config loading: one YAML preset for the whole pipeline, one dataclass per stage, command-line overrides.

A preset looks like

    run_name: tiny              # shared keys: used by every stage whose config has that field
    policy_model: tiny:llama
    sft:                        # a stage section: keys for that stage only
      max_steps: 20

A stage reads the shared keys its dataclass knows, then its own section, then `--field value` overrides from the
command line (values are parsed as YAML: `--max_steps 3`, `--lora_target_modules '[q_proj, v_proj]'`; a boolean
alone means true: `--dry_run`). A stage on a TRL / transformers trainer also takes every field of that trainer's
config under its own name (`--gradient_accumulation_steps 2`, `report_to: [wandb]`), kept in `trainer_args`.
A key no stage knows, or a section key its stage does not know, is an error; so is an unknown flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

import yaml

from common.stage_configs import check_ranges
from common.stages import SECTION_PARENTS, SECTIONS


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


def trainer_fields(cls) -> set[str]:
    """The fields of the TRL / transformers config a stage's trainer takes (none for stages with their own loop)."""
    trainer = getattr(cls, "trainer_config", None)
    return {f.name for f in dataclasses.fields(trainer)} if trainer else set()


def read_preset(path: str | Path, stage: str, cls) -> tuple[dict, dict]:
    """(our fields, TRL settings) a preset gives one stage: shared keys its dataclass (or its trainer's config)
    knows, then its parent's section (SECTION_PARENTS), then its own."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: top level must be a mapping of config keys")
    known_anywhere = {f.name for c in SECTIONS.values() for f in dataclasses.fields(c)}  # typos vs other stages' keys
    known_anywhere |= {name for c in SECTIONS.values() for name in trainer_fields(c)}
    fields, trainer = _field_types(cls), trainer_fields(cls)
    values, trainer_values = {}, {}
    for key, value in raw.items():
        if key in SECTIONS:
            continue
        if key not in known_anywhere:
            raise ValueError(f"{path}: unknown key '{key}' (no stage config or trainer config has this field)")
        if key in fields:
            values[key] = value
        elif key in trainer:
            trainer_values[key] = value
    parent = [SECTION_PARENTS[stage]] if stage in SECTION_PARENTS else []
    for name in parent + [stage]:                     # the parent's section, then its own
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"{path}: section '{name}' must be a mapping")
        for key, value in section.items():
            if key in fields:
                values[key] = value
            elif key in trainer:
                trainer_values[key] = value
            else:
                raise ValueError(f"{path}: unknown key '{key}' in section '{name}'; valid: {sorted(fields)}"
                                 + (f" or any field of {cls.trainer_config.__name__}" if trainer else ""))
    for section_name in raw:
        if section_name in SECTIONS and not isinstance(raw[section_name] or {}, dict):
            raise ValueError(f"{path}: section '{section_name}' must be a mapping")
    return values, trainer_values


def _flag_pairs(flags: list[str]) -> list[tuple[str, str]]:
    """`--name value`, `--name=value` and bare `--name` (true) -> [(name, value text)]."""
    pairs, i = [], 0
    while i < len(flags):
        if not flags[i].startswith("--"):
            raise SystemExit(f"error: expected --name value, got {flags[i]!r}; see --help")
        name, eq, text = flags[i][2:].partition("=")
        if not eq:
            has_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
            text, i = (flags[i + 1], i + 1) if has_value else ("true", i)      # a bare flag means true
        pairs.append((name, text))
        i += 1
    return pairs


def _flag_values(flags: list[str], allowed: set[str], cls) -> dict:
    """The TRL settings argparse left over -> {name: YAML value}; any other flag is an error."""
    out = {}
    for name, text in _flag_pairs(flags):
        if name not in allowed:
            trainer = f" nor of {cls.trainer_config.__name__}" if allowed else ""
            raise SystemExit(f"error: unknown flag --{name} (not a field of {cls.__name__}{trainer}); see --help")
        out[name] = yaml.safe_load(text)
    return out


def parse_config(cls, stage: str, argv: list[str] | None = None, own: argparse.ArgumentParser | None = None):
    """Build `cls` from `--config FILE` (optional) plus `--field value` overrides. A stage that runs on a TRL or
    transformers trainer (cls.trainer_config) also takes every field of that config under its own name; our short
    names for some of them (cls.trainer_aliases: --batch_size for --per_device_train_batch_size, ...) stay, and
    giving both with different values is an error. Booleans work as bare flags (--dry_run). `own`: a tool's own
    flags (add_help=False parser), listed by --help with the config's and otherwise left to the tool."""
    fields = _field_types(cls)
    parser = argparse.ArgumentParser(prog=stage, description=(cls.__doc__ or "").strip().splitlines()[0],
                                     epilog=_trainer_epilog(cls), parents=[own] if own else [])
    parser.add_argument("--config", help="YAML preset (configs/*.yaml)")
    for f in dataclasses.fields(cls):
        if f.init:
            bare = {"nargs": "?", "const": "true"} if _is_bool(fields[f.name]) else {}
            allowed = f.metadata.get("range")
            text = f.metadata.get("help", "") + (f" (must be {allowed})" if allowed else "")
            # argparse %-formats help: a literal % ("95 % intervals") would break --help
            parser.add_argument(f"--{f.name}", default=argparse.SUPPRESS, help=text.replace("%", "%%"), **bare)
    args, rest = parser.parse_known_args(argv)
    args = {k: v for k, v in vars(args).items() if k in fields or k == "config"}     # the rest is the tool's
    config_path = args.pop("config", None)
    preset, preset_trainer = read_preset(config_path, stage, cls) if config_path else ({}, {})
    flags = {key: text if fields[key] in (str, str | None, typing.Optional[str]) else yaml.safe_load(text)
             for key, text in args.items()}
    flag_trainer = _flag_values(rest, trainer_fields(cls), cls)
    # each level (preset, command line) resolves its aliases on its own; the command line then wins
    values, trainer_values = _resolve_aliases(cls, preset, preset_trainer, config_path or "")
    command_values, command_trainer = _resolve_aliases(cls, flags, flag_trainer, "command line")
    values.update(command_values)
    trainer_values.update(command_trainer)
    where = config_path or "command line"
    if trainer_values:
        own_fields = set(trainer_values) & set(fields)
        if own_fields:
            raise ValueError(f"{where}: {sorted(own_fields)} are fields of {cls.__name__}: set them directly")
        values["trainer_args"] = {**(values.get("trainer_args") or {}), **trainer_values}
    values = {k: _check_type(k, v, fields[k], where) for k, v in values.items()}
    config = cls(**values)
    check_ranges(config)
    config.config_file = config_path
    return config


def _resolve_aliases(cls, values: dict, trainer_values: dict, where: str) -> tuple[dict, dict]:
    """Move TRL names that have a short name of ours (cls.trainer_aliases) into our field; both given with
    different values at the same level is an error."""
    values, trainer_values = dict(values), dict(trainer_values)
    for trl_name, ours in getattr(cls, "trainer_aliases", {}).items():
        if trl_name in trainer_values:
            value = trainer_values.pop(trl_name)
            if ours in values and values[ours] != value:
                raise ValueError(f"{where}: '{ours}' ({values[ours]!r}) and its TRL name '{trl_name}' ({value!r}) "
                                 f"disagree; give one of them")
            values[ours] = value
    return values, trainer_values


def _is_bool(hint) -> bool:
    return hint is bool or (typing.get_origin(hint) in (typing.Union, types.UnionType)
                            and set(typing.get_args(hint)) == {bool, type(None)})


def _trainer_epilog(cls) -> str | None:
    trainer = getattr(cls, "trainer_config", None)
    if trainer is None:
        return None
    aliases = ", ".join(f"--{ours} = --{trl}" for trl, ours in getattr(cls, "trainer_aliases", {}).items())
    return (f"Every field of {trainer.__module__.split('.')[0]}'s {trainer.__name__} is also accepted under its own "
            f"name (--gradient_accumulation_steps 2, --report_to wandb, --lr_scheduler_type cosine, ...), on the "
            f"command line or in the preset. Short names kept: {aliases}.")


def overlay_preset(path: str | Path | None, flags: list[str]) -> dict:
    """A preset with command-line flags laid over it for a whole pipeline (run.sh): each `--key value` becomes a
    shared top-level key and replaces that key in every stage section, so each stage takes the flags it knows and
    ignores the others, as with a preset's shared keys. Unknown keys fail when a stage reads the result."""
    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {} if path else {}
    for key, text in _flag_pairs(flags):
        value = yaml.safe_load(text)
        raw[key] = value
        for section in SECTIONS:
            if isinstance(raw.get(section), dict) and key in raw[section]:
                raw[section][key] = value
    return raw


def to_dict(config) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
