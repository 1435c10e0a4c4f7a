"""Text statistics every layer shares: the units a text is counted in, required-word matching, repeated n-grams
and distinct n-grams. Chinese has no spaces, so it is counted in characters; other languages in words.

The reward components (reward/components.py), the structure checks of preference data (data/preferences.py), the
RL monitor and the evaluation metrics all count with these functions, so a text is measured the same way
everywhere.
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


def ngrams(units: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def repeated_ngram_share(text: str, lang: str, n: int) -> float:
    """1 - unique / total n-grams of the text's units: 0 = no repetition, near 1 = one phrase over and over.
    Texts shorter than n score 0.

    >>> repeated_ngram_share("la la la la la", "en", 3)
    0.6666666666666667
    """
    grams = ngrams(text_units(text, lang), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def contains_word(text: str, word: str) -> bool:
    """Is the required word in the text (case-folded)?

    >>> contains_word("The Cactus sued.", "cactus"), contains_word("冰箱说它要减肥", "减肥")
    (True, True)
    """
    return word.casefold() in text.casefold()


def distinct_n(texts: list[str], langs: list[str], n: int) -> tuple[float, float]:
    """(corpus, sentence) Dist-n. Corpus: distinct n-grams of all texts together / all n-grams. Sentence: the
    mean over texts (with at least one n-gram) of distinct / total within the text.

    >>> distinct_n(["a b a b", "a b c"], ["en", "en"], 1)     # corpus: {a,b,c} / 7; sentence: (2/4 + 3/3) / 2
    (0.42857142857142855, 0.75)
    >>> distinct_n(["哈哈哈", "哈哈"], ["zh", "zh"], 2)          # corpus: {哈哈} / 3; sentence: (1/2 + 1/1) / 2
    (0.3333333333333333, 0.75)
    """
    all_grams, per_text = [], []
    for text, lang in zip(texts, langs):
        grams = ngrams(text_units(text, lang), n)
        all_grams.extend(grams)
        if grams:
            per_text.append(len(set(grams)) / len(grams))
    corpus = len(set(all_grams)) / len(all_grams) if all_grams else 0.0
    sentence = sum(per_text) / len(per_text) if per_text else 0.0
    return corpus, sentence


_SPANISH_MARKS = set("ñÑ¿¡áéíóúÁÉÍÓÚ")
_SPANISH_WORDS = {"el", "la", "los", "las", "que", "de", "y", "en", "un", "una", "por", "con", "para", "es", "se",
                  "del", "al", "lo", "como", "pero", "más", "mi", "su", "yo", "qué"}
_ENGLISH_WORDS = {"the", "a", "an", "and", "of", "to", "in", "is", "it", "that", "for", "on", "with", "my", "i",
                  "you", "was", "what", "why", "how", "he", "she", "they", "do", "does", "at", "be"}


def detect_lang(text: str) -> str:
    """The language of a text when a file does not say: 'zh' when CJK characters outnumber Latin letters, else
    'es' or 'en' by Spanish marks and common function words. A heuristic for en/es/zh only.

    >>> detect_lang("我的仙人掌起诉了我"), detect_lang("¿Por qué el cactus no tiene amigos?"), detect_lang("Why did the cactus sue?")
    ('zh', 'es', 'en')
    """
    cjk = sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)
    latin = sum(ch.isascii() and ch.isalpha() for ch in text)
    if cjk and cjk >= latin:
        return "zh"
    words = re.findall(r"\w+", text.lower())
    spanish = sum(w in _SPANISH_WORDS for w in words) + 2 * sum(ch in _SPANISH_MARKS for ch in text)
    english = sum(w in _ENGLISH_WORDS for w in words)
    return "es" if spanish > english else "en"
