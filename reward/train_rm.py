"""Train a humor reward model.

classify (default): a 2-label sequence classifier (not humor / humor) on labeled texts, with a stratified held-out
split for accuracy, precision, recall, F1 and ROC-AUC, overall and per language.
pairwise / rating: a one-output ranking model on graded funniness (data/grades.py), with pairwise accuracy,
Spearman and RMSE per source on held-out rows.

    python reward/train_rm.py --config configs/tiny.yaml
    python reward/train_rm.py --config configs/cpu_default.yaml --data_dir ../shared/data --rm_objective pairwise \
        --graded_sources '[humicroedit, hahackathon, rjokes]'
"""

from __future__ import annotations

import json
import random

import numpy as np
import torch
from datasets import Dataset
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import train_test_split
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
from trl import RewardConfig, RewardTrainer

from common.cli import cli
from common.config import parse_config
from common.io import save_atomically
from common.models import load_classifier
from common.rundir import StageState, dry_run, finish_stage, prepare_stage_dir, start_clock
from common.stage_configs import RMArgs
from common.stats import bootstrap_mean_ci, longer_first
from common.tb import log_scalars, tensorboard_callback
from common.training import planned_steps, set_seed, trainer_config
from common.update_check import UpdateSentinel, classifier_probe, score_probe
from data.annotate import annotated_prompt_by_text, annotations_of
from data.grades import load_graded, pairs_from_grades, votes_source
from data.loaders import LabeledText, TaskPrompt, load_labeled, sample_texts
from data.prompts import pick_two_words, prompt_text
from reward.model import RM_META, encode_texts


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


def raw_scores(model, tokenizer, texts: list[str], max_length: int, batch_size: int,
               themes: list[str] | None = None) -> list[float]:
    """The one-output head's score of each text (a ranking or rating RM; beside its theme if given), in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = encode_texts(tokenizer, texts[i:i + batch_size], themes[i:i + batch_size] if themes else None,
                               max_length, padding=True, return_tensors="pt").to(model.device)
            out += model(**enc).logits[:, 0].float().tolist()
    return out


def ranking_metrics(score, dev_pairs: list[tuple[str, str]], dev_grades: list, train_mean_grade: float,
                    rating: bool, scale: tuple[float, float] = (0.0, 3.0)) -> dict[str, float]:
    """Held-out figures of a ranking RM (score: texts -> raw scores) on one source: pairwise accuracy on its pairs
    (the funnier one scored higher; ties count half) with a bootstrap 95 % interval (_lo, _hi), beside the
    'longer joke wins' baseline on the same pairs, Spearman with its grades, and for a rating RM the RMSE of its
    grade (the score mapped from [0, 1] back onto the source's scale) beside the mean baseline's (always predicting
    the training mean)."""
    funnier, other = score([a for a, _ in dev_pairs]), score([b for _, b in dev_pairs])
    wins = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(funnier, other)]
    longer = [longer_first(a, b) for a, b in dev_pairs]
    grades = [g.grade for g in dev_grades]
    predicted = score([g.text for g in dev_grades]) if grades else []
    mean = lambda values: sum(values) / len(values) if values else float("nan")
    (acc_lo, acc_hi), (len_lo, len_hi) = bootstrap_mean_ci(wins), bootstrap_mean_ci(longer)
    out = {"pairwise_accuracy": mean(wins), "pairwise_accuracy_lo": acc_lo, "pairwise_accuracy_hi": acc_hi,
           "longer_wins": mean(longer), "longer_wins_lo": len_lo, "longer_wins_hi": len_hi,
           "spearman": float(spearmanr(predicted, grades).statistic) if len(grades) > 1 else float("nan"),
           "mean_baseline_rmse": float(np.sqrt(mean([(g - train_mean_grade) ** 2 for g in grades])))}
    if rating:
        lo, hi = scale
        out["rmse"] = float(np.sqrt(np.mean([(lo + (hi - lo) * p - g) ** 2 for p, g in zip(predicted, grades)])))
    return out


def ranking_data(cfg: RMArgs) -> tuple[list, list[tuple[str, str]], list[tuple[str, float]], dict, dict]:
    """(sources, training pairs, (text, normalised grade) training rows, held-out plan, text -> theme) of the
    graded sources and people's votes (vote_sources).
    Pairs: each source's human pairs plus pairs of its graded rows whose normalised grades differ by
    pair_min_grade_gap; held out: each source's held-out pairs (human ones where it has them, else derived from its
    held-out grades by the same rule) and graded rows, never trained on."""
    sources = load_graded(cfg.graded_sources, cfg.data_dir, cfg.langs, cfg.max_rows_per_source, cfg.seed) \
        if cfg.graded_sources or not cfg.vote_sources else []
    sources += [votes_source(v, cfg.seed) for v in cfg.vote_sources]
    pairs, graded, held_out, themes = [], [], {}, {}
    for src in sources:
        pairs += src.human_pairs + pairs_from_grades(src.train, cfg.pair_min_grade_gap, src.scale, cfg.seed)
        graded += [(g.text, src.normalised(g.grade)) for g in src.train]
        held_pairs = src.held_out_pairs or pairs_from_grades(src.held_out, cfg.pair_min_grade_gap, src.scale, cfg.seed + 1)
        held_out[src.name] = {"pairs": held_pairs, "grades": src.held_out,
                              "train_mean": float(np.mean([g.grade for g in src.train])) if src.train else float("nan"),
                              "scale": src.scale, "lang": src.lang, "ties": src.ties,
                              "pairs_from": "human pairs" if src.held_out_pairs else "derived from grades"}
        themes.update(src.themes)
    return sources, pairs, graded, held_out, themes


def train_ranking(cfg: RMArgs) -> dict:
    """rm_objective pairwise (TRL RewardTrainer, Bradley-Terry) or rating (regression on grades normalised to
    [0, 1]): a one-output head whose score ranks funniness, trained on the graded sources (data/grades.py) of the
    chosen languages; its meta records the training scores' mean and std, so that the reward component
    rank_reward = sigmoid((score - mean) / std) sits in (0, 1) like P(humor)."""
    stage = cfg.stage_name
    on_sample = not cfg.data_dir and not cfg.vote_sources      # the shipped test sample: says nothing about people
    sources, pairs, graded, held_out, themes = ranking_data(cfg)
    if cfg.dry_run:
        size = len(pairs) if cfg.rm_objective == "pairwise" else len(graded)
        return dry_run(cfg, stage, rm_objective=cfg.rm_objective, train_pairs=len(pairs), graded_train=len(graded),
                       steps=planned_steps(cfg, size),
                       sources={s.name: {"lang": s.lang, "train": len(s.train), "held_out": len(s.held_out),
                                         "held_out_pairs": len(held_out[s.name]["pairs"])} for s in sources})
    set_seed(cfg.seed)
    out, resume = prepare_stage_dir(cfg, stage)
    started = start_clock(resume)
    model, tokenizer = load_classifier(cfg.rm_backbone, num_labels=1)
    callbacks = [tensorboard_callback(out), StageState(started, stage=stage)]
    theme_of = lambda texts: [themes.get(t, "") for t in texts] if cfg.with_prompt else None
    encode = lambda texts: encode_texts(tokenizer, texts, theme_of(texts), cfg.max_length)["input_ids"]
    if cfg.rm_objective == "pairwise":
        # pre-tokenized as an encoder does ([CLS] ... [SEP]), so TRL appends no EOS of its own
        data = Dataset.from_dict({"chosen_ids": encode([a for a, _ in pairs]), "rejected_ids": encode([b for _, b in pairs])})
        trainer = RewardTrainer(model=model, args=trainer_config(RewardConfig, cfg, out, max_length=cfg.max_length),
                                train_dataset=data, processing_class=tokenizer, callbacks=callbacks)
        size = len(pairs)
    else:
        model.config.problem_type = "regression"
        enc = encode_texts(tokenizer, [text for text, _ in graded], theme_of([text for text, _ in graded]), cfg.max_length)
        data = Dataset.from_dict({**enc, "labels": [grade for _, grade in graded]})
        trainer = Trainer(model=model, args=trainer_config(TrainingArguments, cfg, out), train_dataset=data,
                          processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer), callbacks=callbacks)
        size = len(graded)
    sentinel = UpdateSentinel(model, score_probe(tokenizer, sample_texts()[:4]))
    trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(model, stage, trainer.state.global_step)

    score = lambda texts: raw_scores(model, tokenizer, texts, cfg.max_length, cfg.eval_batch_size, theme_of(texts))
    metrics = {name: ranking_metrics(score, h["pairs"], h["grades"], h["train_mean"], cfg.rm_objective == "rating",
                                     h["scale"]) for name, h in held_out.items()}
    texts = [text for text, _ in graded] or sorted({t for pair in pairs for t in pair})   # votes alone: their jokes
    reference = score(random.Random(cfg.seed).sample(texts, min(2000, len(texts))))
    center, scale = float(np.mean(reference)), float(np.std(reference)) or 1.0
    log_scalars(out, {f"eval/{name}/{k}": v for name, m in metrics.items() for k, v in m.items()},
                trainer.state.global_step)
    headline = "; ".join(f"{name}: pairwise accuracy {m['pairwise_accuracy']:.3f} ({m['pairwise_accuracy_lo']:.3f}-"
                         f"{m['pairwise_accuracy_hi']:.3f}), longer wins {m['longer_wins']:.3f}, spearman "
                         f"{m['spearman']:.3f}" for name, m in metrics.items())
    print(f"[{stage}] held-out: {headline}")

    def save(directory):
        trainer.save_model(str(directory))
        (directory / RM_META).write_text(json.dumps(
            {"backbone": cfg.rm_backbone, "objective": cfg.rm_objective, "center": center, "scale": scale,
             "with_prompt": cfg.with_prompt, "max_length": cfg.max_length, "graded_sources": [s.name for s in sources],
             "langs": sorted({s.lang for s in sources}), "trained_on_sample": on_sample}, indent=2))

    save_atomically(out / "final", save)
    where = "" if cfg.data_dir else " (the shipped sample: a slice of the training rows, for tests only)"
    report = [f"held out{where}: pairs from each source's held-out file (human pairs where it has them), grades "
              "from the same rows; RMSE on the source's own scale", "",
              "| source | lang | pairs | pairwise accuracy (95 % CI) | longer joke wins (95 % CI) | graded rows | "
              "Spearman | RMSE | mean baseline RMSE |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in metrics.items():
        h = held_out[name]
        ties = f", {h['ties']} ties / neither not scored" if h["ties"] else ""
        report.append(f"| {name} | {h['lang']} | {len(h['pairs'])} ({h['pairs_from']}{ties}) | "
                      f"{m['pairwise_accuracy']:.3f} ({m['pairwise_accuracy_lo']:.3f} to {m['pairwise_accuracy_hi']:.3f}) | "
                      f"{m['longer_wins']:.3f} ({m['longer_wins_lo']:.3f} to {m['longer_wins_hi']:.3f}) | "
                      f"{len(h['grades'])} | {m['spearman']:.4f} | {m.get('rmse', float('nan')):.4f} | "
                      f"{m['mean_baseline_rmse']:.4f} |")
    report += ["", f"trained on {size} {'pairs' if cfg.rm_objective == 'pairwise' else 'graded texts'} from "
               f"{[s.name for s in sources]}{' (each text read beside its theme)' if cfg.with_prompt else ''}, "
               f"steps {trainer.state.global_step}; "
               f"reward = sigmoid((score - {center:.3f}) / {scale:.3f})", "", f"weights moved: {moved}"]
    return finish_stage(out, stage, {
        "objective": cfg.rm_objective, "held_out": metrics, "train_size": size, "steps": trainer.state.global_step,
        "graded_sources": [s.name for s in sources], "center": center, "scale": scale, "update_check": moved,
        "held_out_is_sample": on_sample, "with_prompt": cfg.with_prompt,
        "model_dir": str(out / "final")}, report, started, headline=headline)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(RMArgs, "rm", argv)
    if cfg.rm_objective != "classify":       # a ranking RM reads the rm section, then its own (rm_pairwise, rm_rating)
        return train_ranking(parse_config(RMArgs, cfg.stage_name, argv))
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
                      callbacks=[tensorboard_callback(out), StageState(started, stage="rm")])
    sentinel = UpdateSentinel(model, classifier_probe(tokenizer, sample_texts()[:4]))
    train_result = trainer.train(resume_from_checkpoint=resume)
    moved = sentinel.check(model, "rm", trainer.state.global_step)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]     # every segment's, after a resume
    train_loss = sum(losses) / len(losses) if losses else train_result.training_loss

    # 4. held-out metrics
    logits = torch.tensor(trainer.predict(test_ds).predictions)             # (N, 2)
    p_humor = torch.softmax(logits.float(), dim=-1)[:, 1].tolist()
    metrics = classification_metrics([r.label for r in test_rows], p_humor)
    by_lang = {lang: classification_metrics([r.label for r in test_rows if r.lang == lang],
                                            [p for p, r in zip(p_humor, test_rows) if r.lang == lang])
               for lang in sorted({r.lang for r in test_rows})}
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
              *(["| lang | held-out texts | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics),
                 *[f"| {lang} | {sum(r.lang == lang for r in test_rows)} | " + " | ".join(f"{v:.4f}" for v in m.values())
                   + " |" for lang, m in by_lang.items()], ""] if len(by_lang) > 1 else []),
              f"train texts {len(train_rows)}, held-out {len(test_rows)}, steps {trainer.state.global_step}, "
              f"mean train loss {train_loss:.4f}", "", f"weights moved: {moved}"]
    return finish_stage(out, "rm", {
        "held_out": metrics, "held_out_by_lang": by_lang, "majority_accuracy": float(majority), "train_size": len(train_rows),
        "test_size": len(test_rows), "steps": trainer.state.global_step,
        "train_loss": train_loss, "update_check": moved, "model_dir": str(out / "final")},
        report, started, headline=", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))


entry = cli(main)       # the console entry point: user errors in one line (--debug: traceback)

if __name__ == "__main__":
    entry()
