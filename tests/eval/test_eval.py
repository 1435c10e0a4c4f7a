"""Evaluation, generation, chat, export and submission, on the tiny pipeline run (session fixture `run` in conftest)."""

import json
import math
from pathlib import Path

import pytest
import torch

from common.io import read_jsonl
from common.models import adapter_chain, load_base_policy
from common.stage_configs import EvalArgs
from eval.generate import main as generate
from eval.metrics import perplexity, summarize

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml")


def test_eval_compares_base_sft_grpo_on_the_same_prompts(run):
    run_dir, s = run
    metrics = s["eval"]["metrics"]
    assert list(metrics) == ["base", "sft", "grpo", "ppo", "dpo", "dpop"] and list(s["eval"]["skipped"]) == ["rloo", "pgcl"]
    rows = {name: read_jsonl(run_dir / "eval" / f"{name}.jsonl") for name in metrics}
    ids = [r["id"] for r in rows["base"]]
    assert all([r["id"] for r in rows[name]] == ids for name in rows)          # same prompts, same order
    assert len(ids) == 2 * len(set(ids))                                      # samples_per_prompt 2
    for name, m in metrics.items():
        for key, value in summarize(rows[name], EvalArgs()).items():       # metrics.json agrees with the rows on disk
            assert m[key] == pytest.approx(value), (name, key)
        assert m["stop_rate"] == sum(r["finished"] for r in rows[name]) / len(rows[name])
        assert math.isfinite(m["perplexity"]) and m["perplexity"] > 1
        for key in ("coverage", "dist2_corpus", "dist1_sentence", "mean_rm_reward", "script_drift_rate",
                    "repetition_rate", "mean_length"):
            assert key in m, (name, key)
    assert "win_rate" in metrics["grpo"] and "win_rate" not in metrics["base"]
    report = (run_dir / "report.md").read_text()
    for needle in ("| metric | base | sft | grpo | ppo | dpo | dpop |", "| stop rate (EOS) |", "## Reward model (held-out)",
                   "![grpo_rewards](plots/grpo_rewards.png)",
                   "![ppo_rewards](plots/ppo_rewards.png)", "| ppo | ", "| Dist-2 corpus |", "| perplexity (reference LM) |"):
        assert needle in report, needle
    png = run_dir / "plots" / "grpo_rewards.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_generate_cli_writes_scored_rows_for_a_stage_and_its_parents(run, tmp_path):
    run_dir, _ = run
    assert [p.parent.name for p in adapter_chain(run_dir / "grpo" / "final")] == ["sft", "grpo"]
    out = tmp_path / "g.jsonl"
    rows = generate(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name,
                     "--policy", "grpo", "--words", "cactus,lawsuit", "--headline", "Cat elected mayor",
                     "--lang", "en", "--samples_per_prompt", "3", "--out", str(out)])
    assert read_jsonl(out) == rows and len(rows) == 6
    words = [r for r in rows if r["prompt_type"] == "words"]
    assert len(words) == 3 and all(r["words"] == ["cactus", "lawsuit"] and r["coverage_reward"] is not None for r in words)
    for r in rows:
        assert {"text", "finished", "rm_reward", "no_eos_penalty", "script_drift_penalty", "total"} <= set(r)
        assert r["no_eos_penalty"] == (0.0 if r["finished"] else 1.0)
    with pytest.raises(FileNotFoundError, match="policy 'pgcl'"):
        generate(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name, "--policy", "pgcl"])


def test_perplexity_matches_the_models_own_loss():
    model, tok = load_base_policy("tiny:llama")
    prompt, completion = "Tell a joke:", " the cat sat on the mat"
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + c])
    labels = torch.tensor([[-100] * len(p) + c])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss        # HF's mean CE over the completion tokens
    # batched with a longer second example, so padding must not count
    ppl = perplexity(model, tok, [prompt, prompt + " and more words here"], [completion, completion])
    ppl_single = perplexity(model, tok, [prompt], [completion])
    assert ppl_single == pytest.approx(math.exp(float(loss)), rel=1e-5)
    assert ppl != ppl_single  # the second example has a different context, so the mean changes


def test_read_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "o.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "x", "lang": "en"}) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"o.jsonl:2: not a JSON object"):
        read_jsonl(bad)
    bad.write_text(json.dumps({"id": "a", "lang": "en"}) + "\n")
    with pytest.raises(ValueError, match=r"o.jsonl:1: row has no 'text' field"):
        read_jsonl(bad)


def test_export_merges_into_a_plain_folder_with_identical_greedy_outputs(run, tmp_path):
    from transformers import AutoModelForCausalLM

    from eval.export import main as export
    run_dir, _ = run
    out = tmp_path / "merged"
    result = export(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name,
                     "--policy", "grpo", "--out", str(out), "--max_new_tokens", "12"])
    assert result["greedy_identical"] == result["greedy_checked"] == 4
    assert (out / "model.safetensors").is_file() and not list(out.glob("adapter_*"))
    assert AutoModelForCausalLM.from_pretrained(str(out)).num_parameters() > 0
    with pytest.raises(FileExistsError, match="never overwrites"):
        export(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name,
                "--policy", "grpo", "--out", str(out)])


def test_submission_picks_covering_samples_and_validation_lists_every_failure(run, tmp_path):
    from data.loaders import read_task_tsv
    from eval.metrics import best_of_rows
    from eval.submit import main as submit
    from eval.submit import validate, write_submission

    run_dir, _ = run
    tsv = tmp_path / "task-a-en.tsv"
    tsv.write_text("id\tword1\tword2\theadline\nen_0001\t-\t-\tCat elected \"mayor\n"
                   "en_0002\tcactus\tlawsuit\t-\nen_0003\tpiano\tvolcano\t-\n")
    report = submit(["--tsv", str(tsv), "--best_of", "2", "--config", TINY, "--runs_dir", str(run_dir.parent),
                     "--run_name", run_dir.name, "--policy", "grpo", "--langs", "[en]", "--out", str(tmp_path / "sub.tsv")])
    assert report["rows"] == report["inputs"] == 3 and report["missing_ids"] == 0
    # a tiny random model writes no real words: its failures are listed, one per problem
    assert report["failures"] == len(report["failure_list"])

    # select-best: coverage first, then rank_by
    rows = [{"id": "1", "coverage_reward": 0.5, "total": 0.9}, {"id": "1", "coverage_reward": 1.0, "total": 0.4}]
    assert best_of_rows(rows, "total")[0]["total"] == 0.4 and best_of_rows([rows[0]], "total")[0]["total"] == 0.9
    assert report["rank_by"] == "total"

    tasks = read_task_tsv(tsv)
    good = tmp_path / "good.tsv"
    write_submission(good, [{"id": "en_0001", "text": "The cat won by a whisker."},
                            {"id": "en_0002", "text": "The cactus filed a lawsuit:\nprickly."},
                            {"id": "en_0003", "text": "My piano erupted like a volcano."}])
    assert validate(good, tasks, 0.05)["valid"]                     # the newline was folded into one line
    bad = tmp_path / "bad.tsv"
    write_submission(bad, [{"id": "en_0001", "text": "   "}, {"id": "en_0002", "text": "The cactus sued."},
                           {"id": "en_0002", "text": "again"}, {"id": "en_0009", "text": "x"}])
    failures = validate(bad, tasks, 0.05)["failure_list"]
    assert failures == ["line 2: en_0001: empty text",
                        "line 3: en_0002: required word(s) missing: ['lawsuit']",
                        "line 4: id en_0002 repeated (first on line 3)",
                        "line 5: id en_0009 is not an input id",
                        "id en_0003 missing"]
    zh = tmp_path / "zh.tsv"
    zh.write_text("id\ttext\nen_0001\tدمش دمش دمش joke\n")
    assert any("outside the en script" in f for f in validate(zh, tasks, 0.05)["failure_list"])


def test_chat_reads_prompts_and_prints_jokes_with_their_rewards(run, monkeypatch, capsys):
    from eval.generate import _parse_chat_line

    assert _parse_chat_line("words: cactus, lawsuit", "en", 0).words == ("cactus", "lawsuit")
    assert _parse_chat_line("词语: 冰箱、减肥".replace("词语", "words"), "zh", 1).words == ("冰箱", "减肥")
    assert _parse_chat_line("headline: Cat elected mayor", "en", 2).headline == "Cat elected mayor"
    assert _parse_chat_line("Cat elected mayor", "en", 3).prompt_type == "headline"
    with pytest.raises(ValueError, match="needs two words"):
        _parse_chat_line("words: cactus", "en", 4)

    run_dir, _ = run
    lines = iter(["words: cactus, lawsuit", "words: only", "Cat elected mayor", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    generate(["--config", TINY, "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name, "--policy", "sft",
              "--chat", "--lang", "en", "--samples_per_prompt", "2"])
    out = capsys.readouterr()
    assert out.out.count("'total':") == 4 and "'coverage_reward':" in out.out     # 2 prompts x 2 samples
    assert "needs two words" in out.err


@pytest.mark.parametrize("body,message", [
    (None, "file not found"),
    ("id\tword1\tword2\theadline\nen_1\tcactus\t-\t-\n", r"task-a-en\.tsv:2: 'words' must hold two words"),
    ("id\tword1\theadline\nen_1\tcactus\tx\n", r"missing column\(s\) \['word2'\]"),
])
def test_generate_reads_and_checks_its_prompt_file_before_loading_any_weights(tmp_path, monkeypatch, body, message):
    import eval.generate as gen
    def no_loading(*args, **kwargs):
        raise AssertionError("weights loaded before the prompt file was checked")
    monkeypatch.setattr(gen, "load_policy", no_loading)
    tsv = tmp_path / "task-a-en.tsv"
    if body is not None:
        tsv.write_text(body, encoding="utf-8")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        gen.main(["--config", TINY, "--runs_dir", str(tmp_path), "--policy", "base", "--tsv", str(tsv)])
