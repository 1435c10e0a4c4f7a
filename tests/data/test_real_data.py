"""The loaders on the real data sets (skipped when the data directory is absent)."""

import pytest

from data.loaders import load_labeled, load_prompts


@pytest.mark.e2e
def test_real_labeled_sets_load_with_both_labels(data_dir):
    for source, lang in (("colbert", "en"), ("ccl2019", "zh"), ("haha2021", "es")):
        rows = load_labeled([source], data_dir, langs=[lang])
        assert len(rows) > 10_000 and {r.label for r in rows} == {0, 1} and {r.lang for r in rows} == {lang}


def test_mwahaha_inputs_parse_with_quoting_off(data_dir):
    test = load_prompts(["mwahaha_test"], data_dir)
    assert len(test) == 900 and sum(p.prompt_type == "words" for p in test) == 75
    dev = load_prompts(["mwahaha_dev"], data_dir, langs=["en"])
    assert len(dev) == 1200 and len({p.id for p in dev}) == 1200
