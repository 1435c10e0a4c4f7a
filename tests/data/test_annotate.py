"""The annotator (the seeds' data step): parsing, each validation rule, retries and reason counts, resume, and
what the annotations feed (SFT, the reward model, RL prompts). A scripted generator stands in for the LLM."""

import json

import pytest

from data.annotate import annotate, check_annotation, parse_answer, read_annotations
from data.loaders import LabeledText
from tests.conftest import TINY

WINDOW = {"en": [3, 20], "es": [3, 20], "zh": [10, 40]}
JOKE = "I told my cactus a secret. Now it keeps needling me about it."
GOOD = '{"headline": "Man confides in houseplant, regrets it", "word1": "needling", "word2": "cactus"}'


@pytest.mark.parametrize("raw, expected", [
    (GOOD, {"headline": "Man confides in houseplant, regrets it", "word1": "needling", "word2": "cactus"}),
    ("```json\n" + GOOD + "\n```", "ok"),                                          # fenced
    ("Sure! Here is the JSON you asked for:\n" + GOOD + "\nLet me know if you need more.", "ok"),   # chatty
    ("I am sorry, I cannot help with that.", "no_json"),
    ('{"headline": "Man confides", "word1": "told",', "bad_json"),                 # cut off
    ('{"headline": "Man confides", "word1": "told"}', "missing_field"),
    ('{"headline": "Man confides", "word1": "told", "word2": 7}', "missing_field"),
])
def test_answers_are_parsed_from_fences_and_chatter_and_broken_ones_get_a_reason(raw, expected):
    fields, reason = parse_answer(raw)
    if expected == "ok" or isinstance(expected, dict):
        assert reason is None and fields["word2"] == "cactus"
    else:
        assert fields is None and reason == expected


@pytest.mark.parametrize("fields, joke, lang, reason", [
    ({"headline": "Man confides in houseplant", "word1": "needling", "word2": "cactus"}, JOKE, "en", None),
    ({"headline": "Cactus", "word1": "needling", "word2": "cactus"}, JOKE, "en", "headline_length"),
    ({"headline": "I told my cactus a secret. Now it keeps needling me.", "word1": "needling", "word2": "cactus"}, JOKE, "en",
     "headline_copies_joke"),
    ({"headline": "Man confides in houseplant", "word1": "cactus", "word2": "Cactus"}, JOKE, "en", "same_words"),
    ({"headline": "Man confides in houseplant", "word1": "told", "word2": "lawsuit"}, JOKE, "en", "word_not_in_joke"),
    ({"headline": "Man confides in houseplant", "word1": "cut", "word2": "cactus"}, "A cute cactus.", "en", "word_not_in_joke"),
    ({"headline": "Man confides in houseplant", "word1": "about", "word2": "cactus"}, JOKE, "en", "stop_word"),
    ({"headline": "冰箱宣布开始减肥计划引发热议", "word1": "减肥", "word2": "冰箱"}, "冰箱说它要减肥，因为里面全是剩菜。", "zh", None),
    ({"headline": "冰箱宣布开始减肥计划引发热议", "word1": "冰箱", "word2": "剩菜"}, "冰箱说它要减肥，因为里面全是剩菜。", "zh",
     "not_verb_and_noun"),                                                         # two nouns
])
@pytest.mark.e2e
def test_each_validation_rule(fields, joke, lang, reason):
    assert check_annotation(fields, joke, lang, WINDOW) == reason


def jokes(n: int) -> list[LabeledText]:
    texts = [JOKE, "My calendar asked for a day off.", "The penguin wore a tuxedo to the interview.", "A dog sued a cat."]
    return [LabeledText(texts[i], 1, "en", "t", f"j{i}") for i in range(n)]


class Scripted:
    """Answers by joke and attempt: j0 good at once, j1 good on its first retry, j2 never JSON, j3 wrong word."""

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, attempt):
        self.calls.append((attempt, len(prompts)))
        out = []
        for p in prompts:
            if "cactus" in p:
                out.append(GOOD)
            elif "calendar" in p:
                out.append("no idea" if attempt == 0 else '{"headline": "Calendar demands time off", "word1": "day", "word2": "calendar"}')
            elif "penguin" in p:
                out.append("I would rather not.")
            else:
                out.append('{"headline": "Court hears pet dispute", "word1": "sued", "word2": "lawyer"}')
        return out


def test_retries_and_reasons_are_counted_and_nothing_is_dropped(tmp_path):
    gen = Scripted()
    counts = annotate(jokes(4), gen, tmp_path, "scripted", WINDOW, batch_size=4, max_retries=2, progress=False)
    assert counts["accepted"] == 2 and counts["rejected"]["no_json"] == 1 and counts["rejected"]["word_not_in_joke"] == 1
    assert gen.calls == [(0, 4), (1, 3), (2, 2)] and counts["retried"] == 5 and counts["answers"] == 9
    kept = read_annotations(tmp_path)
    assert [(a.id, a.word1, a.word2) for a in kept] == [("j0", "needling", "cactus"), ("j1", "day", "calendar")]
    rejected = [json.loads(line) for line in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rejected} == {"j2": "no_json", "j3": "word_not_in_joke"}


def test_a_rerun_skips_what_is_done_and_a_kill_loses_only_the_batch_in_flight(tmp_path):
    class DiesOnSecondBatch(Scripted):
        def __call__(self, prompts, attempt):
            if len(self.calls) >= 1 and attempt == 0:
                raise KeyboardInterrupt("killed")
            return super().__call__(prompts, attempt)

    with pytest.raises(KeyboardInterrupt):
        annotate(jokes(4), DiesOnSecondBatch(), tmp_path, "scripted", WINDOW, batch_size=2, max_retries=0, progress=False)
    assert [a.id for a in read_annotations(tmp_path)] == ["j0"]            # the first batch was written
    gen = Scripted()
    counts = annotate(jokes(4), gen, tmp_path, "scripted", WINDOW, batch_size=2, max_retries=0, progress=False)
    assert counts["skipped_done_before"] == 2 and gen.calls == [(0, 2)]    # j0, j1 done before (j1 rejected)


def test_the_cli_annotates_with_a_real_tiny_model_and_its_output_feeds_sft_rm_and_rl(tmp_path):
    from common.stage_configs import RMArgs
    from data.annotate import annotated_prompt_by_text
    from data.loaders import load_prompts
    from reward.train_rm import instruction_for
    from sft.annotate import main as annotate_cli
    from sft.sft import main as sft

    common = ["--config", TINY, "--runs_dir", str(tmp_path), "--run_name", "a", "--langs", "[en]"]
    s = annotate_cli(common + ["--annotator_model", "tiny:llama", "--max_jokes", "4", "--max_new_tokens", "8",
                               "--batch_size", "4", "--max_retries", "1"])
    assert s["accepted"] + sum(s["rejected"].values()) == 4            # a random model: every answer refused, counted
    again = annotate_cli(common + ["--annotator_model", "tiny:llama", "--max_jokes", "4", "--max_new_tokens", "8"])
    assert again["skipped_done_before"] == 4 and again["answers"] == 0

    # the output, as a real annotator writes it, feeds the rest
    out = tmp_path / "a" / "annotate" / "annotations.jsonl"
    out.write_text(json.dumps({"id": "j0", "lang": "en", "joke": JOKE, "headline": "Man confides in houseplant",
                               "word1": "needling", "word2": "cactus", "annotator": "x", "raw": GOOD}) + "\n")
    plan = sft(common + ["--sft_sources", "[annotate]", "--dry_run"])
    base = sft(common + ["--dry_run"])
    assert plan["annotated_jokes"] == 1 and plan["demonstrations"] == base["demonstrations"] + 2   # both prompt types
    tasks = load_prompts([str(out)], langs=["en"])
    assert [t.prompt_type for t in tasks] == ["headline", "words"] and tasks[1].words == ("needling", "cactus")
    annotated = annotated_prompt_by_text(read_annotations(out))
    assert "Headline: Man confides in houseplant" in instruction_for(LabeledText(JOKE, 1, "en", "x", "1"), annotated)
    assert RMArgs(annotations=["annotate"]).annotations == ["annotate"]
