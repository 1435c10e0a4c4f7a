"""Reward components: plain functions of decoded text.

Each takes `completions` and dataset columns as keyword arguments (`words`, `lang`, ...) and returns one
`float | None` per completion (None: does not apply). A `*_reward` is better when higher; a `*_penalty` is worse
when higher and gets a negative weight in the composite. Components with parameters come from a `make_*` factory.
Chinese has no spaces, so lengths and n-grams count characters there, words elsewhere.
"""

from __future__ import annotations

import re
import unicodedata

from data.text import contains_word, repeated_ngram_share, text_units


def _langs(lang, n: int) -> list[str]:
    if lang is None:
        raise ValueError("this component needs the 'lang' column (en, es, zh) to count units")
    return [lang] * n if isinstance(lang, str) else list(lang)


def coverage_reward(completions: list[str], words: list | None = None, lang=None, **kwargs) -> list[float | None]:
    """Share of the required words present (data.text.contains_word: whole words and their inflected forms,
    substrings for Chinese): 1.0 both, 0.5 one, 0.0 none; None for prompts without required words (headlines).

    >>> coverage_reward(["The cactus filed a lawsuit.", "The Cactus sued.", "Nothing here."],
    ...                 words=[["cactus", "lawsuit"], ["cactus", "lawsuit"], ["cactus", "lawsuit"]])
    [1.0, 0.5, 0.0]
    >>> coverage_reward(["冰箱说它要减肥"], words=[["冰箱", "减肥"]]), coverage_reward(["Any text."], words=[None])
    ([1.0], [None])
    """
    if words is None:
        return [None] * len(completions)
    langs = [lang] * len(completions) if lang is None or isinstance(lang, str) else list(lang)
    out = []
    for text, required, text_lang in zip(completions, words, langs):
        if not required:
            out.append(None)
            continue
        out.append(sum(contains_word(text, w, text_lang) for w in required) / len(required))
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
        return [repeated_ngram_share(text, text_lang, n) for text, text_lang in zip(completions, _langs(lang, len(completions)))]

    return repetition_penalty


# ---------------------------------------------------------------- guards against reward hacking

SCRIPT_OF_LANG = {"en": "LATIN", "es": "LATIN", "zh": "CJK"}
CODE_SYMBOLS = set("{}[]<>|\\/=_;$#@^~`*")


def letter_script(ch: str) -> str:
    """The Unicode script of a letter, by its name: LATIN, CJK, ARABIC, CYRILLIC, HANGUL, ...

    >>> [letter_script(c) for c in "aé生دЖ잘"]
    ['LATIN', 'LATIN', 'CJK', 'ARABIC', 'CYRILLIC', 'HANGUL']
    """
    if ch in "ºª":          # Spanish ordinal indicators (1º, 2ª) are Latin letters in use
        return "LATIN"
    name = unicodedata.name(ch, "UNKNOWN")
    return "CJK" if name.startswith("CJK") else name.split(" ")[0]


def script_drift_penalty(completions: list[str], lang=None, **kwargs) -> list[float | None]:
    """Share of letters and code symbols outside the language's script: Arabic, Cyrillic, Hangul or `{}<>/*`
    in a Chinese joke; Chinese or Arabic in an English one. 0 = all in script; texts without letters score 0.

    >>> script_drift_penalty(["这就是生活", "这就是生活 دمش دمش", "Plain English.", "x = {a[b]};"], lang=["zh", "zh", "en", "en"])
    [0.0, 0.5454545454545454, 0.0, 0.6666666666666666]
    """
    out = []
    for text, text_lang in zip(completions, _langs(lang, len(completions))):
        expected = SCRIPT_OF_LANG.get(text_lang)
        if expected is None:
            raise ValueError(f"script_drift_penalty: no script known for language {text_lang!r}; have {sorted(SCRIPT_OF_LANG)}")
        letters = [ch for ch in text if ch.isalpha()]
        symbols = sum(ch in CODE_SYMBOLS for ch in text)
        foreign = sum(letter_script(ch) != expected for ch in letters) + symbols
        total = len(letters) + symbols
        out.append(foreign / total if total else 0.0)
    return out


def no_eos_penalty(completions: list[str], finished: list[bool] | None = None, **kwargs) -> list[float | None]:
    """1.0 for a completion cut off at the token limit (no EOS), 0.0 for one that stopped by itself. `finished`
    comes from generation (GRPO derives it from the completion ids, see reward/composite.py).

    >>> no_eos_penalty(["a joke.", "and then and then and"], finished=[True, False])
    [0.0, 1.0]
    """
    if finished is None:
        raise ValueError("no_eos_penalty needs the 'finished' column (did each completion end with EOS?)")
    return [0.0 if done else 1.0 for done in finished]


_SYMBOL_RUN = re.compile(r"[^\w\s]{4,}")       # "******", "~~~~", "!?!?!" (ordinary "..." passes)
_VOWELS = set("aeiouyáéíóúüàèìòùâêîôûäëïö")


def _odd_word(word: str) -> bool:
    """A Latin-script 'word' no language has: letters mixed with digits, 25+ characters, 4+ of one letter in a
    row, or 5+ letters without a vowel (createStackNavigatorFecha, ccccc, xkcdqz)."""
    has_digit, has_alpha = any(c.isdigit() for c in word), any(c.isalpha() for c in word)
    return ((has_digit and has_alpha) or len(word) >= 25 or re.search(r"(\w)\1{3,}", word) is not None
            or (len(word) >= 5 and has_alpha and not any(c in _VOWELS for c in word.lower())))


def gibberish_penalty(completions: list[str], lang=None, **kwargs) -> list[float | None]:
    """Share of the non-space characters that are junk, in [0, 1]: runs of 4+ symbols, words of no language
    (see _odd_word), and in Chinese text also camelCase identifiers (code). In the example, 9 symbols + 25 + 3
    letters of odd words out of 42 characters.

    >>> gibberish_penalty(["A cow walks into a bar.", "tolua createStackNavigatorFecha /******** x2y"], lang="en")
    [0.0, 0.8809523809523809]
    """
    out = []
    for text, text_lang in zip(completions, _langs(lang, len(completions))):
        stripped = "".join(text.split())
        if not stripped:
            out.append(0.0)
            continue
        junk_chars = sum(len(m) for m in _SYMBOL_RUN.findall(stripped))
        words = re.findall(r"\w+", text)
        if text_lang != "zh":
            junk_chars += sum(len(w) for w in words if _odd_word(w))
        else:   # Latin words inside Chinese: camelCase / digit-mixed identifiers are code, not jokes
            junk_chars += sum(len(w) for w in words if w.isascii() and (_odd_word(w) or re.search(r"[a-z][A-Z]", w)))
        out.append(min(1.0, junk_chars / len(stripped)))
    return out


def text_flags(texts: list[str], langs: list[str], cfg) -> dict[str, list[bool]]:
    """Which texts count as drifted, repetitive or gibberish: the guard components above the config's
    drift_threshold, repetition_threshold and gibberish_threshold (repetition over repetition_ngram-grams). The one
    rule behind the RL monitor's rates, the evaluation's rates and the submission check.

    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(drift_threshold=0.05, repetition_threshold=0.2, gibberish_threshold=0.1, repetition_ngram=3)
    >>> text_flags(["A cat sat.", "la la la la la", "这就是生活 دمش"], ["en", "en", "zh"], cfg)["drifted"]
    [False, False, True]
    """
    drift = script_drift_penalty(texts, lang=langs)
    repetition = make_repetition_penalty(cfg.repetition_ngram)(texts, lang=langs)
    gibberish = gibberish_penalty(texts, lang=langs)
    return {"drifted": [d > cfg.drift_threshold for d in drift],
            "repetitive": [r > cfg.repetition_threshold for r in repetition],
            "gibberish": [g > cfg.gibberish_threshold for g in gibberish]}


DEGENERATE_AT = 0.5     # half the n-grams repeated, or half the characters junk: nothing of a joke is left


def make_degenerate_penalty(ngram: int, repetition_threshold: float, gibberish_threshold: float):
    """How far a text has gone into a loop or into junk, in [0, 1]: 0 up to the thresholds that flag it
    (text_flags), rising linearly to 1 where half of its n-grams repeat or half of its characters are junk
    (DEGENERATE_AT); the larger of the two. Its default weight (-1) keeps such a text below zero and below every
    clean joke whatever a reward model says of it (the seed's classifier scored '这就是生活！' x 40 at 0.98).

    >>> degenerate_penalty = make_degenerate_penalty(3, 0.2, 0.1)
    >>> degenerate_penalty(["A cow walks into a bar.", "a" * 10000, "ha " * 500, "这就是生活！" * 40], lang=["en", "en", "en", "zh"])
    [0.0, 1.0, 1.0, 1.0]
    """
    repetition = make_repetition_penalty(ngram)

    def ramp(share: float, threshold: float) -> float:     # a step at the threshold when it is above DEGENERATE_AT
        end = max(DEGENERATE_AT, threshold)
        return 0.0 if share <= threshold else 1.0 if share >= end else (share - threshold) / (end - threshold)

    def degenerate_penalty(completions: list[str], lang=None, **kwargs) -> list[float | None]:
        langs = _langs(lang, len(completions))
        return [max(ramp(r, repetition_threshold), ramp(g, gibberish_threshold)) for r, g in
                zip(repetition(completions, lang=langs), gibberish_penalty(completions, lang=langs))]

    return degenerate_penalty


def empty_penalty(completions: list[str], **kwargs) -> list[float | None]:
    """1.0 for a completion with no letter or digit (empty, whitespace, punctuation only: '', '。。。', '!!!'),
    else 0.0. Its default weight (-1) keeps such a completion below zero whatever the other components say.

    >>> empty_penalty(["", "   ", "。。。", "!!!", "A joke.", "哈"])
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    return [0.0 if any(ch.isalnum() for ch in text) else 1.0 for text in completions]


def make_ensemble_std(ensemble):
    """The per-text std of an ensemble's members over the last scored batch (reward/model.py EnsembleRewardModel):
    a diagnostic of their disagreement, logged like a component (weight 0 logs it without rewarding it). It must
    be computed after ensemble_reward on the same texts (registry order does that)."""

    def ensemble_std(completions: list[str], instruction: list[str] | None = None, theme: list[str] | None = None,
                     **kwargs) -> list[float | None]:
        texts = [c.strip() for c in completions]
        if ensemble.last[0] != texts:               # not the batch ensemble_reward just scored: score it
            ensemble.score(texts, instruction, theme)
        return list(ensemble.last[1])

    return ensemble_std


def make_rm_reward(reward_model, name: str = "rm_reward"):
    """A trained reward model's score of each completion, in [0, 1]: P(humor) of the classifier (rm_reward), or a
    ranking model's centred sigmoid (rank_reward; reward/model.py)."""

    def rm_reward(completions: list[str], instruction: list[str] | None = None, theme: list[str] | None = None,
                  **kwargs) -> list[float | None]:
        return reward_model.score([c.strip() for c in completions], instructions=instruction, themes=theme)

    rm_reward.__name__ = name
    return rm_reward
