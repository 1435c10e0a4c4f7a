"""The reward model wrapper: raw text -> P(humor), with the classifier's own tokenizer.

Never hand the 2-label classifier itself to a trainer: TRL's GRPO reads logits[:, 0], which is the *not humor*
logit, and TRL's PPO feeds it the policy's token ids (SPEC section 2). Scoring decoded text here avoids both.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from common.models import load_classifier

RM_META = "humor_rm.json"  # written by train_rm.py beside the weights: which label is humor, prompt or not


class HumorRewardModel:
    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int = 256, device: str | None = None):
        path = Path(path)
        meta_file = path / RM_META
        if not meta_file.is_file():
            raise FileNotFoundError(f"{path}: no trained reward model here ({RM_META} missing); run "
                                    f"reward/train_rm.py first or set --reward_model")
        self.meta = json.loads(meta_file.read_text())
        self.model, self.tokenizer = load_classifier(str(path))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.humor_index = int(self.model.config.label2id.get("humor", 1))
        self.batch_size, self.max_length = batch_size, max_length

    @torch.no_grad()
    def score(self, texts: list[str], instructions: list[str] | None = None) -> list[float]:
        """P(humor) per text, in [0, 1]. `instructions` (the raw prompts) are used only if the model was
        trained on prompt + text."""
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
