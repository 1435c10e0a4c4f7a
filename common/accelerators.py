"""GPU-only accelerators behind flags: unsloth (must be imported before trl) and vLLM generation
(TRL's use_vllm). Both refuse a machine without a CUDA GPU with a clear message instead of a deep traceback;
their packages live in requirements-gpu.txt, which CPU installs never touch."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml


def _flag_from_argv(argv: list[str], name: str) -> bool:
    """--name VALUE on the command line, else `name:` in the --config preset (any section), else False."""
    if f"--{name}" in argv:
        return bool(yaml.safe_load(argv[argv.index(f"--{name}") + 1]))
    if "--config" in argv:
        path = Path(argv[argv.index("--config") + 1])
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
        sections = [raw] + [v for v in (raw or {}).values() if isinstance(v, dict)]
        return any(bool(s.get(name)) for s in sections if isinstance(s, dict))
    return False


def require_gpu(flag: str) -> None:
    if not torch.cuda.is_available():
        raise SystemExit(f"{flag}: needs a CUDA GPU and none is visible here (unsloth and vLLM do not run on CPU). "
                         f"Drop --{flag} on this machine; with a GPU: pip install -r requirements-gpu.txt")


def check_accelerators(cfg) -> None:
    """Stop before any work when the config asks for a GPU-only accelerator on a machine without a GPU."""
    for flag in ("use_unsloth", "use_vllm"):
        if getattr(cfg, flag, False):
            require_gpu(flag)


def import_unsloth_if_requested(argv: list[str] | None = None) -> bool:
    """Stage scripts call this before anything imports trl: unsloth patches trl and transformers at import."""
    argv = sys.argv[1:] if argv is None else argv
    if not _flag_from_argv(argv, "use_unsloth"):
        return False
    if "trl" in sys.modules and "unsloth" not in sys.modules:
        raise SystemExit("use_unsloth: trl was imported before unsloth; start the stage as a script "
                         "(python rl/grpo.py ...) so unsloth is imported first")
    require_gpu("use_unsloth")
    try:
        import unsloth  # noqa: F401
    except ImportError:
        raise SystemExit("use_unsloth: unsloth is not installed; pip install -r requirements-gpu.txt") from None
    return True


def load_with_unsloth(spec: str, max_seq_length: int):
    """(model, tokenizer) through unsloth's FastLanguageModel, bf16, for LoRA training."""
    require_gpu("use_unsloth")
    from unsloth import FastLanguageModel

    return FastLanguageModel.from_pretrained(model_name=spec, max_seq_length=max_seq_length, dtype=torch.bfloat16,
                                             load_in_4bit=False)
