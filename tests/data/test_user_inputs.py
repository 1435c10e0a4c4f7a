"""What a user brings: their own reward components, data files in the ecosystem's shapes, TRL settings."""

import json
from pathlib import Path

import pytest

from common.stage_configs import RewardArgs
from reward.composite import build_components, component_names, score
from tests.conftest import TINY

REWARDS = '''
def exclamation_penalty(completions, **kwargs):
    """Share of characters that are '!'."""
    return [c.count("!") / max(1, len(c)) for c in completions]


def short_bonus(completions, lang=None, **kwargs):
    return [1.0 if len(c) < 20 else 0.0 for c in completions]


def broken_length(completions, **kwargs):
    return [0.5]


def broken_type(completions, **kwargs):
    return ["funny" for _ in completions]


def _helper(x):                      # private: not a component
    return x


def not_a_reward(text):              # wrong signature: not a component
    return 0.0
'''


@pytest.fixture
def reward_file(tmp_path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def test_reward_module_registers_its_reward_functions_by_name(reward_file):
    cfg = RewardArgs(reward_module=str(reward_file),
                     reward_weights={"words": {"coverage_reward": 1.0, "exclamation_penalty": -2.0, "short_bonus": 0.5}})
    assert component_names(cfg) == ["coverage_reward", "exclamation_penalty", "short_bonus"]
    fns = build_components(cfg)
    out = score(fns, ["cactus lawsuit!!", "a cactus and a long lawsuit story"], ["words"] * 2, cfg.reward_weights,
                words=[["cactus", "lawsuit"]] * 2, lang=["en"] * 2)
    # text 1: coverage 1, '!' 2/16, short 1 -> 1 - 2 * 0.125 + 0.5 = 1.25; text 2: 1 - 0 + 0 = 1.0
    assert out["total"] == pytest.approx([1.25, 1.0]) and out["exclamation_penalty"][0] == pytest.approx(0.125)
    for bad, message in (("not_a_reward", "unknown reward component"), ("_helper", "unknown reward component")):
        with pytest.raises(ValueError, match=message):
            component_names(RewardArgs(reward_module=str(reward_file), reward_weights={"words": {bad: 1.0}}))


@pytest.mark.parametrize("name, message", [("broken_length", "broken_length returned 1 values for 2 completions"),
                                           ("broken_type", "broken_type returned 'funny' \\(not a number\\)")])
def test_a_reward_function_that_returns_garbage_is_refused_with_its_name(reward_file, name, message):
    cfg = RewardArgs(reward_module=str(reward_file), reward_weights={"headline": {name: 1.0}})
    with pytest.raises(ValueError, match=message):
        score(build_components(cfg), ["a", "b"], ["headline"] * 2, cfg.reward_weights, lang=["en"] * 2)


def test_missing_reward_module_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="reward_module: .*nope.py not found"):
        component_names(RewardArgs(reward_module=str(tmp_path / "nope.py")))


@pytest.mark.e2e
def test_own_reward_component_trains_grpo_and_is_logged_and_scored(run, reward_file, tmp_path):
    from reward.score import main as score_main
    from rl.grpo import main as grpo
    from tests.pipeline.test_pipeline import scalars

    run_dir, _ = run
    weights = "{headline: {rm_reward: 1.0, exclamation_penalty: -1.0}, words: {coverage_reward: 1.0, short_bonus: 0.2}}"
    common = ["--config", TINY, "--reward_module", str(reward_file), "--reward_weights", weights,
              "--reward_model", str(run_dir / "rm" / "final")]
    s = grpo(common + ["--runs_dir", str(tmp_path), "--max_steps", "2", "--sft_adapter", str(run_dir / "sft" / "final")])
    assert s["update_check"]["weights_moved"] and "headline/exclamation_penalty" in s["reward_functions"]
    tags = scalars(tmp_path / "tiny" / "grpo")
    assert "train/rewards/exclamation_penalty/mean" in tags and "train/rewards/words/short_bonus/mean" in tags
    rows = score_main(common + ["--prompt_type", "headline", "--lang", "en", "--text", "Wow!!"])
    assert rows[0]["exclamation_penalty"] == pytest.approx(0.4) and rows[0]["total"] == pytest.approx(rows[0]["rm_reward"] - 0.4)


# ---------------------------------------------------------------- your own data files


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# LLaMA-Factory's shipped data/dpo_en_demo.json shape: a JSON array of ShareGPT rows, a system turn inside
# `conversations` in some, multi-turn history in others; and its Chinese twin
LLAMAFACTORY_ROWS = [
    {"conversations": [{"from": "human", "value": "Tell me a joke about a cactus."}],
     "chosen": {"from": "gpt", "value": "The cactus filed a lawsuit: it was a sharp case."},
     "rejected": {"from": "gpt", "value": "Cactus."}},
    {"conversations": [{"from": "system", "value": "You are a comedian."},
                       {"from": "human", "value": "Who wrote Pride and Prejudice?"},
                       {"from": "gpt", "value": "Jane Austen."},
                       {"from": "human", "value": "Make a joke about her."}],
     "chosen": {"from": "gpt", "value": "Jane Austen walks into a ball and leaves engaged."},
     "rejected": {"from": "gpt", "value": "No."}},
    {"conversations": [{"from": "human", "value": "讲一个关于冰箱的笑话。"}], "system": "你是一个喜剧演员。",
     "chosen": {"from": "gpt", "value": "冰箱说它要减肥，因为里面全是剩菜。"}, "rejected": {"from": "gpt", "value": "不知道。"}},
]
TRL_CONVERSATIONAL_ROWS = [
    {"prompt": [{"role": "system", "content": "Be funny."}, {"role": "user", "content": "A joke about a toaster?"}],
     "chosen": [{"role": "assistant", "content": "My toaster retired: it was burned out."}],
     "rejected": [{"role": "assistant", "content": "Toasters toast."}]},
    {"chosen": [{"role": "user", "content": "A joke about penguins?"}, {"role": "assistant", "content": "Penguins wear tuxedos to every job interview."}],
     "rejected": [{"role": "user", "content": "A joke about penguins?"}, {"role": "assistant", "content": "Penguins are birds."}]},
]


def test_preference_rows_in_the_ecosystems_shapes_keep_system_and_history(tmp_path):
    from data.preferences import example_messages, read_preferences

    lf = tmp_path / "dpo_en_demo.json"
    lf.write_text(json.dumps(LLAMAFACTORY_ROWS, ensure_ascii=False), encoding="utf-8")
    first, second, third = read_preferences(lf)
    assert first.completions == ("The cactus filed a lawsuit: it was a sharp case.", "Cactus.") and first.context == ()
    assert [m["role"] for m in example_messages(second)] == ["system", "user", "assistant", "user"]
    assert example_messages(second)[-1]["content"] == "Make a joke about her." and second.task.id == f"{lf}[1]"
    assert third.context == ({"role": "system", "content": "你是一个喜剧演员。"},)
    assert (first.task.lang, third.task.lang) == ("en", "zh")                    # detected, not assumed English

    trl = write_jsonl(tmp_path / "trl.jsonl", TRL_CONVERSATIONAL_ROWS + [
        {"prompt": "A joke about a mattress?", "chosen": "It was sleeping on the job.", "rejected": "Beds.", "lang": "en"}])
    explicit, implicit, standard = read_preferences(trl)
    assert explicit.context == ({"role": "system", "content": "Be funny."},)
    assert explicit.completions == ("My toaster retired: it was burned out.", "Toasters toast.")
    assert implicit.task.headline == "A joke about penguins?" and implicit.completions[1] == "Penguins are birds."
    assert standard.task.headline == "A joke about a mattress?" and standard.context == ()

    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Joke about", "input": "a kettle", "system": "Be brief.",
                                                      "history": [["hi", "hello"]], "chosen": "It was steaming mad.", "rejected": "Kettle."}])
    [row] = read_preferences(alpaca)
    assert row.task.headline == "Joke about\na kettle" and [m["role"] for m in row.context] == ["system", "user", "assistant"]


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "chosen and rejected are the same text"),
    ({"prompt": "p", "chosen": "a", "rejected": None}, "'rejected' must be a string or a message"),
    ({"conversations": [{"from": "human"}], "chosen": "a", "rejected": "b"}, "conversations\\[0\\]"),
    ({"text": "no preference here"}, "not a preference row"),
])
def test_malformed_preference_rows_name_file_and_line(tmp_path, row, message):
    from data.preferences import read_preferences

    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok", "chosen": "yes", "rejected": "no"}, row])
    with pytest.raises(ValueError, match=f"bad.jsonl:2: .*{message}"):
        read_preferences(path)
    (tmp_path / "lines.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n7\n')
    with pytest.raises(ValueError, match="lines.jsonl:2: not a JSON object, got int"):
        read_preferences(tmp_path / "lines.jsonl")


def test_own_labeled_csv_and_prompt_jsonl_with_other_column_names(tmp_path):
    from data.loaders import load_labeled, load_prompts

    csv_path = tmp_path / "my_jokes.csv"
    csv_path.write_text("joke,funny,where\n\"I told my cactus a secret, it needled me.\",yes,en\nThe council met.,no,en\n"
                        "我的冰箱在减肥。,yes,zh\n", encoding="utf-8")
    source = {"path": str(csv_path), "columns": {"text": "joke", "label": "funny"}}
    with pytest.raises(ValueError, match=r"my_jokes.csv:2: 'funny' must be 0 or 1"):
        load_labeled([source], langs=["en", "zh"])
    csv_path.write_text(csv_path.read_text().replace(",yes,", ",1,").replace(",no,", ",0,"), encoding="utf-8")
    rows = load_labeled([source], langs=["en", "zh"])
    assert [(r.text[:9], r.label, r.lang) for r in rows] == [("I told my", 1, "en"), ("The counc", 0, "en"), ("我的冰箱在减肥。", 1, "zh")]
    with pytest.raises(ValueError, match=r"my_jokes.csv:2: no value in column 'text'.*columns: \{text: <your column>\}"):
        load_labeled([str(csv_path)])

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"title": "Cat elected mayor"}, {"words": ["cactus", "lawsuit"]},
                                                       {"word1": "penguin", "word2": "mortgage", "lang": "en"},
                                                       {"words": "冰箱、减肥"}])
    tasks = load_prompts([{"path": str(prompts), "columns": {"headline": "title"}}], langs=["en", "zh"])
    assert [(t.prompt_type, t.headline or t.words, t.lang) for t in tasks] == [
        ("headline", "Cat elected mayor", "en"), ("words", ("cactus", "lawsuit"), "en"),
        ("words", ("penguin", "mortgage"), "en"), ("words", ("冰箱", "减肥"), "zh")]
    bad = write_jsonl(tmp_path / "bad_prompts.jsonl", [{"title": "x"}, {"words": ["only one"]}])
    with pytest.raises(ValueError, match="bad_prompts.jsonl:2: 'words' must hold two words"):
        load_prompts([{"path": str(bad), "columns": {"headline": "title"}}])
    both = write_jsonl(tmp_path / "annotated.jsonl", [{"id": "j1", "joke": "My cat sued the dog.", "headline": "Cat sues dog",
                                                       "word1": "sue", "word2": "dog"}])
    assert [(t.id, t.prompt_type) for t in load_prompts([str(both)])] == [("j1:headline", "headline"), ("j1:words", "words")]
    none = write_jsonl(tmp_path / "none.jsonl", [{"text": "no prompt"}])
    with pytest.raises(ValueError, match="none.jsonl:1: a prompt needs a headline or two words"):
        load_prompts([str(none)])
    with pytest.raises(ValueError, match="unknown prompt source"):
        load_prompts(["no_such_source"])


def test_json_array_parquet_and_datasets_folder(tmp_path):
    import datasets

    from data.loaders import load_labeled

    rows = [{"text": "A joke.", "label": True}, {"text": "A headline.", "label": False}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "a.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    for source in ("a.json", "a.parquet", "saved"):
        got = load_labeled([str(tmp_path / source)], langs=["en"])
        assert [(r.label, r.lang) for r in got] == [(1, "en"), (0, "en")], source
    (tmp_path / "b.json").write_text('{"text": "not an array"}')
    with pytest.raises(ValueError, match="b.json: a .json data file must hold an array"):
        load_labeled([str(tmp_path / "b.json")])
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.csv:2: not UTF-8"):
        load_labeled([str(tmp_path / "latin1.csv")])


@pytest.mark.e2e
def test_own_files_run_end_to_end_on_the_tiny_config(run, tmp_path):
    """A CSV of labeled jokes trains the RM, a JSONL of prompts feeds GRPO, and DPO trains on a LLaMA-Factory
    ShareGPT JSON array and on a TRL conversational JSONL."""
    from reward.train_rm import main as train_rm
    from rl.dpo import main as dpo
    from rl.grpo import main as grpo

    run_dir, _ = run
    jokes = tmp_path / "jokes.csv"
    jokes.write_text("joke,is_funny\n" + "".join(f"My cactus number {i} filed a lawsuit.,1\nCouncil approves budget {i}.,0\n"
                                                 for i in range(20)))
    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "2"]
    rm = train_rm(common + ["--labeled_sources", f"[{{path: {jokes}, columns: {{text: joke, label: is_funny}}}}]"])
    assert rm["train_size"] + rm["test_size"] == 40 and rm["update_check"]["weights_moved"]

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"headline": f"Local cat elected mayor {i}"} for i in range(6)]
                          + [{"words": ["cactus", "lawsuit"], "id": f"w{i}"} for i in range(6)])
    g = grpo(common + ["--prompt_sources", f"[{prompts}]", "--eval_prompts", "2", "--sft_adapter",
                       str(run_dir / "sft" / "final"), "--reward_model", str(run_dir / "rm" / "final")])
    assert g["update_check"]["weights_moved"] and g["steps"] == 2

    lf = tmp_path / "dpo_en_demo.json"
    lf.write_text(json.dumps(LLAMAFACTORY_ROWS, ensure_ascii=False), encoding="utf-8")
    trl = write_jsonl(tmp_path / "trl.jsonl", TRL_CONVERSATIONAL_ROWS)
    for name, source in (("lf", lf), ("trl", trl)):
        d = dpo(common + ["--preference_source", str(source), "--output_dir", str(tmp_path / name),
                          "--sft_adapter", str(run_dir / "sft" / "final")])
        assert d["pairs"] == {"lf": 3, "trl": 2}[name] and d["update_check"]["weights_moved"], name
        written = [json.loads(line) for line in (tmp_path / name / "pairs.swift.jsonl").read_text().splitlines()]
        assert all(r["messages"][-1]["role"] == "assistant" for r in written)
    system_kept = [r for r in (json.loads(x) for x in (tmp_path / "lf" / "pairs.llamafactory.jsonl").read_text().splitlines())
                   if r.get("system")]
    assert {r["system"] for r in system_kept} == {"You are a comedian.", "你是一个喜剧演员。"}


# ---------------------------------------------------------------- TRL's settings, flags and errors


def test_trl_settings_under_their_own_names_with_our_short_names_as_aliases(tmp_path):
    from common.config import parse_config
    from common.stage_configs import GRPOArgs, PPOArgs, SFTArgs

    cfg = parse_config(GRPOArgs, "grpo", ["--config", TINY, "--per_device_train_batch_size", "4", "--beta", "0.1",
                                          "--gradient_accumulation_steps", "2", "--scale_rewards", "batch",
                                          "--mask_truncated_completions", "--report_to", "[wandb, tensorboard]"])
    assert (cfg.batch_size, cfg.kl_beta) == (4, 0.1)        # the alias fills our field, which the checks read
    assert cfg.trainer_args == {"gradient_accumulation_steps": 2, "scale_rewards": "batch",
                                "mask_truncated_completions": True, "report_to": ["wandb", "tensorboard"]}
    with pytest.raises(ValueError, match="'batch_size' \\(8\\) and its TRL name 'per_device_train_batch_size' \\(4\\) disagree"):
        parse_config(GRPOArgs, "grpo", ["--batch_size", "8", "--per_device_train_batch_size", "4"])
    preset = tmp_path / "p.yaml"
    preset.write_text("sft:\n  lr_scheduler_type: cosine\n  num_train_epochs: 2\ngradient_checkpointing: true\n")
    sft = parse_config(SFTArgs, "sft", ["--config", str(preset)])
    assert sft.epochs == 2 and sft.trainer_args == {"lr_scheduler_type": "cosine", "gradient_checkpointing": True}
    with pytest.raises(SystemExit, match="unknown flag --gradient_accumulation_steps \\(not a field of PPOArgs\\)"):
        parse_config(PPOArgs, "ppo", ["--gradient_accumulation_steps", "2"])    # PPO has its own loop
    with pytest.raises(SystemExit, match="unknown flag --no_such_setting"):
        parse_config(GRPOArgs, "grpo", ["--no_such_setting", "1"])
    assert parse_config(SFTArgs, "sft", ["--dry_run"]).dry_run is True                # a bare boolean flag


@pytest.mark.e2e
def test_grpo_runs_with_trl_names_and_passes_them_to_the_trainer(run, tmp_path):
    """python rl/grpo.py --config configs/tiny.yaml --per_device_train_batch_size 8 --gradient_accumulation_steps 2
    --report_to tensorboard: the settings reach GRPOConfig, and TensorBoard is still ours (one writer, <stage>/tb)."""
    from rl.grpo import main as grpo

    run_dir, _ = run
    s = grpo(["--config", TINY, "--runs_dir", str(tmp_path), "--max_steps", "2", "--per_device_train_batch_size", "8",
              "--gradient_accumulation_steps", "2", "--report_to", "tensorboard", "--sft_adapter",
              str(run_dir / "sft" / "final"), "--reward_model", str(run_dir / "rm" / "final")])
    assert s["update_check"]["weights_moved"] and s["steps"] == 2
    config = (tmp_path / "tiny" / "grpo" / "config.yaml").read_text()
    assert "gradient_accumulation_steps: 2" in config and "batch_size: 8" in config
    assert not list((tmp_path / "tiny" / "grpo").glob("runs/*"))          # no second TensorBoard writer


def test_a_user_error_is_one_line_without_traceback(tmp_path, capsys):
    from rl.grpo import entry

    with pytest.raises(SystemExit) as exit_info:
        entry(["--config", str(tmp_path / "missing.yaml")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: config file not found") and "Traceback" not in err
    with pytest.raises(SystemExit):
        entry(["--config", TINY, "--max_steps", "three"])
    assert "'max_steps' must be int, got 'three'" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):                                 # --debug: the real exception
        entry(["--config", str(tmp_path / "missing.yaml"), "--debug"])


def test_a_hub_id_that_cannot_be_reached_fails_at_once_naming_the_flag():
    import time

    from common.models import load_base_policy

    started = time.time()
    with pytest.raises(ValueError, match="policy_model 'no-such-org/no-such-model-xyz': not a local folder"):
        load_base_policy("no-such-org/no-such-model-xyz")
    assert time.time() - started < 30


def test_run_sh_flags_reach_every_stage_that_knows_them(tmp_path):
    """./run.sh passes one command line to SFT, RM, GRPO and evaluation: it becomes shared preset keys, replacing
    the preset's section values, so each stage takes what it knows."""
    import yaml

    from common.config import overlay_preset, parse_config
    from common.stage_configs import GRPOArgs, RMArgs

    raw = overlay_preset(TINY, ["--labeled_sources", "[demo]", "--max_steps", "3", "--dry_run"])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    rm, grpo = parse_config(RMArgs, "rm", ["--config", str(path)]), parse_config(GRPOArgs, "grpo", ["--config", str(path)])
    assert rm.labeled_sources == ["demo"] and rm.max_steps == grpo.max_steps == 3 and rm.dry_run and grpo.dry_run


def test_last_checkpoint_skips_one_cut_short_and_temporary_folders(tmp_path):
    from common.rundir import last_checkpoint

    for name, complete in (("checkpoint-2", True), ("checkpoint-10", True), ("checkpoint-12", False),
                           ("checkpoint-14.tmp", True)):
        (tmp_path / name).mkdir()
        if complete:
            (tmp_path / name / "trainer_state.json").write_text("{}")
            (tmp_path / name / "humor_rl_state.json").write_text("{}")
    (tmp_path / "checkpoint-12" / "trainer_state.json").write_text("{}")    # the Trainer's part only: cut short
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"       # 12 was killed mid-save; 14.tmp is not one
    assert last_checkpoint(tmp_path / "none") is None


def test_preference_columns_can_be_mapped(tmp_path):
    from data.preferences import read_preferences

    path = write_jsonl(tmp_path / "pairs.jsonl", [{"question": "A joke about soup?", "good": "Souper.", "bad": "Soup."}])
    [row] = read_preferences({"path": str(path), "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}})
    assert row.task.headline == "A joke about soup?" and row.completions == ("Souper.", "Soup.")


def test_a_header_with_a_repeated_column_is_refused(tmp_path):
    from data.loaders import load_labeled

    path = tmp_path / "dup.csv"
    path.write_text("text,label,text\nA joke,1,another text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dup.csv:1: column\(s\) \['text'\] appear more than once"):
        load_labeled([str(path)], None, ["en"], None, 0)


@pytest.mark.parametrize("flag, value", [("learning_rate", "inf"), ("learning_rate", "nan"), ("kl_beta", "inf")])
def test_non_finite_numbers_are_refused_before_anything_loads(flag, value):
    from common.config import parse_config
    from common.stage_configs import GRPOArgs

    with pytest.raises(ValueError, match=f"{flag} must be a finite number"):
        parse_config(GRPOArgs, "grpo", ["--config", TINY, f"--{flag}", value])


def test_a_repeated_prompt_id_is_refused_with_both_places(tmp_path):
    from data.loaders import load_prompts

    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "headline": "A"}, {"id": "y", "headline": "B"},
                                              {"id": "x", "words": "cactus, lawsuit"}])
    with pytest.raises(ValueError, match=r"p.jsonl:3: id 'x' already used at .*p.jsonl:1"):
        load_prompts([str(path)], None, ["en"])
    other = write_jsonl(tmp_path / "q.jsonl", [{"id": "y", "headline": "C"}])
    ok = write_jsonl(tmp_path / "r.jsonl", [{"id": "x", "headline": "A"}, {"id": "y", "headline": "B"}])
    with pytest.raises(ValueError, match=r"id\(s\) \['y'\] occur more than once across the sources"):
        load_prompts([str(ok), str(other)], None, ["en"])


def test_a_source_that_gives_no_rows_beside_others_is_named(tmp_path, capsys):
    from data.loaders import load_prompts

    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    ok = write_jsonl(tmp_path / "ok.jsonl", [{"id": "x", "headline": "A headline"}])
    assert len(load_prompts([str(ok), str(empty)], None, ["en"])) == 1
    assert f"prompt source '{empty}' gave no rows (0 read" in capsys.readouterr().out


@pytest.mark.parametrize("flag, value, message", [
    ("gradient_accumulation_steps", "0", "gradient_accumulation_steps must be >= 1, got 0"),
    ("weight_decay", "-0.1", "weight_decay must be >= 0, got -0.1"),
    ("adam_epsilon", "inf", "adam_epsilon must be a finite number"),
])
def test_pass_through_trainer_settings_are_range_checked_before_anything_loads(flag, value, message):
    from common.config import parse_config
    from common.stage_configs import SFTArgs

    with pytest.raises(ValueError, match=message):
        parse_config(SFTArgs, "sft", ["--config", TINY, f"--{flag}", value])


def test_preference_rows_take_the_language_of_their_instruction_by_script(tmp_path):
    """Chinese instructions holding Latin names or answered with English code are Chinese rows; an English row
    naming a Chinese person stays English (Han characters weigh as words, not letters)."""
    from data.preferences import read_preferences
    rows = [{"conversations": [{"from": "human", "value": "请启动一个ExpressJS服务器"}],
             "chosen": {"from": "gpt", "value": "const express = require('express'); const app = express(); app.listen(3000);"},
             "rejected": {"from": "gpt", "value": "npm install"}},
            {"prompt": "用Python写一个笑话", "chosen": "print('Why did the chicken cross the road? To get to the other side')",
             "rejected": "print('hi')"},
            {"prompt": "Tell a joke about my friend 李明", "chosen": "李明 bought a cactus for company.", "rejected": "No."},
            {"prompt": "¿Por qué el cactus no tiene amigos?", "chosen": "Porque pincha.", "rejected": "No sé."}]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    assert [ex.task.lang for ex in read_preferences(path)] == ["zh", "zh", "en", "es"]


@pytest.mark.parametrize("kind", ["labeled_csv", "prompt_jsonl", "preference_json", "vote_jsonl"])
def test_a_field_of_600k_characters_is_refused_with_its_place(tmp_path, kind):
    """A quote left open swallows the rest of a file into one field: refused with file, row and column, never
    tokenized whole or cut without a word."""
    from data.files import MAX_FIELD_CHARS
    from data.loaders import load_labeled, load_prompts
    from data.preferences import read_preferences, read_votes
    huge = "ha" * 300_000                                      # 600,000 characters
    assert len(huge) > MAX_FIELD_CHARS >= 10_000
    if kind == "labeled_csv":
        path = tmp_path / "jokes.csv"
        path.write_text(f'text,label\nA short joke.,1\n"{huge}",0\n', encoding="utf-8")
        load = lambda: load_labeled([str(path)])
        place = "jokes.csv:3: 'text'"
    elif kind == "prompt_jsonl":
        path = write_jsonl(tmp_path / "prompts.jsonl", [{"headline": "Cat elected mayor"}, {"headline": huge}])
        load = lambda: load_prompts([str(path)])
        place = "prompts.jsonl:2: 'headline'"
    elif kind == "preference_json":
        path = tmp_path / "pairs.json"
        path.write_text(json.dumps([{"instruction": "Tell a joke", "chosen": "A cat walks in.", "rejected": huge}]))
        load = lambda: read_preferences(path)
        place = r"pairs.json\[0\]: 'rejected'"
    else:
        path = write_jsonl(tmp_path / "votes.jsonl", [{"theme": "cats", "a": huge, "b": "A cat walks in.", "winner": "b"}])
        load = lambda: read_votes(path)
        place = "votes.jsonl:1: 'a'"
    with pytest.raises(ValueError, match=place + r" is 600,000 characters long, above the limit"):
        load()


def test_a_task_row_with_both_a_headline_and_words_follows_one_rule_in_every_reader(tmp_path):
    """MWAHAHA's reader and the reader of your own prompt files: a row asks for one task. Both filled is refused
    in both (naming the row), unless prompt_type picks one; a stray quote stays part of the headline."""
    from data.loaders import load_prompts, read_task_tsv
    body = 'id\tword1\tword2\theadline\nen_1\t-\t-\tMan says "hello\nen_2\tcactus\tlawsuit\tCat elected "mayor\n'
    mwahaha = tmp_path / "task-a-en.tsv"
    mwahaha.write_text(body, encoding="utf-8")
    own = tmp_path / "my_prompts.tsv"
    own.write_text(body, encoding="utf-8")
    for read in (lambda: read_task_tsv(mwahaha), lambda: load_prompts([str(own)])):
        with pytest.raises(ValueError, match=r"\.tsv:3: the row has both a headline and two words"):
            read()
    own.write_text(body.replace("headline\n", "headline\tprompt_type\n").replace('hello\n', 'hello\t-\n')
                   .replace('"mayor\n', '"mayor\twords\n'), encoding="utf-8")
    first, second = load_prompts([str(own)])
    assert (first.prompt_type, first.headline) == ("headline", 'Man says "hello')
    assert (second.prompt_type, second.words) == ("words", ("cactus", "lawsuit"))


def test_a_console_command_exits_0_after_a_successful_run(tmp_path, monkeypatch):
    """A console script does sys.exit(entry()): an entry returning its summary dict would print it and exit 1."""
    from rl.grpo import entry
    argv = ["--config", TINY, "--dry_run", "true", "--runs_dir", str(tmp_path)]
    monkeypatch.setattr("sys.argv", ["humor-grpo", *argv])
    assert entry() is None
    with pytest.raises(SystemExit) as done:
        raise SystemExit(entry())
    assert done.value.code is None                                    # exit status 0
    assert entry(argv)["stage"] == "grpo"                             # called with argv (tests, tools): the result
