"""DPO / DPOP / PGCL: the losses against numbers worked by hand, the preference data and its file formats, and
short runs on the tiny model."""

import json
import math
from pathlib import Path

import pytest
import torch

from data.loaders import TaskPrompt
from data.preferences import (PreferenceExample, load_humicroedit, load_puns, pairs_from_samples, pun_examples,
                              read_humicroedit_pairs, read_preferences, write_preferences)
from rl.losses import dpo_loss, dpop_loss, pgcl_loss, seed_dpop_loss
from tests.conftest import TINY


def nll_sigmoid(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------- losses


def test_dpo_loss_by_hand():
    # margin = (-10 - -11) - (-12 - -11) = 2; beta 0.5 -> -log s(1)
    assert dpo_loss(t(-10), t(-12), t(-11), t(-11), 0.5)[0].item() == pytest.approx(nll_sigmoid(1.0), rel=1e-6)


def test_dpop_penalises_the_chosen_logprob_falling_below_the_reference_and_the_seed_formula_does_not():
    # pi_w -12 < ref_w -10 (the chosen completion lost 2 nats); pi_l -15, ref_l -11
    #   DPO margin = (-12 + 10) - (-15 + 11) = 2                    -> -log s(0.5 * 2) = 0.3133
    #   DPOP       = 2 - 0.5 * max(0, -10 + 12) = 1                 -> -log s(0.5 * 1) = 0.4741
    #   seed code  = (pi_w - pi_l) - (ref_w - ref_l) - 0.5 * max(0, -(pi_w - pi_l)) = 3 - 1 - 0 = 2 -> 0.3133
    args = (t(-12), t(-15), t(-10), t(-11))
    assert dpo_loss(*args, 0.5)[0].item() == pytest.approx(nll_sigmoid(1.0), rel=1e-6)
    assert dpop_loss(*args, 0.5, 0.5)[0].item() == pytest.approx(nll_sigmoid(0.5), rel=1e-6)
    assert seed_dpop_loss(*args, 0.5, 0.5)[0].item() == pytest.approx(nll_sigmoid(1.0), rel=1e-6)
    assert dpop_loss(*args, 0.5, 0.5)[0].item() != pytest.approx(seed_dpop_loss(*args, 0.5, 0.5)[0].item())
    # the seed's penalty fires on pi_w < pi_l instead, even when pi_w rose above the reference
    args = (t(-9), t(-8), t(-10), t(-12))          # DPO margin = 1 - 4 = -3; DPOP adds nothing (pi_w > ref_w)
    assert dpop_loss(*args, 0.5, 0.5)[0].item() == pytest.approx(dpo_loss(*args, 0.5)[0].item())
    assert seed_dpop_loss(*args, 0.5, 0.5)[0].item() == pytest.approx(nll_sigmoid(0.5 * (-3 - 0.5)), rel=1e-6)


def test_dpop_gradient_raises_the_chosen_logprob_more_than_dpo():
    grads = {}
    for name, fn in (("dpo", lambda *a: dpo_loss(*a, 0.5)), ("dpop", lambda *a: dpop_loss(*a, 0.5, 5.0))):
        chosen = t(-12).requires_grad_()
        fn(chosen, t(-15), t(-10), t(-11))[0].backward()
        grads[name] = chosen.grad.item()
    assert grads["dpop"] < grads["dpo"] < 0        # a gradient step raises log pi(y_w) faster under DPOP


def test_pgcl_three_way_loss_by_hand_with_explicit_weights():
    # r = beta (pi - ref), beta 0.5: r_gold 0.5, r_mid -0.5, r_fail -4.5
    #   gold term = -log s(0.5 + 0.5) = -log s(1); fail term = -log s(-0.5 + 4.5) = -log s(4)
    pi, ref = (t(-10), t(-12), t(-20)), (t(-11), t(-11), t(-11))
    gold, fail = nll_sigmoid(1.0), nll_sigmoid(4.0)
    spec = pgcl_loss(*pi, *ref, beta=0.5, gold_weight=1.0, fail_weight=0.5)[0].item()
    seed = pgcl_loss(*pi, *ref, beta=0.5, gold_weight=0.5, fail_weight=1.0)[0].item()
    assert spec == pytest.approx(gold + 0.5 * fail, rel=1e-6)          # SPEC: gamma on the y* > fail term
    assert seed == pytest.approx(0.5 * gold + fail, rel=1e-6)          # the seed's code: gamma on the gold term


# ---------------------------------------------------------------- data


def test_humicroedit_pairs_drop_ties_and_follow_the_label(tmp_path):
    pairs = load_humicroedit(None)                     # the shipped sample in task-2 format
    assert len(pairs) == 9                             # 10 rows, one tie
    first = pairs[0]
    assert first.task.headline == "City council approves new budget for road repairs"
    assert first.completions == ("City council approves new trampoline for road repairs",
                                 "City toddlers approves new budget for road repairs")
    third = pairs[2]                                   # label 2: the second edit is funnier
    assert third.completions[0] == "Senator announces plan to cut hair"
    assert len(load_humicroedit(None, min_grade_gap=1.3)) == 5         # mean-grade gaps 1.0-1.8 in the sample
    bad = tmp_path / "bad.csv"
    bad.write_text("id,original1,edit1,grades1,meanGrade1,original2,edit2,grades2,meanGrade2,label\n"
                   "a-b,A <b/> c,x,1,1.0,A b <c/>,y,1,0.5,3\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: label must be 0, 1 or 2"):
        read_humicroedit_pairs(bad)


def test_preference_files_round_trip_in_both_formats(tmp_path):
    task = TaskPrompt("w1", "en", "words", words=("cactus", "lawsuit"))
    pun = TaskPrompt("p1", "zh", "homophonic", words=("逃", "桃"))
    examples = [PreferenceExample(task, ("The cactus filed a lawsuit.", "A cactus."), "x"),
                PreferenceExample(pun, ("桃子必须逃", "逃跑的桃", "今天天气好"), "x")]
    for fmt in ("swift", "llamafactory"):
        path = tmp_path / f"{fmt}.jsonl"
        write_preferences(path, examples, fmt)
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        if fmt == "swift":
            assert rows[0]["messages"][1] == {"role": "assistant", "content": "The cactus filed a lawsuit."}
            assert rows[0]["rejected_response"] == "A cactus." and rows[1]["gold_response"] == "桃子必须逃"
        else:
            assert rows[0]["chosen"] == {"from": "gpt", "value": "The cactus filed a lawsuit."}
            assert rows[0]["conversations"][0]["from"] == "human" and rows[1]["gold"]["value"] == "桃子必须逃"
        back = read_preferences(path)
        assert [(e.task, e.completions) for e in back] == [(e.task, e.completions) for e in examples]
    # a file from another tool: the user message becomes the prompt
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps({"conversations": [{"from": "human", "value": "Tell a joke"}],
                                   "chosen": {"from": "gpt", "value": "A"}, "rejected": {"from": "gpt", "value": "B"}})
                       + "\n" + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ValueError, match=r"foreign.jsonl:2: ms-swift rows need"):
        read_preferences(foreign)


def test_pairs_from_own_samples_prefer_structure_and_score():
    task = TaskPrompt("w", "en", "words", words=("cactus", "lawsuit"))
    rows = [{"id": "w", "text": "cactus lawsuit good", "total": 0.7}, {"id": "w", "text": "cactus lawsuit best", "total": 0.9},
            {"id": "w", "text": "only a cactus", "total": 0.95}, {"id": "w", "text": "nothing", "total": 0.8}]
    [pair] = pairs_from_samples({"w": task}, rows, min_score_gap=0.05)
    assert pair.completions == ("cactus lawsuit best", "nothing")   # best structure-ok vs worst structure failure
    close = [{"id": "w", "text": "cactus lawsuit a", "total": 0.80}, {"id": "w", "text": "cactus lawsuit b", "total": 0.78}]
    assert pairs_from_samples({"w": task}, close, min_score_gap=0.05) == []     # too close to call


def test_pun_examples_for_both_pgcl_stages():
    [pun] = [p for p in load_puns(["sample"], None, ["en"]) if p.pun_word == "weak"]
    rows = [{"id": pun.id, "text": t} for t in ("I feel weak today, ha", "It is weak, really weak", "Seven days.",
                                                "weak weak weak weak weak weak weak")]
    [pair] = pun_examples([pun], rows, three_way=False, max_repetition=0.2, ngram=3)
    assert pair.completions == (pun.text, "Seven days.")
    [triple] = pun_examples([pun], rows, three_way=True, max_repetition=0.2, ngram=3, rm_scores={"I feel weak today, ha": 0.9, "It is weak, really weak": 0.2})
    assert triple.completions == (pun.text, "It is weak, really weak", "Seven days.")   # y* = weakest by the RM
    assert pun_examples([pun], rows[2:], three_way=True, max_repetition=0.2, ngram=3) == []     # no structure-ok sample: repetition does not count


# ---------------------------------------------------------------- runs on the tiny model


def test_our_tokenization_matches_trls_dpo_trainer(tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from common.models import load_base_policy
    from common.stage_configs import DPOArgs
    from common.training import lora_config
    from rl.preference import tokenize_example

    model, tok = load_base_policy("tiny:llama")
    data = {"prompt": ["Write a joke about cats:", "Tell me: 这就是生活"], "chosen": [" A cat sat.", " 好的"],
            "rejected": [" No.", " 不"]}
    trainer = DPOTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_dict(data),
                         peft_config=lora_config(DPOArgs()),
                         args=DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_length=64))
    for i, row in enumerate(trainer.train_dataset):
        ours = tokenize_example(tok, data["prompt"][i], [data["chosen"][i], data["rejected"][i]], 64)
        assert ours["prompt_ids"] == row["prompt_ids"]
        assert ours["completion_ids"] == [row["chosen_ids"], row["rejected_ids"]]


def test_dpo_and_dpop_runs_log_the_chosen_logprob_and_move_the_lora(run):
    from tests.test_pipeline import scalars

    run_dir, s = run
    summaries = {loss: s[loss] for loss in ("dpo", "dpop")}
    for loss, s in summaries.items():
        assert s["steps"] == 4 and s["pairs"] == 9 and s["update_check"]["weights_moved"], loss
        assert s["update_check"]["output_change_max"] > 0 and s["chosen_logp_first"] is not None, loss
        tags = set(scalars(run_dir / loss))
        for tag in ("train/logps/chosen", "train/logps/rejected", "train/rewards/chosen", "train/rewards/rejected",
                    "train/rewards/margins", "train/rewards/accuracies", "train/loss"):
            assert tag in tags, (loss, tag)
        assert (run_dir / loss / "pairs.swift.jsonl").is_file() and (run_dir / loss / "pairs.llamafactory.jsonl").is_file()
        lineage = json.loads((run_dir / loss / "final" / "lineage.json").read_text())
        assert lineage["parents"] == [str(run_dir / "sft" / "final")]
    # same pairs, same order, same tokenization: the first logged chosen log-prob is the same under both engines
    first = {loss: scalars(run_dir / loss)["train/logps/chosen"][0] for loss in summaries}
    assert first["dpo"] == pytest.approx(first["dpop"], rel=1e-4)


def test_pgcl_runs_both_stages_and_reports_structure_success(run, tmp_path, monkeypatch):
    """The tiny random policy never writes a pun word, so sampling is replaced by canned samples that pass the
    structure check on even calls; the two stages, their data and the reports are the real ones."""
    import rl.pgcl as pgcl
    import rl.preference as preference

    run_dir, _ = run
    calls = []

    def canned(cfg, adapters, tasks, samples):
        calls.append([Path(a).parent.name for a in adapters])
        return [{"id": t.id, "text": (f"so {t.words[0]} indeed" if i % 2 == 0 else "no pun here")}
                for t in tasks for i in range(samples)]

    monkeypatch.setattr(pgcl, "sample_texts_for", canned)
    monkeypatch.setattr(preference, "sample_texts_for", canned)
    s = pgcl.main(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name,
                  "--output_dir", str(tmp_path / "pgcl"), "--langs", "[zh, en]", "--max_steps", "2"])
    assert set(s["structure_success"]) == {"sft", "stage1", "stage2"}
    assert all(v == {"word_present": 0.5, "ok": 0.5} for v in s["structure_success"].values())
    assert (tmp_path / "pgcl" / "structure_stage2.jsonl").is_file()
    assert s["stage1"]["examples"] == 8 and s["triples"] == 8 and s["update_check"]["weights_moved"]
    assert calls[0] == ["sft"] and calls[-1] == ["sft", "stage1", "pgcl"]      # stage 2 samples use the whole chain
    triples = read_preferences(tmp_path / "pgcl" / "triples.swift.jsonl")
    assert all(len(e.completions) == 3 and e.completions[2] == "no pun here" for e in triples)
    chain = json.loads((tmp_path / "pgcl" / "final" / "lineage.json").read_text())["parents"]
    assert chain == [str(tmp_path / "pgcl" / "stage1" / "final")]
