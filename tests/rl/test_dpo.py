"""DPO / DPOP / PGCL: the losses against numbers worked by hand, the preference data and its file formats, and
short runs on the tiny model."""

import json
import math
from pathlib import Path

import pytest
import torch

from data.loaders import TaskPrompt
from data.preferences import (
    PreferenceExample,
    load_humicroedit,
    load_puns,
    pairs_from_samples,
    pun_examples,
    read_humicroedit_pairs,
    read_preferences,
    write_preferences,
)
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
    assert spec == pytest.approx(gold + 0.5 * fail, rel=1e-6)          # gamma on the y* > fail term
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
    from tests.pipeline.test_pipeline import scalars

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


@pytest.mark.e2e
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
    for budget in (s["stage1"]["budget"], s["budget"]):             # every example fitted, none dropped unseen
        assert budget["dropped"] == {} and "prompts_cut" in budget and "completions_cut" in budget
    assert calls[0] == ["sft"] and calls[-1] == ["sft", "stage1", "pgcl"]      # stage 2 samples use the whole chain
    triples = read_preferences(tmp_path / "pgcl" / "triples.swift.jsonl")
    assert all(len(e.completions) == 3 and e.completions[2] == "no pun here" for e in triples)
    chain = json.loads((tmp_path / "pgcl" / "final" / "lineage.json").read_text())["parents"]
    assert chain == [str(tmp_path / "pgcl" / "stage1" / "final")]


# ---------------------------------------------------------------- the token budget: every pair accounted for

WORDS = "the cat sat on a mat and a dog ran past it while the moon rose over the quiet town".split()


def words(seed: int, n: int) -> str:
    """n words of filler text, different for each seed."""
    return " ".join(WORDS[(seed * 7 + i) % len(WORDS)] for i in range(n)) + "."


def llamafactory_row(i: int, turns: bool = True, chosen: str | None = None, rejected: str | None = None,
                     **extra) -> dict:
    """A long multi-turn LLaMA-Factory ShareGPT pair: a system turn and two long rounds of history before a long
    question (turns False: a short question alone), a long chosen and a short rejected answer."""
    history = [{"from": "system", "value": "You are helpful. " + words(i, 40)},
               {"from": "human", "value": words(i + 1, 200)}, {"from": "gpt", "value": words(i + 2, 150)}]
    question = {"from": "human", "value": f"Question {i}: " + words(i + 3, 60 if turns else 15)}
    return {"conversations": [*(history if turns else []), question],
            "chosen": {"from": "gpt", "value": chosen or f"Answer {i} yes: " + words(i + 4, 120)},
            "rejected": {"from": "gpt", "value": rejected or f"No {i}."}, **extra}


def write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text(json.dumps(rows, ensure_ascii=False))
    return str(path)


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from common.models import load_base_policy
    return load_base_policy("tiny:llama")[1]


def prompt_tokens(tokenizer, example) -> int:
    """Tokens of an example's whole formatted conversation (the tiny tokenizer adds no special tokens)."""
    from data.preferences import example_messages
    from data.prompts import format_conversation
    return len(tokenizer(format_conversation(tokenizer, example_messages(example)))["input_ids"])


def test_trl_tokenizes_the_fitted_pairs_whole_and_the_uncut_texts_lose_them(tmp_path, tiny_tokenizer):
    """Long multi-turn pairs, prompts cut on the left to 64 tokens and long answers to what 128 leaves: TRL's
    DPOTrainer keeps every pair and tokenizes exactly what fit_pairs measured; the uncut texts lose every pair."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from common.models import load_base_policy
    from common.stage_configs import DPOArgs
    from common.training import lora_config
    from rl.preference import fit_pairs, tokenize_example, trl_rows

    tok = tiny_tokenizer
    examples = read_preferences(write_rows(tmp_path / "lf.json", [llamafactory_row(i) for i in range(6)]))
    assert all(prompt_tokens(tok, ex) > 128 for ex in examples)               # each prompt alone exceeds max_length
    assert all(len(tok(" " + ex.completions[0])["input_ids"]) > 128 for ex in examples)    # every chosen too long
    assert all(len(tok(" " + ex.completions[1])["input_ids"]) + 1 < 128 - 64 for ex in examples)   # rejected fits
    pairs, counts = fit_pairs(tok, examples, max_prompt_tokens=64, max_length=128)
    assert counts == {"fitted": 6, "dropped": {}, "prompts_cut": 6, "completions_cut": 6}
    assert [p.example for p in pairs] == examples
    from data.preferences import example_messages
    from data.prompts import format_conversation
    wholes = [format_conversation(tok, example_messages(ex)) for ex in examples]
    assert all(whole.endswith(p.prompt) and len(p.prompt) < len(whole) for p, whole in zip(pairs, wholes))   # the end

    def trl_dataset(rows):
        model = load_base_policy("tiny:llama")[0]
        return DPOTrainer(model=model, processing_class=tok, train_dataset=Dataset.from_dict(rows),
                          peft_config=lora_config(DPOArgs()),
                          args=DPOConfig(output_dir=str(tmp_path / "trl"), report_to="none", use_cpu=True,
                                         max_length=128)).train_dataset

    trained = list(trl_dataset(trl_rows(pairs)))
    assert len(trained) == 6
    for row, pair in zip(trained, pairs):
        ours = tokenize_example(tok, pair.prompt, list(pair.completions), None)
        assert row["prompt_ids"] == ours["prompt_ids"]
        assert [row["chosen_ids"], row["rejected_ids"]] == ours["completion_ids"]
        assert len(row["prompt_ids"]) <= 64 and len(row["prompt_ids"]) + len(row["chosen_ids"]) == 128
        assert row["rejected_ids"][-1] == tok.eos_token_id
    whole = {"prompt": wholes, "chosen": [" " + ex.completions[0] for ex in examples],
             "rejected": [" " + ex.completions[1] for ex in examples]}
    assert len(trl_dataset(whole)) == 0                       # TRL drops every pair whose prompt reaches max_length


def test_a_chat_template_keeps_its_generation_prompt_and_one_bos(tiny_tokenizer):
    """With a template that writes the BOS the tokenizer also adds, a fitted prompt has one BOS as TRL tokenizes
    it (special tokens on), cut or not, and a cut one ends with the question and the generation prompt."""
    import copy

    from tokenizers import processors

    from rl.preference import fit_pairs

    tok = copy.deepcopy(tiny_tokenizer)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                                  special_tokens=[("<bos>", tok.bos_token_id)])
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    examples = [PreferenceExample(TaskPrompt("short", "en", "raw", headline="Tell a joke"), ("Ha.", "No."), "x"),
                PreferenceExample(TaskPrompt("long", "en", "raw", headline="And one about a moon?"),
                                  ("Yes.", "No."), "x", ({"role": "system", "content": words(1, 200)},))]
    pairs, counts = fit_pairs(tok, examples, max_prompt_tokens=64, max_length=128)
    assert counts["prompts_cut"] == 1 and counts["fitted"] == 2
    for pair in pairs:
        ids = tok(pair.prompt)["input_ids"]                  # as TRL tokenizes it
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
        assert pair.prompt.endswith(f"<|user|>\n{pair.example.task.headline}\n<|assistant|>\n")
    assert pairs[0].prompt == "<|user|>\nTell a joke\n<|assistant|>\n"
    assert len(tok(pairs[1].prompt, add_special_tokens=False)["input_ids"]) <= 64


def test_a_pair_that_cannot_fit_is_dropped_and_counted(tiny_tokenizer):
    """max_prompt_tokens 124 of max_length 128: a long conversation leaves 4 tokens or so, fewer than the 8 a
    completion needs; a short question leaves room, but two answers alike for longer than that room are the same
    text once cut."""
    from rl.preference import fit_pairs

    tok = tiny_tokenizer
    shared = "Answer: " + words(5, 150)
    rows = [llamafactory_row(0), llamafactory_row(1, turns=False),
            llamafactory_row(2, turns=False, chosen=shared + " So yes.", rejected=shared + " So no.")]
    long_prompt, fits, alike = [read_preferences_rows(rows)[i] for i in range(3)]
    assert prompt_tokens(tok, long_prompt) > 124 and len(tok(" " + long_prompt.completions[0])["input_ids"]) > 8
    room = 128 - prompt_tokens(tok, fits)
    assert room > 8 + 8 and len(tok(" " + shared)["input_ids"]) > room     # the shared part alone overflows
    pairs, counts = fit_pairs(tok, [long_prompt, fits, alike], max_prompt_tokens=124, max_length=128,
                              min_completion_tokens=8)
    assert [p.example for p in pairs] == [fits]
    assert counts == {"fitted": 1, "dropped": {"no_room_for_completion": 1, "identical_after_cut": 1},
                      "prompts_cut": 0, "completions_cut": 1}


def read_preferences_rows(rows: list[dict]) -> list[PreferenceExample]:
    """Rows parsed as a file of them would be."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        return read_preferences(write_rows(Path(d) / "rows.json", rows))


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory) -> str:
    """A fresh (zero) LoRA saved as an SFT adapter of tiny:llama: the DPO stage starts from it."""
    from peft import get_peft_model

    from common.models import fingerprint, load_base_policy, save_stage_adapter
    from common.stage_configs import DPOArgs
    from common.training import lora_config

    model, tok = load_base_policy("tiny:llama")
    base = fingerprint(model)
    path = tmp_path_factory.mktemp("sft") / "final"
    save_stage_adapter(path, get_peft_model(model, lora_config(DPOArgs())), tok, "tiny:llama", base_fingerprint=base)
    return str(path)


def dpo_argv(tmp_path: Path, source: str, adapter: str = "unused", *extra: str) -> list[str]:
    return ["--config", TINY, "--runs_dir", str(tmp_path / "runs"), "--run_name", "lf", "--sft_adapter", adapter,
            "--preference_source", source, "--max_prompt_tokens", "64", "--max_length", "128", *extra]


@pytest.mark.e2e
@pytest.mark.parametrize("loss", ["dpo", "dpop"])
def test_the_stage_trains_every_long_pair_and_accounts_for_it(tmp_path, sft_adapter, tiny_tokenizer, loss):
    from rl.dpo import main

    source = write_rows(tmp_path / "lf.json", [llamafactory_row(i) for i in range(6)])
    examples = read_preferences(source)
    prompts_over = sum(prompt_tokens(tiny_tokenizer, ex) > 64 for ex in examples)
    chosen_over = sum(len(tiny_tokenizer(" " + ex.completions[0])["input_ids"]) > 128 for ex in examples)
    s = main(dpo_argv(tmp_path, source, sft_adapter, "--loss", loss, "--max_steps", "1", "--batch_size", "2"))
    assert s["pairs"] == 6 and s["steps"] == 1
    assert s["pair_accounting"] == {"read": 6, "used": 6, "dropped": {}, "prompts_cut": prompts_over,
                                    "completions_cut": chosen_over, "max_prompt_tokens": 64, "max_length": 128}
    assert prompts_over == chosen_over == 6
    written = json.loads((tmp_path / "runs" / "lf" / loss / "summary.json").read_text())
    assert written["pair_accounting"]["used"] == 6


def test_too_many_pairs_dropped_is_refused_unless_allowed(tmp_path, capsys):
    from rl.dpo import entry, main

    rows = [llamafactory_row(i, turns=False) for i in range(3)] + [llamafactory_row(3)]
    source = write_rows(tmp_path / "lf.json", rows)
    argv = dpo_argv(tmp_path, source, "unused", "--max_prompt_tokens", "124", "--dry_run", "true")
    with pytest.raises(SystemExit) as stop:
        entry(argv)
    assert stop.value.code == 2
    message = capsys.readouterr().err.splitlines()[0]
    assert message.startswith("error: 1 of 4 preference pairs (25%) do not fit max_length 128")
    assert "no_room_for_completion 1" in message and "--max_dropped_share 0.25" in message
    plan = main(argv + ["--max_dropped_share", "0.25"])
    assert plan["pair_accounting"]["used"] == 3
    assert plan["pair_accounting"]["dropped"] == {"no_room_for_completion": 1}
    with pytest.raises(SystemExit):
        entry(argv + ["--max_dropped_share", "1.5"])
    assert "max_dropped_share must be in [0, 1]" in capsys.readouterr().err


def test_dry_run_reads_the_pairs_file_and_fails_as_a_run_would(tmp_path, capsys):
    from rl.dpo import entry, main

    for source, expected in ((str(tmp_path / "missing.json"), "missing.json: file not found"),
                             (write_rows(tmp_path / "bad.json", [llamafactory_row(0), {"conversations": [
                                 {"from": "human", "value": "hi"}], "chosen": {"from": "gpt", "value": "A"}}]),
                              "bad.json[1]: LLaMA-Factory rows need 'chosen' and 'rejected'")):
        with pytest.raises(SystemExit) as stop:
            entry(dpo_argv(tmp_path, source, "unused", "--dry_run", "true"))
        err = capsys.readouterr().err.splitlines()
        assert stop.value.code == 2 and len(err) == 2 and expected in err[0], err
    plan = main(dpo_argv(tmp_path, "humicroedit", "unused", "--dry_run", "true"))
    assert plan["pair_accounting"]["read"] == 9 and plan["pair_accounting"]["used"] == 9     # 10 rows, one tie


def test_langs_keep_a_file_s_pairs_in_those_languages_and_count_the_rest(tmp_path):
    from rl.dpo import main

    rows = [llamafactory_row(i, turns=False, lang="en") for i in range(3)]
    rows += [llamafactory_row(i, turns=False, lang="zh", chosen=f"好的{i}", rejected="不") for i in range(3, 5)]
    source = write_rows(tmp_path / "mixed.json", rows)
    plan = main(dpo_argv(tmp_path, source, "unused", "--langs", "[en]", "--dry_run", "true"))
    assert plan["pair_accounting"]["read"] == 5 and plan["pair_accounting"]["used"] == 3
    assert plan["pair_accounting"]["dropped"] == {"lang_zh": 2}
    both = main(dpo_argv(tmp_path, source, "unused", "--langs", "[en, zh]", "--dry_run", "true"))
    assert both["pair_accounting"]["used"] == 5 and both["pair_accounting"]["dropped"] == {}
