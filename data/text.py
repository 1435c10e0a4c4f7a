"""Text statistics every layer shares: the units a text is counted in, required-word matching, repeated n-grams
and distinct n-grams. Chinese has no spaces, so it is counted in characters; other languages in words.

The reward components (reward/components.py), the structure checks of preference data (data/preferences.py), the
RL monitor and the evaluation metrics all count with these functions, so a text is measured the same way
everywhere.
"""

from __future__ import annotations

import functools
import re

import simplemma


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


CHAR_RUN = 5     # a character repeated this many times in a row is repetition ("aaaaaaaa", "!!!!!"), not a word


def char_run_share(text: str) -> float:
    """Share of the non-space characters that stand in runs of CHAR_RUN or more of the same character.

    >>> char_run_share("a" * 10000), char_run_share("So good!")
    (1.0, 0.0)
    """
    stripped = "".join(text.split())
    if not stripped:
        return 0.0
    in_runs = sum(len(m.group(0)) for m in re.finditer(r"(.)\1{%d,}" % (CHAR_RUN - 1), stripped))
    return in_runs / len(stripped)


def repeated_ngram_share(text: str, lang: str, n: int) -> float:
    """Repetition in [0, 1]: 1 - unique / total n-grams of the text's units (0 = no repetition, near 1 = one phrase
    over and over), or the share of characters in runs of one character, whichever is larger (10,000 times the
    same letter is one 'word' with no repeated n-gram, but it is repetition). Texts shorter than n score 0.

    >>> repeated_ngram_share("la la la la la", "en", 3)
    0.6666666666666667
    """
    grams = ngrams(text_units(text, lang), n)
    return max(1.0 - len(set(grams)) / len(grams) if grams else 0.0, char_run_share(text))


LEMMA_LANGS = ("en", "es")        # simplemma covers both; Chinese is matched as a substring (no word boundaries)


def _words_of(text: str) -> list[str]:
    """Case-folded words; hyphens and apostrophes separate them ('ice-cream' -> ice, cream)."""
    return re.findall(r"[^\W_]+", text.casefold())


@functools.lru_cache(maxsize=200_000)
def _lemma(word: str, lang: str) -> str:
    return simplemma.lemmatize(word, lang=lang).casefold()


def _same_word(token: str, required: str, lang: str) -> bool:
    """The token is the required word or an inflected form of it: the same lemma (simplemma) and the same first
    letter, so that irregular forms count (mice, cacti, ran) but a lemma's synonyms do not ('better' for 'good')."""
    return token == required or (token[0] == required[0] and _lemma(token, lang) == _lemma(required, lang))


def contains_word(text: str, word: str, lang: str | None = None) -> bool:
    """Is the required word (or phrase) in the text? The one matcher behind coverage, the structure check, the
    submission check and the preference builders.

    Chinese (or a word in CJK characters): a substring. Latin scripts: whole words, case-folded, Unicode-aware,
    accepting inflected forms (plural, verb forms) of the same lemma, and hyphen / space / joined variants of a
    multi-word keyword ('ice cream' matches 'ice-cream' and 'icecream'). lang None: detected from the text.

    >>> contains_word("The Cactus sued.", "cactus"), contains_word("冰箱说它要减肥", "减肥")
    (True, True)
    >>> contains_word("I want to start a fan club.", "ant"), contains_word("Three mice and two cacti", "mouse")
    (False, True)
    """
    if lang == "zh" or any("\u4e00" <= ch <= "\u9fff" for ch in word):
        return word.casefold() in text.casefold()
    lang = lang if lang in LEMMA_LANGS else ("es" if detect_lang(text) == "es" else "en")
    required, tokens = _words_of(word), _words_of(text)
    if not required:
        return False
    if len(required) > 1 and any(_same_word(t, "".join(required), lang) for t in tokens):
        return True                                        # 'icecream' for 'ice cream'
    n = len(required)
    return any(all(_same_word(t, r, lang) for t, r in zip(tokens[i:i + n], required))
               for i in range(len(tokens) - n + 1))


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
    """The language of a text when a file does not say: 'zh' when its Han characters are at least as many as its
    Latin-letter words (a Chinese character carries about a word: "请启动一个ExpressJS服务器" is Chinese with a
    name in it), else 'es' or 'en' by Spanish marks and common function words. A heuristic for en/es/zh only.

    >>> detect_lang("我的仙人掌起诉了我"), detect_lang("¿Por qué el cactus no tiene amigos?"), detect_lang("Why did the cactus sue?")
    ('zh', 'es', 'en')
    >>> detect_lang("请启动一个ExpressJS服务器"), detect_lang("My friend 李明 says his cactus is suing him")
    ('zh', 'en')
    """
    han = sum("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)
    latin_words = len(re.findall(r"[A-Za-zÀ-ÿ]+", text))
    if han and han >= latin_words:
        return "zh"
    words = re.findall(r"\w+", text.lower())
    spanish = sum(w in _SPANISH_WORDS for w in words) + 2 * sum(ch in _SPANISH_MARKS for ch in text)
    english = sum(w in _ENGLISH_WORDS for w in words)
    return "es" if spanish > english else "en"
