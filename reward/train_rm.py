"""Train the humor reward model: a 2-label sequence classifier (not humor / humor) on labeled texts, with a
stratified held-out split for accuracy, precision, recall, F1 and ROC-AUC.

    python reward/train_rm.py --config configs/tiny.yaml
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
from scipy.stats import spearmanr
from sklearn.model_selection import train_test_split
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from trl import RewardConfig, RewardTrainer

from common.cli import cli
from common.config import parse_config
from common.io import save_atomically
from common.models import load_classifier
from common.rundir import StageState, dry_run, finish_stage, prepare_stage_dir, start_clock
from common.stage_configs import RMArgs
from common.tb import log_scalars, tensorboard_callback
from common.training import set_seed, trainer_config
from common.update_check import UpdateSentinel, classifier_probe, score_probe
from data.annotate import annotated_prompt_by_text, annotations_of
from data.loaders import LabeledText, TaskPrompt, load_labeled, sample_texts
from data.preferences import load_humicroedit, load_humicroedit_grades, pairs_from_grades
from data.prompts import pick_two_words, prompt_text
from reward.model import RM_META


def classification_metrics(labels: list[int], p_humor: list[float], threshold: float = 0.5) -> dict[str, float]:
    """Held-out metrics of P(humor) against 0/1 labels (humor is the positive class).

    >>> m = classification_metrics([1, 1, 0, 0], [0.9, 0.4, 0.2, 0.6])
    >>> m["accuracy"], m["precision"], m["recall"], m["f1"], m["roc_auc"]
    (0.5, 0.5, 0.5, 0.5, 0.75)
    """
    pred = [int(p >= threshold) for p in p_humor]
    precision, recall, f1, _ = precision_recall_fscore_support(labels, pred, average="binary", zero_division=0)
    return {"accuracy": float(accuracy_score(labels, pred)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1),
            "roc_auc": float(roc_auc_score(labels, p_humor)) if len(set(labels)) == 2 else float("nan")}


def instruction_for(row: LabeledText, annotated: dict[str, TaskPrompt]) -> str:
    """The prompt a text answers, for prompt + text training: its annotated headline prompt when an annotator
    wrote one (the seeds' RM), else a two-words prompt built from the text itself."""
    if row.text in annotated:
        return prompt_text(annotated[row.text])
    words = pick_two_words(row.text, row.lang)
    return prompt_text(TaskPrompt(row.id, row.lang, "words", words=words)) if words else ""


def raw_scores(model, tokenizer, texts: list[str], max_length: int, batch_size: int) -> list[float]:
    """The one-output head's score of each text (a ranking or rating RM), in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(model.device)
            out += model(**enc).logits[:, 0].float().tolist()
    return out


def ranking_metrics(score, dev_pairs: list[tuple[str, str]], dev_grades: list, train_mean_grade: float,
                    rating: bool) -> dict[str, float]:
    """Held-out figures of a ranking RM (score: texts -> raw scores): pairwise accuracy on human pairs (the
    funnier one scored higher; ties count half), Spearman with human grades, and for a rating RM the RMSE of its
    grade (score x 3) beside the mean baseline's (always predicting the training mean)."""
    funnier, other = score([a for a, _ in dev_pairs]), score([b for _, b in dev_pairs])
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(funnier, other)]
    grades = [g.grade for g in dev_grades]
    predicted = score([g.text for g in dev_grades])
    out = {"pairwise_accuracy": sum(wins) / len(wins) if wins else float("nan"),
           "spearman": float(spearmanr(predicted, grades).statistic) if len(grades) > 1 else float("nan"),
           "mean_baseline_rmse": float(np.sqrt(np.mean([(g - train_mean_grade) ** 2 for g in grades])))}
    if rating:
        out["rmse"] = float(np.sqrt(np.mean([(3 * p - g) ** 2 for p, g in zip(predicted, grades)])))
    return out


def train_ranking(cfg: RMArgs) -> dict:
    """rm_objective pairwise (TRL RewardTrainer, Bradley-Terry) or rating (regression on grades / 3): a one-output
    head whose score ranks funniness; its meta records the training scores' mean and std, so that the reward
    component rank_reward = sigmoid((score - mean) / std) sits in (0, 1) like P(humor)."""
    stage, data_dir = cfg.stage_name, Path(cfg.data_dir) if cfg.data_dir else None
    train_grades = load_humicroedit_grades(data_dir, "train")
    dev_grades = load_humicroedit_grades(data_dir, "dev")
    dev_pairs = [ex.completions for ex in load_humicroedit(data_dir, split="dev")]       # task-2 dev: never trained on
    pairs = [ex.completions for ex in load_humicroedit(data_dir)] + pairs_from_grades(train_grades, cfg.pair_min_grade_gap)
    if cfg.dry_run:
        return dry_run(cfg, stage, rm_objective=cfg.rm_objective, train_pairs=len(pairs), graded_train=len(train_grades),
                       held_out_pairs=len(dev_pairs), held_out_graded=len(dev_grades))
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, stage)
    started = start_clock(resume)
    model, tokenizer = load_classifier(cfg.rm_backbone, num_labels=1)
    callbacks = [tensorboard_callback(out), StageState(started)]
    encode = lambda texts: tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
    if cfg.rm_objective == "pairwise":
        # pre-tokenized as an encoder does ([CLS] ... [SEP]), so TRL appends no EOS of its own
        data = Dataset.from_dict({"chosen_ids": encode([a for a, _ in pairs]), "rejected_ids": encode([b for _, b in pairs])})
        trainer = RewardTrainer(model=model, args=trainer_config(RewardConfig, cfg, out, max_length=cfg.max_length),
                                train_dataset=data, processing_class=tokenizer, callbacks=callbacks)
        size = len(pairs)
    else:
        model.config.problem_type = "regression"
        enc = tokenizer([g.text for g in train_grades], truncation=True, max_length=cfg.max_length)
        data = Dataset.from_dict({**enc, "labels": [g.grade / 3.0 for g in train_grades]})
        trainer = Trainer(model=model, args=trainer_config(TrainingArguments, cfg, out), train_dataset=data,
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks)
        size = len(train_grades)
    sentinel = UpdateSentinel(model, score_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(model, stage, trainer.state.global_step)

    score = lambda texts: raw_scores(model, tokenizer, texts, cfg.max_length, cfg.eval_batch_size)
    train_mean = float(np.mean([g.grade for g in train_grades]))
    metrics = ranking_metrics(score, dev_pairs, dev_grades, train_mean, cfg.rm_objective == "rating")
    reference = score([g.text for g in train_grades][:2000])
    center, scale = float(np.mean(reference)), float(np.std(reference)) or 1.0
    log_scalars(out, {f"eval/{k}": v for k, v in metrics.items()}, trainer.state.global_step)
    print("[" + stage + "] held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    def save(directory):
        trainer.save_model(str(directory))
        (directory / RM_META).write_text(json.dumps(
            {"backbone": cfg.rm_backbone, "objective": cfg.rm_objective, "center": center, "scale": scale,
             "with_prompt": False, "max_length": cfg.max_length}, indent=2))

    save_atomically(out / "final", save)
    sets = ("Humicroedit task-2 dev (pairs)", "Humicroedit task-1 dev (grades)") if data_dir else ("sample", "sample")
    report = ["| metric | held-out | from |", "|---|---|---|",
              f"| pairwise accuracy | {metrics['pairwise_accuracy']:.4f} | {sets[0]}, {len(dev_pairs)} pairs |",
              f"| Spearman | {metrics['spearman']:.4f} | {sets[1]}, {len(dev_grades)} edits |",
              *([f"| RMSE | {metrics['rmse']:.4f} | {sets[1]} |"] if "rmse" in metrics else []),
              f"| mean baseline RMSE | {metrics['mean_baseline_rmse']:.4f} | {sets[1]} |", "",
              f"trained on {size} {'pairs' if cfg.rm_objective == 'pairwise' else 'graded edits'}, "
              f"steps {trainer.state.global_step}; reward = sigmoid((score - {center:.3f}) / {scale:.3f})", "",
              f"weights moved: {moved}"]
    return finish_stage(out, stage, {
        "objective": cfg.rm_objective, "held_out": metrics, "train_size": size, "steps": trainer.state.global_step,
        "center": center, "scale": scale, "update_check": moved, "model_dir": str(out / "final")}, report, started,
        headline=", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(RMArgs, "rm", argv)
    if cfg.rm_objective != "classify":
        return train_ranking(cfg)
    # 1. data: labeled texts, stratified held-out split
    rows = load_labeled(cfg.labeled_sources, cfg.data_dir, cfg.langs, cfg.max_rows_per_source, cfg.seed)
    if cfg.dry_run:
        return dry_run(cfg, "rm", labeled_rows=len(rows), labeled_sources=cfg.labeled_sources,
                       humor_rows=sum(r.label for r in rows))
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, "rm")
    started = start_clock(resume)           # the wall time of earlier segments counts
    labels = [r.label for r in rows]
    if len(set(labels)) < 2:
        raise ValueError(f"reward-model data has a single class ({labels[0]}) in sources {cfg.labeled_sources}")
    train_rows, test_rows = train_test_split(rows, test_size=cfg.test_size, stratify=labels, random_state=cfg.seed)
    print(f"[rm] {len(train_rows)} train / {len(test_rows)} held-out texts from {cfg.labeled_sources} "
          f"({sum(labels)} humor, {len(labels) - sum(labels)} not)")

    # 2. model: the backbone with a fresh 2-label head, and its own tokenizer
    model, tokenizer = load_classifier(cfg.rm_backbone)
    annotated = annotated_prompt_by_text(annotations_of(cfg.annotations, cfg.run_dir()))

    def to_dataset(part: list[LabeledText]) -> Dataset:
        texts = [r.text for r in part]
        if cfg.with_prompt:
            enc = tokenizer([instruction_for(r, annotated) for r in part], texts, truncation=True, max_length=cfg.max_length)
        else:
            enc = tokenizer(texts, truncation=True, max_length=cfg.max_length)
        return Dataset.from_dict({**enc, "labels": [r.label for r in part]})

    train_ds, test_ds = to_dataset(train_rows), to_dataset(test_rows)

    # 3. train
    args = trainer_config(TrainingArguments, cfg, out, per_device_eval_batch_size=cfg.eval_batch_size)
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[tensorboard_callback(out), StageState(started)])
    sentinel = UpdateSentinel(model, classifier_probe(tokenizer, sample_texts()[:4]))
    train_result = trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(model, "rm", trainer.state.global_step)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]     # every segment's, after a resume
    train_loss = sum(losses) / len(losses) if losses else train_result.training_loss

    # 4. held-out metrics
    logits = torch.tensor(trainer.predict(test_ds).predictions)             # (N, 2)
    p_humor = torch.softmax(logits.float(), dim=-1)[:, 1].tolist()
    metrics = classification_metrics([r.label for r in test_rows], p_humor)
    majority = max(np.mean([r.label for r in test_rows]), 1 - np.mean([r.label for r in test_rows]))
    log_scalars(out, {f"eval/{k}": v for k, v in metrics.items()}, trainer.state.global_step)
    print("[rm] held-out: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) +
          f" (majority-class accuracy {majority:.3f})")

    # 5. save: weights + tokenizer + which label is humor, atomically
    def save(directory):
        trainer.save_model(str(directory))
        (directory / RM_META).write_text(json.dumps(
            {"backbone": cfg.rm_backbone, "with_prompt": cfg.with_prompt, "humor_label": 1,
             "max_length": cfg.max_length}, indent=2))

    save_atomically(out / "final", save)
    report = ["| metric | held-out |", "|---|---|", *[f"| {k} | {v:.4f} |" for k, v in metrics.items()],
              f"| majority-class accuracy | {majority:.4f} |", "",
              f"train texts {len(train_rows)}, held-out {len(test_rows)}, steps {trainer.state.global_step}, "
              f"mean train loss {train_loss:.4f}", "", f"weights moved: {moved}"]
    return finish_stage(out, "rm", {
        "held_out": metrics, "majority_accuracy": float(majority), "train_size": len(train_rows),
        "test_size": len(test_rows), "steps": trainer.state.global_step,
        "train_loss": train_loss, "update_check": moved, "model_dir": str(out / "final")},
        report, started, headline=", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
