import math
import re

import pytest

from common.stage_configs import GUARD_WEIGHTS, SEED_REWARD_WEIGHTS, RewardArgs
from reward.components import (
    coverage_reward,
    gibberish_penalty,
    make_length_reward,
    make_repetition_penalty,
    no_eos_penalty,
    script_drift_penalty,
)
from reward.composite import build_components, score, trl_reward_functions


class FixedRM:
    """Stands in for the classifier: P(humor) = 0.8 for every text."""
    def score(self, texts, instructions=None, themes=None):
        return [0.8] * len(texts)


def test_coverage_hand_values():
    words = [["cactus", "lawsuit"]] * 3 + [None]
    assert coverage_reward(["CACTUS lawsuit", "a cactus", "nothing", "headline joke"], words=words) == [1.0, 0.5, 0.0, None]
    assert coverage_reward(["我的冰箱在减肥"], words=[["冰箱", "减肥"]]) == [1.0]


def test_length_window_in_words_and_chinese_characters():
    length = make_length_reward({"en": [4, 8], "zh": [5, 10]})
    assert length(["a b", "a b c d e", " ".join("w" * 16)], lang="en") == [0.5, 1.0, 0.0]
    assert length(["四个汉字", "这是十个汉字的一句话", "十五个汉字的句子一定是太长了吧"], lang="zh") == [0.8, 1.0, 0.5]
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        make_length_reward({"en": [5, 2]})


def test_repetition_counts_characters_for_chinese():
    rep = make_repetition_penalty(3)
    hack = "这就是生活！" * 40  # seed's reward hack: 240 chars, 238 3-grams, 6 distinct
    assert rep([hack], lang="zh")[0] == pytest.approx(1 - 6 / 238)
    assert rep(["今天天气很好，我们去公园散步吧。"], lang="zh") == [0.0]
    # counted as words, an unspaced, unpunctuated Chinese string is one "word" and shows no repetition at all
    assert rep(["这就是生活" * 40], lang="en") == [0.0]
    assert rep(["这就是生活" * 40], lang="zh")[0] > 0.9


def test_composite_is_the_seed_formula():
    cfg = RewardArgs(reward_weights="seed")
    fns = build_components(cfg, FixedRM())
    texts = ["The cactus filed a lawsuit against the desert for emotional damages today.",
             "Breaking: local man finds the remote in the fridge, blames the cat, cat declines comment."]
    out = score(fns, texts, ["words", "headline"], cfg.reward_weights, words=[["cactus", "lawsuit"], None],
                lang=["en", "en"])
    # words: 0.55*0.8 + 0.25*1.0 + 0.15*1.0 - 0.10*0.0 = 0.84 ; headline: 0.75*0.8 + 0.20*1.0 - 0.15*0 = 0.80
    assert out["total"] == pytest.approx([0.84, 0.80])
    assert out["coverage_reward"] == [1.0, None]
    assert cfg.reward_weights == SEED_REWARD_WEIGHTS


def test_composite_rejects_nan_and_unknown_components():
    class NanRM:
        def score(self, texts, instructions=None, themes=None):
            return [math.nan] * len(texts)
    cfg = RewardArgs()
    with pytest.raises(ValueError, match="rm_reward gave nan for the text 'odd'"):
        score(build_components(cfg, NanRM()), ["odd"], ["headline"], cfg.reward_weights, lang=["en"], words=[None],
              finished=[True])
    with pytest.raises(ValueError, match=r"unknown reward component\(s\) \['humour'\]"):
        build_components(RewardArgs(reward_weights={"words": {"humour": 1.0}}), FixedRM())


def test_trl_functions_reproduce_the_composite():
    cfg = RewardArgs()          # the default preset, guards included
    fns = build_components(cfg, FixedRM())
    funcs, weights = trl_reward_functions(fns, cfg.reward_weights, stop_ids=[2])
    texts = ["The cactus sued.", "A man, a plan, a canal."]
    cols = dict(prompt_type=["words", "headline"], words=[["cactus", "lawsuit"], None], lang=["en", "en"])
    # TRL passes completion ids, not `finished`: the first completion ends with stop id 2, the second was cut off
    per_func = [f(texts, completion_ids=[[5, 7, 2], [5, 7, 9]], **cols) for f in funcs]
    trl_total = [sum(w * v[i] for w, v in zip(weights, per_func) if v[i] is not None) for i in range(2)]
    assert trl_total == pytest.approx(score(fns, texts, weights=cfg.reward_weights, finished=[True, False],
                                            **cols)["total"])
    by_name = dict(zip([f.__name__ for f in funcs], per_func))
    assert by_name["words/coverage_reward"] == [0.5, None] and by_name["headline/rm_reward"] == [None, 0.8]


# The seed authors' real reward hacks, each scored ~0.98 by their DeBERTa reward model.
ARABIC_HACK = ("一日，甲男在街角卖保险，一男子走到面前说：“帮我看一下保险锁的钥匙。” 说完掏出一把钥匙递了过去，"
               "那男的把钥匙收起掏出身份证说：“试试我的保险靠谱不？” " + "دمش " * 50)
CODE_HACK = ("爸爸～爹～「爷去哪里？【呜┉」～ breathable breathable我妈 ridden slate Operand(Theurança(dep "
             "DocumentaryFederal tolua Css__,__ Chúng możli/******** 잘못 tolua createStackNavigatorFecha Allows "
             "suite宦 com Input gbooleanurrencですかussion Emacs Emacsussion FieldГ hashed mudança剑 setContentบท")
REPEAT_HACK = "随着经济好转，一切都变得糟糕起来。随着经济恶化，一切都变得容易了。这就是生活。" + "这就是生活！" * 40
CLEAN_ZH = "随着经济好转，一切都变得糟糕起来。随着经济恶化，一切都变得容易了。这就是生活。"


def test_guards_catch_the_seeds_reward_hacks():
    drift = script_drift_penalty([CLEAN_ZH, ARABIC_HACK, CODE_HACK], lang="zh")
    assert drift[0] == 0.0
    han = len(re.findall(r"[\u4e00-\u9fff]", ARABIC_HACK))   # counted by code range, not by Unicode names
    assert han == 64 and drift[1] == pytest.approx(150 / (150 + 64))      # 50 x "دمش": 150 Arabic letters
    assert drift[2] > 0.5
    gib = gibberish_penalty([CLEAN_ZH, CODE_HACK, "The cactus filed a lawsuit."], lang=["zh", "zh", "en"])
    assert gib[0] == 0.0 and gib[2] == 0.0 and gib[1] > 0.1
    assert make_repetition_penalty(3)([REPEAT_HACK, CLEAN_ZH], lang="zh")[0] > 0.7
    assert no_eos_penalty([REPEAT_HACK, CLEAN_ZH], finished=[False, True]) == [1.0, 0.0]


def test_default_preset_makes_each_hack_cost_reward():
    """Under the default preset a clean joke beats each hack even when the RM scores the hack higher;
    under the seed's formula (no guards) the Arabic hack wins."""
    class HackLovingRM:
        def score(self, texts, instructions=None, themes=None):
            return [0.70 if t == CLEAN_ZH else 0.98 for t in texts]
    texts = [CLEAN_ZH, ARABIC_HACK, CODE_HACK]
    cols = dict(lang=["zh"] * 3, words=[None] * 3, finished=[True, False, False])
    for preset, clean_wins in (("default", True), ("seed", False)):
        cfg = RewardArgs(reward_weights=preset, length_window={"zh": [10, 300]})
        total = score(build_components(cfg, HackLovingRM()), texts, ["headline"] * 3, cfg.reward_weights, **cols)["total"]
        assert (total[0] > max(total[1:])) == clean_wins, (preset, total)
    assert set(GUARD_WEIGHTS) <= set(RewardArgs().reward_weights["words"])
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        RewardArgs(reward_weights="nope")


DEGENERATE = {"en": ["a" * 10000, "ha " * 500, "lol " * 60 + "the end.", "xkcdqz brrrrr zzzzzz " * 20],
              "zh": ["这就是生活！" * 40, REPEAT_HACK, "哈" * 300]}
REAL_JOKES = {"en": ["I told my cactus a secret. It said it would stay sharp about it.",
                     "The lawyer sued the cactus, but the case was thrown out: no one could get a grip on it.",
                     "Why did the mayor hire a cat? He wanted someone to chase the rats in the council."],
              "zh": [CLEAN_ZH, "我的冰箱在减肥，所以它每天晚上都关着门。"]}


@pytest.mark.parametrize("prompt_type", ["words", "headline"])
def test_a_looped_or_junk_text_scores_below_zero_and_below_every_real_joke(prompt_type):
    """Under the default weights, with a reward model that rates every text 1.0 (the genre detector's failure:
    garbage looks funny to it), each degenerate text still totals below 0 and below each real joke, though the
    real jokes lose coverage (they hold no required word) and the junk takes every other point going."""
    texts = [t for lang in ("en", "zh") for t in DEGENERATE[lang] + REAL_JOKES[lang]]
    langs = [lang for lang in ("en", "zh") for _ in DEGENERATE[lang] + REAL_JOKES[lang]]
    cfg = RewardArgs(reward_weights="default", length_window={"en": [6, 40], "zh": [10, 80]})
    class LovesEverything:
        def score(self, texts, instructions=None, themes=None):
            return [1.0] * len(texts)
    words = [["a", "ha"] if lang == "en" else ["这", "哈"] for lang in langs]       # the junk covers its words
    cols = dict(lang=langs, finished=[True] * len(texts),
                words=words if prompt_type == "words" else [None] * len(texts))
    total = score(build_components(cfg, LovesEverything()), texts, [prompt_type] * len(texts), cfg.reward_weights,
                  **cols)["total"]
    degenerate = [x for t, x in zip(texts, total) if any(t in DEGENERATE[lang] for lang in DEGENERATE)]
    real = [x for t, x in zip(texts, total) if any(t in REAL_JOKES[lang] for lang in REAL_JOKES)]
    assert len(degenerate) == 7 and len(real) == 5
    assert max(degenerate) < 0 < min(real), (degenerate, real)


def test_grpo_reward_functions_run_each_component_once_per_step_over_all_prompt_types():
    """The reward model's forward runs once over the whole batch, not once per prompt type."""
    class CountingRM:
        calls = []

        def score(self, texts, instructions=None, themes=None):
            self.calls.append(len(texts))
            return [0.8] * len(texts)

    rm = CountingRM()
    cfg = RewardArgs(reward_weights="seed")
    funcs, weights = trl_reward_functions(build_components(cfg, rm), cfg.reward_weights)
    completions = ["a joke about cats", "a joke about a cactus", "another one"]
    columns = dict(prompt_type=["headline", "words", "headline"], words=[None, ["cactus", "lawsuit"], None],
                   lang=["en"] * 3, instruction=[""] * 3)
    by_name = {f.__name__: f(completions, **columns) for f in funcs}
    assert rm.calls == [3]                                                        # one forward, three texts
    assert by_name["headline/rm_reward"] == [0.8, None, 0.8] and by_name["words/rm_reward"] == [None, 0.8, None]
    next_step = list(completions)                                                 # the next step: a new list
    for f in funcs:
        f(next_step, **columns)
    assert rm.calls == [3, 3]
