"""Offline preference training of the SFT policy: DPO, DPOP, and the two-stage pun curriculum PGCL (SPEC section 5).

    python rl/dpo.py --config configs/tiny.yaml --loss dpo                 # TRL's DPOTrainer
    python rl/dpo.py --config configs/tiny.yaml --loss dpop                # ours: DPO-Positive
    python rl/dpo.py --config configs/tiny.yaml --loss pgcl                # ours: stage 1 structure, stage 2 humor

policy = base + SFT adapter merged + a fresh LoRA; reference = the same with the LoRA disabled (the SFT policy).
- dpo:  TRL's DPOTrainer (loss_type sigmoid).
- dpop: `PreferenceTrainer` below, a transformers Trainer whose loss is rl/losses.py's dpop_loss. It tokenizes
        exactly as TRL does (checked by a test), so DPO and DPOP runs on the same pairs compare like for like.
- pgcl: stage 1 = DPO (TRL) of gold puns over the policy's own structure failures -> <stage>/stage1/final;
        stage 2 = the three-way loss over (gold, y*, fail) sampled from the stage-1 policy, whose merged weights
        are the reference -> <stage>/final. Structure success is measured on held-out pun prompts before stage 1,
        after it and after stage 2.
Both engines log rewards/{chosen,rejected,margins,accuracies} and logps/{chosen,rejected}: the chosen sequence
log-prob is what DPO lets fall and DPOP holds up.
"""

from __future__ import annotations

from common.accelerators import check_accelerators, import_unsloth_if_requested

if __name__ == "__main__":
    import_unsloth_if_requested()   # unsloth must be imported before trl, which it patches

import json
import random
import time
from collections import defaultdict
from pathlib import Path

import torch
from datasets import Dataset
from peft import get_peft_model
from transformers import Trainer, TrainingArguments

from common.config import parse_config
from common.generation import adds_special_tokens, sample_completions, stop_token_ids
from common.models import load_policy, save_stage_adapter
from common.runs import (UpdateSentinel, causal_lm_probe, dry_run, finish_stage, prepare_stage_dir, set_seed,
                         tensorboard_callback, trainer_kwargs, use_bf16)
from common.stage_configs import DPOArgs
from data.loaders import rl_prompt_split, sample_texts
from data.preferences import (PreferenceExample, example_prompt, load_humicroedit, load_puns, pairs_from_samples,
                              pun_examples, pun_ok, read_preferences, structure_ok, write_preferences)
from data.prompts import completion_prefix, format_for_model
from eval.generate import generate_rows, write_jsonl
from reward.composite import load_scorer
from rl.losses import dpop_loss, pgcl_loss
from sft.sft import lora_config

# ---------------------------------------------------------------- our preference engine (dpop, pgcl)


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def tokenize_example(tokenizer, prompt: str, completions: list[str], max_length: int) -> dict:
    """As TRL's DPOTrainer: completion + EOS appended to the prompt text, the completion starting where the
    tokenized prompt and prompt + completion diverge; truncated at the end to max_length."""
    special = adds_special_tokens(tokenizer, [prompt])
    prompt_ids = tokenizer(prompt, add_special_tokens=special)["input_ids"]
    fulls = [tokenizer(prompt + c + tokenizer.eos_token, add_special_tokens=special)["input_ids"] for c in completions]
    start = min(common_prefix_length(prompt_ids, f) for f in fulls)
    return {"prompt_ids": prompt_ids[:start], "completion_ids": [f[start:][:max(1, max_length - start)] for f in fulls]}


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
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]   # (N, L-1, V)
    logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch["input_ids"][:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logps * batch["completion_mask"][:, 1:]).sum(dim=1)


class PreferenceTrainer(Trainer):
    """Trainer whose loss is DPOP (K = 2 completions: chosen, rejected) or PGCL (K = 3: gold, y*, fail)."""

    def __init__(self, *args, loss: str, beta: float, dpop_lambda: float = 0.0, gold_weight: float = 1.0,
                 fail_weight: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_name, self.beta, self.dpop_lambda = loss, beta, dpop_lambda
        self.gold_weight, self.fail_weight = gold_weight, fail_weight
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        k = int(inputs.pop("num_completions"))
        pi = sequence_logps(model, inputs).view(-1, k)                   # (B, K)
        with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
            ref = sequence_logps(model, inputs).view(-1, k)              # (B, K)
        if self.loss_name == "dpop":
            losses = dpop_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], self.beta, self.dpop_lambda)
            self._metrics["dpop/chosen_drop"].append(torch.clamp(ref[:, 0] - pi[:, 0], min=0).mean().item())
        else:
            losses = pgcl_loss(pi[:, 0], pi[:, 1], pi[:, 2], ref[:, 0], ref[:, 1], ref[:, 2], self.beta,
                               self.gold_weight, self.fail_weight)
        rewards = self.beta * (pi - ref).detach()                        # (B, K) implicit rewards
        m = self._metrics
        m["rewards/chosen"].append(rewards[:, 0].mean().item())
        m["rewards/rejected"].append(rewards[:, -1].mean().item())
        m["rewards/margins"].append((rewards[:, 0] - rewards[:, -1]).mean().item())
        m["rewards/accuracies"].append((rewards[:, 0] > rewards[:, -1]).float().mean().item())
        m["logps/chosen"].append(pi[:, 0].mean().item())
        m["logps/rejected"].append(pi[:, -1].mean().item())
        if k == 3:
            m["rewards/middle"].append(rewards[:, 1].mean().item())
            m["logps/middle"].append(pi[:, 1].mean().item())
        return losses.mean()

    def log(self, logs: dict, start_time: float | None = None) -> None:
        logs.update({key: sum(v) / len(v) for key, v in self._metrics.items() if v})
        self._metrics.clear()
        super().log(logs, start_time)


# ---------------------------------------------------------------- one training run (any loss)


def train_preferences(cfg: DPOArgs, loss: str, examples: list[PreferenceExample], out: Path, resume: str | None,
                      adapters: list[Path], max_steps: int) -> dict:
    """Train a fresh LoRA on base + adapters (merged; the reference) with `loss`; save <out>/final atomically."""
    model, tokenizer = load_policy(cfg.policy_model, adapters)
    stop_token_ids(model, tokenizer)
    prefix = completion_prefix(tokenizer)
    prompts = [format_for_model(tokenizer, example_prompt(ex)) for ex in examples]
    tensorboard = tensorboard_callback(out)
    kwargs = {**trainer_kwargs(cfg, out), "max_steps": max_steps}
    if loss == "dpo":
        from trl import DPOConfig, DPOTrainer

        data = Dataset.from_dict({"prompt": prompts, "chosen": [prefix + ex.completions[0] for ex in examples],
                                  "rejected": [prefix + ex.completions[-1] for ex in examples]})
        trainer = DPOTrainer(model=model, args=DPOConfig(**kwargs, beta=cfg.beta, loss_type=["sigmoid"],
                                                         max_length=cfg.max_length),
                             processing_class=tokenizer, train_dataset=data, peft_config=lora_config(cfg),
                             callbacks=[tensorboard])
    else:
        tokenized = [tokenize_example(tokenizer, p, [prefix + c for c in ex.completions], cfg.max_length)
                     for p, ex in zip(prompts, examples)]
        trainer = PreferenceTrainer(
            model=get_peft_model(model, lora_config(cfg)),
            args=TrainingArguments(**kwargs, remove_unused_columns=False), train_dataset=Dataset.from_list(tokenized),
            data_collator=collate(tokenizer.pad_token_id), callbacks=[tensorboard], loss=loss, beta=cfg.beta,
            dpop_lambda=cfg.dpop_lambda, gold_weight=cfg.pgcl_gold_weight, fail_weight=cfg.pgcl_fail_weight)
    sentinel = UpdateSentinel(trainer.model, causal_lm_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(trainer.model, loss, trainer.state.global_step)
    save_stage_adapter(out / "final", trainer.model, tokenizer, cfg.policy_model, parent=Path(adapters[-1]))
    history = [h for h in trainer.state.log_history if "logps/chosen" in h]
    return {"trainer": trainer, "tokenizer": tokenizer, "update_check": moved, "history": history,
            "steps": trainer.state.global_step}


def trend(history: list[dict], key: str, n: int = 3) -> tuple[float | None, float | None]:
    """Mean of the first and of the last n logged values of key (single steps are noisy)."""
    values = [h[key] for h in history if key in h]
    if not values:
        return None, None
    return sum(values[:n]) / len(values[:n]), sum(values[-n:]) / len(values[-n:])


# ---------------------------------------------------------------- data


def sample_texts_for(cfg: DPOArgs, adapters: list[Path], tasks, samples: int) -> list[dict]:
    """`samples` completions of every task by base + adapters: rows {id, text}."""
    model, tokenizer = load_policy(cfg.policy_model, adapters)
    from data.prompts import prompt_text

    expanded = [t for t in tasks for _ in range(samples)]
    out = sample_completions(model, tokenizer, [format_for_model(tokenizer, prompt_text(t)) for t in expanded],
                             cfg.max_new_tokens, cfg.temperature, cfg.top_p, batch_size=16,
                             max_prompt_tokens=cfg.max_prompt_tokens, bf16=use_bf16(cfg.bf16))
    return [{"id": t.id, "text": s.text} for t, s in zip(expanded, out)]


def structure_success(rows: list[dict], tasks) -> dict[str, float]:
    """Share of samples with the pun word ('word_present') and share passing the PGCL check too ('ok': the word
    present and the text not one phrase repeated)."""
    by_id = {t.id: t for t in tasks}
    n = max(1, len(rows))
    return {"word_present": sum(structure_ok(r["text"], by_id[r["id"]]) for r in rows) / n,
            "ok": sum(pun_ok(r["text"], by_id[r["id"]]) for r in rows) / n}


def measure_structure(cfg: DPOArgs, adapters: list[Path], tasks, out: Path, name: str) -> dict[str, float]:
    """Sample the held-out pun prompts twice with base + adapters, keep the samples, return structure_success."""
    rows = sample_texts_for(cfg, adapters, tasks, 2)
    write_jsonl(out / f"structure_{name}.jsonl", rows)
    return structure_success(rows, tasks)


def build_pairs(cfg: DPOArgs, sft_dir: Path) -> list[PreferenceExample]:
    source = cfg.preference_source
    if source == "humicroedit":
        examples = load_humicroedit(Path(cfg.data_dir) if cfg.data_dir else None, cfg.min_grade_gap)
    elif source == "self":
        tasks = rl_prompt_split(cfg)[0][:cfg.self_prompts]
        model, tokenizer = load_policy(cfg.policy_model, [sft_dir])
        rows = generate_rows(model, tokenizer, tasks, cfg, load_scorer(cfg), cfg.self_samples, batch_size=16)
        examples = pairs_from_samples({t.id: t for t in tasks}, rows, cfg.min_score_gap)
    elif source == "puns":
        puns = load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs)[:cfg.self_prompts]
        examples = pun_examples(puns, sample_texts_for(cfg, [sft_dir], [p.task() for p in puns], cfg.self_samples),
                                three_way=False)
    elif Path(source).is_file():
        examples = read_preferences(Path(source))
    else:
        raise ValueError(f"preference_source {source!r}: not humicroedit, self, puns or an existing JSONL file")
    if cfg.max_pairs is not None and len(examples) > cfg.max_pairs:
        examples = random.Random(cfg.seed).sample(examples, cfg.max_pairs)
    if not examples:
        raise ValueError(f"preference_source {source!r} gave no examples")
    return examples


def write_examples(out: Path, name: str, examples: list[PreferenceExample]) -> None:
    """The examples a stage trained on, in both interchange formats."""
    write_preferences(out / f"{name}.swift.jsonl", examples, "swift")
    write_preferences(out / f"{name}.llamafactory.jsonl", examples, "llamafactory")


# ---------------------------------------------------------------- the stages


def run_pairs(cfg: DPOArgs, out: Path, resume: str | None, sft_dir: Path, started: float) -> dict:
    examples = build_pairs(cfg, sft_dir)
    write_examples(out, "pairs", examples)
    print(f"[{cfg.loss}] {len(examples)} preference pairs from {cfg.preference_source}; beta {cfg.beta}"
          + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""))
    result = train_preferences(cfg, cfg.loss, examples, out, resume, [sft_dir], cfg.max_steps)
    figures = {key: trend(result["history"], key, 10) for key in
               ("rewards/chosen", "logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies")}
    report = [f"loss {cfg.loss}, {len(examples)} pairs from {cfg.preference_source}, beta {cfg.beta}"
              + (f", lambda {cfg.dpop_lambda}" if cfg.loss == "dpop" else ""), "",
              "| figure (mean of first / last 10 logs) | first | last |", "|---|---|---|",
              *[f"| {k} | {a:.3f} | {b:.3f} |" for k, (a, b) in figures.items() if a is not None], "",
              f"weights moved: {result['update_check']}"]
    return finish_stage(out, cfg.loss, {
        "steps": result["steps"], "pairs": len(examples), "preference_source": cfg.preference_source,
        "beta": cfg.beta, "dpop_lambda": cfg.dpop_lambda if cfg.loss == "dpop" else None,
        "chosen_reward_first": figures["rewards/chosen"][0], "chosen_reward_last": figures["rewards/chosen"][1],
        "chosen_logp_first": figures["logps/chosen"][0], "chosen_logp_last": figures["logps/chosen"][1],
        "margin_first": figures["rewards/margins"][0], "margin_last": figures["rewards/margins"][1],
        "accuracy_last": figures["rewards/accuracies"][1], "update_check": result["update_check"],
        "adapter_dir": str(out / "final")}, report, started)


def run_pgcl(cfg: DPOArgs, out: Path, resume: str | None, sft_dir: Path, started: float) -> dict:
    puns = load_puns(cfg.pun_sources, cfg.data_dir, cfg.langs)
    random.Random(cfg.seed).shuffle(puns)
    held_out, train = puns[:cfg.structure_eval_prompts], puns[cfg.structure_eval_prompts:][:cfg.self_prompts]
    held_tasks = [p.task() for p in held_out]
    out.mkdir(parents=True, exist_ok=True)
    success = {"sft": measure_structure(cfg, [sft_dir], held_tasks, out, "sft")}

    # stage 1: structure. gold pun > the SFT policy's own sample without the pun word
    stage1_dir = out / "stage1"
    if not (stage1_dir / "final").is_dir():
        stage1 = pun_examples(train, sample_texts_for(cfg, [sft_dir], [p.task() for p in train], cfg.self_samples), False)
        if not stage1:
            raise ValueError(f"pgcl stage 1: no pun prompt got a sample failing the structure check "
                             f"({len(train)} prompts x {cfg.self_samples} samples): nothing to learn")
        stage1_dir.mkdir(parents=True, exist_ok=True)
        write_examples(stage1_dir, "pairs", stage1)
        print(f"[pgcl] stage 1: {len(stage1)} structure pairs (gold > own failure)")
        s1_resume = max(stage1_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]), default=None)
        r1 = train_preferences(cfg, "dpo", stage1, stage1_dir, str(s1_resume) if s1_resume else None, [sft_dir],
                               cfg.stage1_max_steps or cfg.max_steps)
        stage1_summary = {"examples": len(stage1), "steps": r1["steps"], "update_check": r1["update_check"],
                          "chosen_logp": trend(r1["history"], "logps/chosen")}
        (stage1_dir / "stage1.json").write_text(json.dumps(stage1_summary, indent=2, default=str))
    stage1_summary = json.loads((stage1_dir / "stage1.json").read_text())
    stage1_adapters = [sft_dir, stage1_dir / "final"]
    success["stage1"] = measure_structure(cfg, stage1_adapters, held_tasks, out, "stage1")

    # stage 2: humor. gold > y* (structure ok, weakest by the RM) > fail, reference = the stage-1 policy
    rows = sample_texts_for(cfg, stage1_adapters, [p.task() for p in train], cfg.self_samples)
    rm_scores = None
    if cfg.reward_model_dir().is_dir():
        from reward.model import HumorRewardModel

        texts = sorted({r["text"] for r in rows if r["text"]})
        rm_scores = dict(zip(texts, HumorRewardModel(cfg.reward_model_dir(), cfg.rm_batch_size,
                                                     cfg.rm_max_length).score(texts)))
    stage2 = pun_examples(train, rows, True, rm_scores)
    if not stage2:
        raise ValueError(f"pgcl stage 2: no pun prompt got both a structure-ok and a failing sample from the stage-1 "
                         f"policy ({len(train)} prompts x {cfg.self_samples} samples); raise self_samples")
    write_examples(out, "triples", stage2)
    print(f"[pgcl] stage 2: {len(stage2)} triples (gold > y* > fail); weights gold {cfg.pgcl_gold_weight}, "
          f"fail {cfg.pgcl_fail_weight}")
    r2 = train_preferences(cfg, "pgcl", stage2, out, resume, stage1_adapters, cfg.max_steps)
    success["stage2"] = measure_structure(cfg, stage1_adapters + [out / "final"], held_tasks, out, "stage2")
    report = [f"PGCL on {len(puns)} puns ({cfg.pun_sources}, {cfg.langs}); {len(held_out)} held out",
              f"stage 1: {stage1_summary['examples']} pairs, {stage1_summary['steps']} steps; "
              f"stage 2: {len(stage2)} triples, {r2['steps']} steps", "",
              "| policy | pun word present | structure ok (word present, not repetitive) |", "|---|---|---|",
              *[f"| {k} | {v['word_present']:.2f} | {v['ok']:.2f} |" for k, v in success.items()], "",
              "(held-out pun prompts, 2 samples each: structure_<policy>.jsonl)", "", f"weights moved (stage 2): {r2['update_check']}"]
    return finish_stage(out, "pgcl", {
        "steps": r2["steps"], "stage1": stage1_summary, "triples": len(stage2), "structure_success": success,
        "gold_weight": cfg.pgcl_gold_weight, "fail_weight": cfg.pgcl_fail_weight, "beta": cfg.beta,
        "chosen_logp": trend(r2["history"], "logps/chosen"), "update_check": r2["update_check"],
        "adapter_dir": str(out / "final")}, report, started)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(DPOArgs, "dpo", argv)
    if cfg.dry_run:
        return dry_run(cfg, "dpo")
    check_accelerators(cfg)
    set_seed(cfg.seed)
    started = time.time()
    out, resume = prepare_stage_dir(cfg, cfg.loss)
    sft_dir = cfg.sft_adapter_dir()
    if cfg.loss == "pgcl":
        return run_pgcl(cfg, out, resume, sft_dir, started)
    return run_pairs(cfg, out, resume, sft_dir, started)


if __name__ == "__main__":
    main()
