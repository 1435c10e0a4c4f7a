from pathlib import Path

import pytest

from data.loaders import (
    load_labeled,
    load_prompts,
    load_sample_labeled,
    load_sample_prompts,
    read_labeled_table,
    read_task_tsv,
    split_prompts,
)

ROOT = Path(__file__).resolve().parents[2]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_set_covers_three_languages_and_both_labels():
    rows = load_sample_labeled()
    assert {(r.lang, r.label) for r in rows} == {(lang, y) for lang in ("en", "zh", "es") for y in (0, 1)}
    assert len(rows) >= 200
    prompts = load_sample_prompts()
    assert {(p.lang, p.prompt_type) for p in prompts} == {(lang, t) for lang in ("en", "zh", "es") for t in ("headline", "words")}


def test_labeled_table_reads_true_false_and_01(tmp_path):
    f = write(tmp_path / "dev.csv", 'text,humor\n"A joke, with a comma",True\nA headline,False\n')
    rows = read_labeled_table(f, "text", "humor", "en", "colbert")
    assert [(r.text, r.label) for r in rows] == [("A joke, with a comma", 1), ("A headline", 0)]


def test_bad_label_names_file_and_line(tmp_path):
    f = write(tmp_path / "bad.csv", "id,joke,label\n1,ok,1\n2,bad,maybe\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: 'label' must be 0 or 1.*'maybe'"):
        read_labeled_table(f, "joke", "label", "zh", "ccl2019")


def test_empty_text_and_missing_column_are_errors(tmp_path):
    f = write(tmp_path / "empty.csv", "text,humor\n   ,True\n")
    with pytest.raises(ValueError, match=r"empty\.csv:2: 'text' is empty"):
        read_labeled_table(f, "text", "humor", "en", "x")
    g = write(tmp_path / "cols.csv", "txt,humor\na,True\n")
    with pytest.raises(ValueError, match=r"cols\.csv: missing column\(s\) \['text'\]"):
        read_labeled_table(g, "text", "humor", "en", "x")


def test_mwahaha_tsv_quoting_off_and_prompt_types(tmp_path):
    # an unbalanced quote must not swallow the following rows (read with quoting off)
    f = write(tmp_path / "task-a-en.tsv", 'id\tword1\tword2\theadline\r\n'
                                           'en_1\t-\t-\tMan says "hello to the world\r\n'
                                           'en_2\tcactus\tlawsuit\t-\r\n')
    rows = read_task_tsv(f)
    assert rows[0].prompt_type == "headline" and rows[0].headline == 'Man says "hello to the world'
    assert rows[1].prompt_type == "words" and rows[1].words == ("cactus", "lawsuit") and rows[1].lang == "en"


@pytest.mark.parametrize("body,message", [
    ("en_1\tcactus\t-\t-\n", r"'words' must hold two words"),
    ("en_1\t-\t-\t-\n", r"a prompt needs a headline or two words"),
    ("en_1\t-\t-\tA headline\textra\n", r"stray delimiter"),
    ("xx_1\t-\t-\tA headline\n", r"language prefix"),
])
def test_malformed_task_rows(tmp_path, body, message):
    f = write(tmp_path / "task.tsv", "id\tword1\tword2\theadline\n" + body)
    with pytest.raises(ValueError, match=rf"task\.tsv:2: .*{message}"):
        read_task_tsv(f)


def test_real_sources_need_a_data_dir_and_unknown_sources_are_listed():
    with pytest.raises(ValueError, match="needs --data_dir"):
        load_labeled(["colbert"])
    with pytest.raises(ValueError, match=r"unknown labeled source\(s\) \['nope'\]; valid: \["):
        load_labeled(["nope"])


def test_language_filter_and_row_cap():
    rows = load_labeled(["sample"], langs=["zh"], max_rows_per_source=10, seed=1)
    assert len(rows) == 10 and {r.lang for r in rows} == {"zh"}


def test_held_out_split_is_disjoint_and_has_both_types():
    prompts = load_prompts(["sample"], langs=["en"])
    train, held = split_prompts(prompts, 4, seed=0)
    assert len(held) == 4 and {p.prompt_type for p in held} == {"words", "headline"}
    assert not {p.id for p in train} & {p.id for p in held} and len(train) + len(held) == len(prompts)


def test_the_shipped_demo_set_feeds_the_cpu_default_with_nothing_beside_the_clone():
    """Issue 14: the main job runs on a bare clone. The demo set ships in data/demo (ColBERT, MIT) and the CPU
    default gives GRPO >= 200 training prompts of each type and >= 32 held out, without --data_dir."""
    from common.config import parse_config
    from common.stage_configs import GRPOArgs
    from data.loaders import DEMO_DIR, prompt_plan

    labeled = load_labeled(["demo"], None, ["en"])
    assert len(labeled) == 4000 and sum(r.label for r in labeled) == 2000
    prompts = load_prompts(["demo"], None, ["en"])
    assert {t: sum(p.prompt_type == t for p in prompts) for t in ("words", "headline")} == {"words": 300, "headline": 300}
    assert not {p.headline for p in prompts if p.headline} & {r.text for r in labeled}     # no prompt is a training text
    assert (DEMO_DIR / "LICENSE-ColBERT").read_text().startswith("MIT License")
    cfg = parse_config(GRPOArgs, "grpo", ["--config", str(ROOT / "configs" / "cpu_default.yaml")])
    assert cfg.data_dir is None and cfg.prompt_sources == ["demo"]
    plan = prompt_plan(cfg)
    assert plan["train_prompts"]["words"] >= 200 and plan["train_prompts"]["headline"] >= 200
    assert plan["held_out_prompts"]["total"] >= 32
