"""What the offline preference stages share (rl/dpo.py: DPO, DPOP; rl/pgcl.py: PGCL): one trainer for our own
losses, one training run for any of them, sampling the policy's own completions, and the examples on disk.

policy = base + adapters merged + a fresh LoRA; reference = the same with the LoRA disabled.
- TRL's DPOTrainer runs plain DPO (loss_type sigmoid).
- `PreferenceTrainer`, a transformers Trainer, runs any loss function of rl/losses.py over K ranked completions
  per prompt. It tokenizes exactly as TRL does (checked by a test), so DPO and DPOP runs on the same pairs compare
  like for like.
Both engines train the same FittedPairs (fit_pairs): the prompt cut on the left to max_prompt_tokens, the
completions cut to what max_length leaves, and the pairs that cannot fit dropped and counted, so that neither
engine truncates or drops anything further.
Both engines log rewards/{chosen,rejected,margins,accuracies} and logps/{chosen,rejected}: the chosen sequence
log-prob is what DPO lets fall and DPOP holds up.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import Trainer, TrainingArguments
from trl import DPOConfig, DPOTrainer

from common.generation import adds_special_tokens, fit_prompt, sample_completions, stop_token_ids
from common.io import write_jsonl
from common.logprobs import token_logprobs
from common.models import load_policy, save_stage_adapter
from common.rundir import StageState
from common.tb import tensorboard_callback
from common.training import lora_config, trainer_config, use_bf16
from common.update_check import UpdateSentinel, causal_lm_probe
from data.loaders import TaskPrompt, sample_texts
from data.preferences import PreferenceExample, example_messages, pun_ok, structure_ok, write_preferences
from data.prompts import completion_prefix, format_conversation, format_for_model, prompt_text

# loss_fn(pi, ref) -> (loss, stats): pi and ref (B, K) summed completion log-probs, completions best first
PreferenceLoss = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def with_eos(tokenizer, completion: str) -> str:
    """The completion as TRL's DPOTrainer trains it: the EOS text appended unless it is already there."""
    eos = tokenizer.eos_token
    return completion if completion.endswith(eos) else completion + eos


def tokenize_example(tokenizer, prompt: str, completions: list[str], max_length: int | None) -> dict:
    """As TRL's DPOTrainer: completion + EOS appended to the prompt text, the completion starting where the
    tokenized prompt and prompt + completion diverge; truncated at the end to max_length (None: not truncated)."""
    special = adds_special_tokens(tokenizer, [prompt])
    prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    fulls = [tokenizer(prompt + with_eos(tokenizer, c), add_special_tokens=special)["input_ids"] for c in completions]
    start = min(common_prefix_length(prompt_ids, f) for f in fulls)
    completion_ids = [f[start:] for f in fulls]
    if max_length is not None:
        completion_ids = [ids[:max(1, max_length - start)] for ids in completion_ids]
    return {"prompt_ids": prompt_ids[:start], "completion_ids": completion_ids}


# ---------------------------------------------------------------- the token budget of a pair

BUDGET_DROPS = ("no_room_for_completion", "identical_after_cut")     # why fit_pairs drops a pair
FIT_ROUNDS = 8          # cut, re-tokenize, measure: a decoded cut re-tokenizes to within a token or two


@dataclass(frozen=True)
class FittedPair:
    """An example as both engines train it: `prompt` the formatted conversation cut on the left, `completions`
    (completion prefix included, best first) cut at the end, so that prompt + completion + EOS fits max_length."""
    example: PreferenceExample
    prompt: str
    completions: tuple[str, ...]


def without_bos_text(tokenizer, prompt: str) -> str:
    """The prompt without a chat template's BOS text when the tokenizer adds its BOS anyway: TRL tokenizes with
    special tokens on, and would otherwise train on two BOS tokens where our engine has one."""
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
    return prompt[len(bos):] if adds_bos and prompt.startswith(bos) else prompt


def cut_completion(tokenizer, text: str, tokens: int) -> str:
    """The first `tokens` tokens of text, as text (a character split by the cut is left out)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    keep = max(0, min(tokens, len(ids) - 1))
    return tokenizer.decode(ids[:keep], skip_special_tokens=False, clean_up_tokenization_spaces=False).rstrip("\ufffd")


def fit_completions(tokenizer, prompt: str, completions: list[str], max_length: int,
                    min_completion_tokens: int) -> tuple[list[str] | None, str | None]:
    """(completions cut so that the prompt + each + EOS fits max_length as TRL tokenizes it, None) or (None, the
    reason the pair cannot fit). Measured, not estimated: a decoded cut can re-tokenize differently, so it is cut,
    re-tokenized and measured until it fits."""
    texts = list(completions)
    for _ in range(FIT_ROUNDS):
        tokenized = tokenize_example(tokenizer, prompt, texts, None)
        room = max_length - len(tokenized["prompt_ids"])
        over = [len(ids) - room for ids in tokenized["completion_ids"]]
        if max(over) <= 0:
            break
        if room < min_completion_tokens:
            return None, "no_room_for_completion"
        for i, extra in enumerate(over):
            if extra > 0:
                own = len(tokenizer(texts[i], add_special_tokens=False)["input_ids"])
                texts[i] = cut_completion(tokenizer, texts[i], own - extra)
    else:
        return None, "no_room_for_completion"
    if len(set(texts)) < len(texts):
        return None, "identical_after_cut"
    return texts, None


def fit_pairs(tokenizer, examples: list[PreferenceExample], max_prompt_tokens: int, max_length: int,
              min_completion_tokens: int = 8) -> tuple[list[FittedPair], dict]:
    """Every example fitted to the token budget, or dropped by reason (BUDGET_DROPS): (the fitted pairs, counts
    {fitted, dropped: {reason: n}, prompts_cut, completions_cut}; the cuts counted over the fitted pairs).
    A long conversation keeps its end: the last turns and the chat template's generation prompt."""
    prefix = completion_prefix(tokenizer)
    fitted, dropped, prompts_cut, completions_cut = [], Counter(), 0, 0
    for ex in examples:
        whole = without_bos_text(tokenizer, format_conversation(tokenizer, example_messages(ex)))
        prompt = fit_prompt(tokenizer, whole, max_prompt_tokens)
        originals = [prefix + c for c in ex.completions]
        completions, reason = fit_completions(tokenizer, prompt, originals, max_length, min_completion_tokens)
        if reason:
            dropped[reason] += 1
            continue
        prompts_cut += prompt != whole
        completions_cut += sum(c != o for c, o in zip(completions, originals))
        fitted.append(FittedPair(ex, prompt, tuple(completions)))
    return fitted, {"fitted": len(fitted), "dropped": dict(dropped), "prompts_cut": prompts_cut,
                    "completions_cut": completions_cut}


def trl_rows(pairs: list[FittedPair]) -> dict[str, list[str]]:
    """The pairs as TRL's DPOTrainer reads them: prompt, chosen (best), rejected (worst), as text."""
    return {"prompt": [p.prompt for p in pairs], "chosen": [p.completions[0] for p in pairs],
            "rejected": [p.completions[-1] for p in pairs]}


def check_untouched(rows, expected: int, max_length: int, engine: str) -> None:
    """Refuse to train when the engine's tokenized rows are not the fitted pairs whole: one dropped, or one longer
    than max_length (its truncation would cut it). Rows: {prompt_ids, and chosen_ids + rejected_ids or
    completion_ids}. A failure here is a bug of fit_pairs, not of the data."""
    rows = list(rows)
    longest = max((len(r["prompt_ids"]) + len(c) for r in rows
                   for c in r.get("completion_ids") or (r["chosen_ids"], r["rejected_ids"])), default=0)
    if len(rows) != expected or longest > max_length:
        raise RuntimeError(f"{engine} would train {len(rows)} of the {expected} fitted pairs, the longest "
                           f"{longest} tokens for max_length {max_length}: the token budget and the engine disagree")


def collate(pad_id: int):
    """Examples of K completions -> B*K right-padded sequences, ordered [ex0 c0, ex0 c1, ..., ex1 c0, ...]."""
    def fn(examples: list[dict]) -> dict[str, torch.Tensor]:
        seqs = [(ex["prompt_ids"], c) for ex in examples for c in ex["completion_ids"]]
        length = max(len(p) + len(c) for p, c in seqs)
        input_ids = torch.full((len(seqs), length), pad_id)
        attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        completion_mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for i, (p, c) in enumerate(seqs):
            input_ids[i, :len(p) + len(c)] = torch.tensor(p + c)
            attention_mask[i, :len(p) + len(c)] = 1
            completion_mask[i, len(p):len(p) + len(c)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask,
                "num_completions": torch.tensor(len(examples[0]["completion_ids"]))}
    return fn


def sequence_logps(model, batch: dict) -> torch.Tensor:
    """Sum of the completion tokens' log-probs, (N,)."""
    logprobs, _, _ = token_logprobs(model, batch["input_ids"], batch["attention_mask"])        # (N, L-1)
    return (logprobs * batch["completion_mask"][:, 1:]).sum(dim=1)


class PreferenceTrainer(Trainer):
    """Trainer whose loss is `loss_fn(pi, ref)` over K ranked completions per prompt (K = 2 for DPOP's chosen and
    rejected, 3 for PGCL's gold, y*, fail); `beta` only turns log-ratios into the logged implicit rewards."""

    def __init__(self, *args, loss_fn: PreferenceLoss, beta: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_fn, self.beta = loss_fn, beta
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        k = int(inputs.pop("num_completions"))
        pi = sequence_logps(model, inputs).view(-1, k)                   # (B, K)
        with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
            ref = sequence_logps(model, inputs).view(-1, k)              # (B, K)
        loss, stats = self.loss_fn(pi, ref)
        rewards = self.beta * (pi - ref).detach()                        # (B, K) implicit rewards
        m = self._metrics
        if "chosen_drop" in stats:
            m["dpop/chosen_drop"].append(stats["chosen_drop"].item())
        m["rewards/chosen"].append(rewards[:, 0].mean().item())
        m["rewards/rejected"].append(rewards[:, -1].mean().item())
        m["rewards/margins"].append((rewards[:, 0] - rewards[:, -1]).mean().item())
        m["rewards/accuracies"].append((rewards[:, 0] > rewards[:, -1]).float().mean().item())
        m["logps/chosen"].append(pi[:, 0].mean().item())
        m["logps/rejected"].append(pi[:, -1].mean().item())
        if k == 3:
            m["rewards/middle"].append(rewards[:, 1].mean().item())
            m["logps/middle"].append(pi[:, 1].mean().item())
        return loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        logs.update({key: sum(v) / len(v) for key, v in self._metrics.items() if v})
        self._metrics.clear()
        super().log(logs, start_time)


def fitted_for_training(cfg, tokenizer, examples: list[PreferenceExample] | list[FittedPair],
                        stage: str) -> tuple[list[FittedPair], dict | None]:
    """FittedPairs as a stage gave them (counted there: (pairs, None)), or examples fitted here with the config's
    budget, the pairs dropped printed: (pairs, fit_pairs' counts)."""
    if examples and isinstance(examples[0], FittedPair):
        return list(examples), None
    pairs, counts = fit_pairs(tokenizer, examples, cfg.max_prompt_tokens, cfg.max_length,
                              getattr(cfg, "min_completion_tokens", 8))
    if counts["dropped"] or counts["prompts_cut"] or counts["completions_cut"]:
        print(f"[{stage}] token budget: {len(pairs)} of {len(examples)} examples fit max_length {cfg.max_length}; "
              f"dropped {counts['dropped'] or 'none'}; prompts cut {counts['prompts_cut']}, completions cut "
              f"{counts['completions_cut']}")
    if not pairs:
        raise ValueError(f"[{stage}] none of the {len(examples)} examples fits max_length {cfg.max_length} "
                         f"({counts['dropped']}): raise max_length or lower max_prompt_tokens")
    return pairs, counts


def train_preferences(cfg, loss_fn: PreferenceLoss | None, stage: str,
                      examples: list[PreferenceExample] | list[FittedPair], out: Path, resume: str | None,
                      adapters: list[Path], max_steps: int, started: float) -> dict:
    """Train a fresh LoRA on base + adapters (merged; the reference) and save <out>/final atomically.
    loss_fn None: TRL's DPOTrainer (DPO); else PreferenceTrainer with that loss. started: the stage's clock.
    examples: FittedPairs a stage has fitted and counted (rl/dpo.py), or examples fitted here (fitted_for_training);
    either way both engines get exactly these pairs, checked after they tokenized them (check_untouched)."""
    model, tokenizer = load_policy(cfg.policy_model, adapters, dtype=cfg.model_dtype)
    stop_token_ids(model, tokenizer)
    pairs, budget = fitted_for_training(cfg, tokenizer, examples, stage)
    callbacks = [tensorboard_callback(out), StageState(started)]
    steps = {} if cfg.epochs else {"max_steps": max_steps}     # epochs, when set, win (as in every Trainer stage)
    if loss_fn is None:
        args = trainer_config(DPOConfig, cfg, out, **steps, beta=cfg.beta, loss_type=["sigmoid"],
                              max_length=cfg.max_length)
        trainer = DPOTrainer(model=model, args=args,
                             processing_class=tokenizer, train_dataset=Dataset.from_dict(trl_rows(pairs)),
                             peft_config=lora_config(cfg), callbacks=callbacks)
        check_untouched(trainer.train_dataset, len(pairs), cfg.max_length, "TRL's DPOTrainer")
    else:
        tokenized = [tokenize_example(tokenizer, p.prompt, list(p.completions), None) for p in pairs]
        check_untouched(tokenized, len(pairs), cfg.max_length, "PreferenceTrainer")
        trainer = PreferenceTrainer(
            model=get_peft_model(model, lora_config(cfg)),
            args=trainer_config(TrainingArguments, cfg, out, **steps, remove_unused_columns=False),
            train_dataset=Dataset.from_list(tokenized),
            data_collator=collate(tokenizer.pad_token_id), callbacks=callbacks, loss_fn=loss_fn, beta=cfg.beta)
    sentinel = UpdateSentinel(trainer.model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(trainer.model, stage, trainer.state.global_step)
    save_stage_adapter(out / "final", trainer.model, tokenizer, cfg.policy_model, parent=Path(adapters[-1]))
    history = [h for h in trainer.state.log_history if "logps/chosen" in h]
    return {"trainer": trainer, "tokenizer": tokenizer, "update_check": moved, "history": history,
            "steps": trainer.state.global_step, "pairs": len(pairs), "budget": budget}


def trend(history: list[dict], key: str, n: int = 3) -> tuple[float | None, float | None]:
    """Mean of the first and of the last n logged values of key (single steps are noisy)."""
    values = [h[key] for h in history if key in h]
    if not values:
        return None, None
    return sum(values[:n]) / len(values[:n]), sum(values[-n:]) / len(values[-n:])


# ---------------------------------------------------------------- the policy's own samples


def sample_texts_for(cfg, adapters: list[Path], tasks: list[TaskPrompt], samples: int) -> list[dict]:
    """`samples` completions of every task by base + adapters: rows {id, text}."""
    model, tokenizer = load_policy(cfg.policy_model, adapters, dtype=cfg.model_dtype)
    expanded = [t for t in tasks for _ in range(samples)]
    out = sample_completions(model, tokenizer, [format_for_model(tokenizer, prompt_text(t)) for t in expanded],
                             cfg.max_new_tokens, cfg.temperature, cfg.top_p, batch_size=16,
                             max_prompt_tokens=cfg.max_prompt_tokens, bf16=use_bf16(cfg.bf16))
    return [{"id": t.id, "text": s.text} for t, s in zip(expanded, out)]


def structure_success(rows: list[dict], tasks: list[TaskPrompt], cfg) -> dict[str, float]:
    """Share of samples with the pun word ('word_present') and share passing the PGCL check too ('ok': the word
    present and the text not one phrase repeated, by cfg's repetition_threshold and repetition_ngram)."""
    by_id = {t.id: t for t in tasks}
    n = max(1, len(rows))
    return {"word_present": sum(structure_ok(r["text"], by_id[r["id"]]) for r in rows) / n,
            "ok": sum(pun_ok(r["text"], by_id[r["id"]], cfg.repetition_threshold, cfg.repetition_ngram)
                      for r in rows) / n}


def measure_structure(cfg, adapters: list[Path], tasks: list[TaskPrompt], out: Path, name: str) -> dict[str, float]:
    """Sample the held-out pun prompts twice with base + adapters, keep the samples, return structure_success."""
    rows = sample_texts_for(cfg, adapters, tasks, 2)
    write_jsonl(out / f"structure_{name}.jsonl", rows)
    return structure_success(rows, tasks, cfg)


def write_examples(out: Path, name: str, examples: list[PreferenceExample]) -> None:
    """The examples a stage trained on, in both interchange formats."""
    write_preferences(out / f"{name}.swift.jsonl", examples, "swift")
    write_preferences(out / f"{name}.llamafactory.jsonl", examples, "llamafactory")
