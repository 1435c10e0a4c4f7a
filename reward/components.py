"""Reward components: plain functions of decoded text (SPEC section 1, STYLE rule 3).

Each takes `completions` and dataset columns as keyword arguments (`words`, `lang`, ...) and returns one
`float | None` per completion (None: does not apply). A `*_reward` is better when higher; a `*_penalty` is worse
when higher and gets a negative weight in the composite. Components with parameters come from a `make_*` factory.
Chinese has no spaces, so lengths and n-grams count characters there, words elsewhere.
"""

from __future__ import annotations

import re


def text_units(text: str, lang: str) -> list[str]:
    """Characters (without spaces) for Chinese, lower-cased words otherwise.

    >>> text_units("Hello, hello world!", "en")
    ['hello', 'hello', 'world']
    >>> text_units("这就是 生活", "zh")
    ['这', '就', '是', '生', '活']
    """
    if lang == "zh":
        return [ch for ch in text if not ch.isspace()]
    return re.findall(r"\w+", text.lower())


def _langs(lang, n: int) -> list[str]:
    if lang is None:
        raise ValueError("this component needs the 'lang' column (en, es, zh) to count units")
    return [lang] * n if isinstance(lang, str) else list(lang)


def coverage_reward(completions: list[str], words: list | None = None, **kwargs) -> list[float | None]:
    """Share of the required words present (case-insensitive): 1.0 both, 0.5 one, 0.0 none; None for prompts
    without required words (headline prompts).

    >>> coverage_reward(["The cactus filed a lawsuit.", "The Cactus sued.", "Nothing here."],
    ...                 words=[["cactus", "lawsuit"], ["cactus", "lawsuit"], ["cactus", "lawsuit"]])
    [1.0, 0.5, 0.0]
    >>> coverage_reward(["冰箱说它要减肥"], words=[["冰箱", "减肥"]]), coverage_reward(["Any text."], words=[None])
    ([1.0], [None])
    """
    if words is None:
        return [None] * len(completions)
    out = []
    for text, required in zip(completions, words):
        if not required:
            out.append(None)
            continue
        folded = text.casefold()
        out.append(sum(w.casefold() in folded for w in required) / len(required))
    return out


def make_length_reward(window: dict[str, list[int]]):
    """Length-window score: 1.0 for lo <= n <= hi units, n/lo below, falling linearly to 0 at 2*hi above.

    >>> length_reward = make_length_reward({"en": [4, 8], "zh": [5, 10]})
    >>> length_reward(["one two", "one two three four five", " ".join(["w"] * 12), "这就是生活"], lang=["en", "en", "en", "zh"])
    [0.5, 1.0, 0.5, 1.0]
    """
    for lang, bounds in window.items():
        if len(bounds) != 2 or not 0 < bounds[0] <= bounds[1]:
            raise ValueError(f"length_window[{lang!r}] must be [lo, hi] with 0 < lo <= hi, got {bounds!r}")

    def length_reward(completions: list[str], lang=None, **kwargs) -> list[float | None]:
        out = []
        for text, text_lang in zip(completions, _langs(lang, len(completions))):
            if text_lang not in window:
                raise ValueError(f"length_window has no entry for language {text_lang!r}; it has {sorted(window)}")
            lo, hi = window[text_lang]
            n = len(text_units(text, text_lang))
            out.append(n / lo if n < lo else 1.0 if n <= hi else max(0.0, 1.0 - (n - hi) / hi))
        return out

    return length_reward


def make_repetition_penalty(n: int = 3):
    """Share of repeated n-grams: 1 - unique / total (words; characters for Chinese). 0 = no repetition,
    near 1 = one phrase over and over. Texts shorter than n score 0.

    >>> repetition_penalty = make_repetition_penalty(3)
    >>> repetition_penalty(["the cat sat on the mat", "la la la la la"], lang="en")
    [0.0, 0.6666666666666667]
    >>> round(repetition_penalty(["这就是生活！" * 20], lang="zh")[0], 3)   # the seed's reward hack
    0.949
    """
    if n < 1:
        raise ValueError(f"repetition n-gram size must be >= 1, got {n}")

    def repetition_penalty(completions: list[str], lang=None, **kwargs) -> list[float | None]:
        out = []
        for text, text_lang in zip(completions, _langs(lang, len(completions))):
            units = text_units(text, text_lang)
            grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
            out.append(1.0 - len(set(grams)) / len(grams) if grams else 0.0)
        return out

    return repetition_penalty


def make_rm_reward(reward_model):
    """P(humor) of each completion under the trained classifier (reward/model.py), in [0, 1]."""

    def rm_reward(completions: list[str], instruction: list[str] | None = None, **kwargs) -> list[float | None]:
        return reward_model.score([c.strip() for c in completions], instructions=instruction)

    return rm_reward
