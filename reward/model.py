"""The reward model wrapper: raw text -> P(humor), with the classifier's own tokenizer.

Never hand the 2-label classifier itself to a trainer: TRL's GRPO reads logits[:, 0], which is the *not humor*
logit, and TRL's PPO feeds it the policy's token ids. Scoring decoded text here avoids both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from common.models import load_trained_classifier

RM_META = "humor_rm.json"  # written by train_rm.py beside the weights: which label is humor, prompt or not


def humor_label(path: Path, meta: dict, id2label: dict) -> int:
    """The output index that means humor: the label the RM was trained with (humor_rm.json), checked against the
    classifier's own label names; a classifier whose labels say neither is refused, never scored backwards."""
    names = {int(i): str(name).lower() for i, name in id2label.items()}
    named = [i for i, name in names.items() if name == "humor"]
    index = meta.get("humor_label", named[0] if len(named) == 1 else None)
    if index is None or int(index) not in names:
        raise ValueError(f"{path}: cannot tell which label is humor (labels {id2label}, {RM_META} has no "
                         f"humor_label); add \"humor_label\": <index> to {RM_META}")
    if named and named != [int(index)]:
        raise ValueError(f"{path}: {RM_META} says label {index} is humor, but the classifier names {named[0]} 'humor'")
    return int(index)


def read_meta(path: Path, hint: str = "") -> dict:
    """The humor_rm.json that train_rm.py writes beside a reward model's weights."""
    meta_file = Path(path) / RM_META
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: no trained reward model here ({RM_META} missing){'; ' + hint if hint else ''}")
    return json.loads(meta_file.read_text())


def load_reward_model(path: Path, objectives: tuple[str, ...], hint: str, device: str | None):
    """(meta, model, tokenizer, device) of a trained reward model folder whose objective is one of objectives."""
    meta = read_meta(path, hint)
    objective = meta.get("objective", "classify")
    if objective not in objectives:
        kind = "a humor classifier" if objectives == ("classify",) else "a ranking reward model"
        where = "ranking_model (component rank_reward)" if objective != "classify" else "reward_model (rm_reward)"
        raise ValueError(f"{path}: a {objective} reward model, not {kind}: give it as {where}")
    model, tokenizer = load_trained_classifier(path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    return meta, model, tokenizer, device


def encode_texts(tokenizer, texts: list[str], themes: list[str] | None, max_length: int, **kwargs):
    """Texts as a ranking reward model reads them: alone, or as the pair (theme, text) when it was trained with
    the prompt (an encoder sees '[CLS] theme [SEP] text [SEP]'; over max_length, the longer of the two is cut
    first, the same for one text as for a batch). No segment ids: TRL's reward collator passes input ids and the
    attention mask only, so training and scoring see the same inputs."""
    if themes is None:
        enc = tokenizer(texts, truncation=True, max_length=max_length, **kwargs)
    else:
        enc = tokenizer(themes, texts, truncation="longest_first", max_length=max_length, **kwargs)
    enc.pop("token_type_ids", None)
    return enc


class HumorRewardModel:
    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int = 256, device: str | None = None):
        self.meta, self.model, self.tokenizer, self.device = load_reward_model(
            Path(path), ("classify",), "run reward/train_rm.py first or set --reward_model", device)
        self.humor_index = humor_label(Path(path), self.meta, self.model.config.id2label)
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def score(self, texts: list[str], instructions: list[str] | None = None,
              themes: list[str] | None = None) -> list[float]:
        """P(humor) per text, in [0, 1]. `instructions` (the raw prompts) are used only if the model was
        trained on prompt + text; a classifier reads no themes."""
        with_prompt = self.meta.get("with_prompt", False)
        if with_prompt and instructions is None:
            raise ValueError("this reward model was trained on prompt + text: pass the instructions too")
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = texts[i:i + self.batch_size]
            if with_prompt:
                enc = self.tokenizer(instructions[i:i + self.batch_size], batch, truncation=True,
                                     max_length=self.max_length, padding=True, return_tensors="pt")
            else:
                enc = self.tokenizer(batch, truncation=True, max_length=self.max_length, padding=True,
                                     return_tensors="pt")
            logits = self.model(**enc.to(self.device)).logits.float()  # (B, 2)
            out += torch.softmax(logits, dim=-1)[:, self.humor_index].tolist()
        return out


class RankingRewardModel:
    """A ranking or rating reward model (train_rm.py --rm_objective pairwise|rating): raw text -> a score in (0, 1),
    sigmoid((s - center) / scale) of its one-output head, centred and scaled by its scores on its training texts,
    so 0.5 is a typical training text and the composite can weigh it like P(humor). A model trained with_prompt
    reads each text beside its theme (the required words or the headline: data/prompts.py task_theme)."""

    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int = 256, device: str | None = None):
        self.meta, self.model, self.tokenizer, self.device = load_reward_model(
            Path(path), ("pairwise", "rating"), "run reward/train_rm.py --rm_objective pairwise first or set "
                                                "--ranking_model", device)
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def score(self, texts: list[str], instructions: list[str] | None = None,
              themes: list[str] | None = None) -> list[float]:
        with_prompt = self.meta.get("with_prompt", False)
        if with_prompt and themes is None:
            raise ValueError("this ranking reward model reads each joke beside its theme: pass the themes too")
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = encode_texts(self.tokenizer, texts[i:i + self.batch_size],
                               themes[i:i + self.batch_size] if with_prompt else None, self.max_length,
                               padding=True, return_tensors="pt").to(self.device)
            raw = self.model(**enc).logits[:, 0].float()                                    # (B,)
            out += torch.sigmoid((raw - self.meta["center"]) / self.meta["scale"]).tolist()
        return out


class EnsembleRewardModel:
    """An ensemble of reward models (different seeds or backbones) scored as mean - k * std over its members, the
    uncertainty-penalised reward of the reward-model-ensemble literature (Coste et al. 2023): where the members
    disagree, the policy is probably exploiting one of them. `last` holds the last batch's texts and per-text std."""

    def __init__(self, members: list, k: float):
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 reward models, got {len(members)}")
        self.members, self.k, self.last = members, k, ([], [])

    def score(self, texts: list[str], instructions: list[str] | None = None,
              themes: list[str] | None = None) -> list[float]:
        """mean - k * std (population std) of the members' scores, per text.

        >>> class Fixed:
        ...     def __init__(self, p): self.p = p
        ...     def score(self, texts, instructions=None, themes=None): return [self.p] * len(texts)
        >>> [round(s, 6) for s in EnsembleRewardModel([Fixed(0.9), Fixed(0.5)], k=1.0).score(["a joke"])]   # 0.7 - 0.2
        [0.5]
        """
        scores = torch.tensor([m.score(texts, instructions, themes) for m in self.members], dtype=torch.float64)  # (M, B)
        mean, std = scores.mean(dim=0), scores.std(dim=0, unbiased=False)                                # (B,)
        self.last = (list(texts), std.tolist())
        return (mean - self.k * std).tolist()


def mean_scorer(dirs: list[Path], batch_size: int = 32, max_length: int = 256, kind=None):
    """One scorer for one or several trained reward model directories: the model itself, or the mean of their
    (0, 1) scores, each centred on its own training texts (an EnsembleRewardModel with k = 0). kind: the class to
    load each with (RankingRewardModel, ...); None: whichever its objective is (load_scorer)."""
    members = [(kind or load_scorer)(d, batch_size, max_length) for d in dirs]
    return members[0] if len(members) == 1 else EnsembleRewardModel(members, k=0.0)


def load_scorer(path: str | Path, batch_size: int = 32, max_length: int = 256):
    """The reward model a trained directory holds, whichever its objective: a HumorRewardModel (P(humor)) for a
    classifier, a RankingRewardModel (its centred sigmoid) for a pairwise or rating model."""
    objective = read_meta(path).get("objective", "classify")
    kind = HumorRewardModel if objective == "classify" else RankingRewardModel
    return kind(path, batch_size, max_length)
