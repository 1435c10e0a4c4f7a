"""Prompt templates (the seed authors' wording for Chinese) and the two-words prompt built from a joke.

>>> prompt_text(TaskPrompt("en_1", "en", "words", words=("cactus", "lawsuit")))
'Write a funny text in English that uses the following two words:\\n\\nWords: cactus, lawsuit\\n\\nFunny text:'
>>> pick_two_words("I told my cactus a secret. Now it keeps needling me about it.", "en")
('cactus', 'needling')
"""

from __future__ import annotations

import logging
import re

import jieba
import jieba.posseg as pseg

from data.loaders import Demonstration, LabeledText, TaskPrompt

TEMPLATES = {
    ("zh", "headline"): "请根据以下新闻标题，创作一段幽默的中文文本：\n\n标题：{headline}\n\n幽默文本：",
    ("zh", "words"): "请使用以下两个词语，创作一段幽默的中文文本：\n\n词语：{word1}、{word2}\n\n幽默文本：",
    ("en", "headline"): "Write a funny text in English based on the following news headline:\n\nHeadline: {headline}\n\nFunny text:",
    ("en", "words"): "Write a funny text in English that uses the following two words:\n\nWords: {word1}, {word2}\n\nFunny text:",
    ("es", "headline"): "Escribe un texto humorístico en español basado en el siguiente titular de noticia:\n\n"
                        "Titular: {headline}\n\nTexto humorístico:",
    ("es", "words"): "Escribe un texto humorístico en español que use las siguientes dos palabras:\n\n"
                     "Palabras: {word1}, {word2}\n\nTexto humorístico:",
    # the seed authors' pun prompts (the homographic prompt begins "根据上述词义，" after a word definition we do not have)
    ("zh", "homographic"): "请为我编写一个幽默的句子，并使用“{word1}”这个词在一个句子中一次或多次。这个句子应该能够引发笑声或娱乐，"
                           "并展示“{word1}”这个词的不同含义在幽默语境下的创意用法。你可以尝试在句子中加入意想不到的情节或转折，"
                           "以增加幽默效果。请确保句子仍然通顺、自然，并具有良好的语法和逻辑结构。",
    ("zh", "homophonic"): "请为我编写一个幽默的句子，其中包含词语“{word1}”和“{word2}”。这个句子应该能够引发笑声或娱乐，"
                          "并展示“{word1}”和“{word2}”这两个同音词语在幽默语境下的创意用法。你可以尝试在句子中加入意想不到的"
                          "情节或转折，以增加幽默效果。请确保句子仍然通顺、自然，并具有良好的语法和逻辑结构。",
    ("en", "homographic"): "Write me a funny sentence that uses the word \"{word1}\" once or more, playing on its different "
                           "meanings. Add an unexpected twist to make it funnier, and keep it fluent and grammatical.",
    ("en", "homophonic"): "Write me a funny sentence that plays on the similar-sounding words \"{word1}\" and \"{word2}\". "
                          "Add an unexpected twist to make it funnier, and keep it fluent and grammatical.",
}

# The annotator's instruction (the seed authors' wording for zh): a joke -> a related news headline and
# two key words of the joke, one verb and one noun, as JSON only.
ANNOTATE_TEMPLATES = {
    "zh": "你是一个幽默分析专家。请分析下面这个笑话，提取或生成：\n"
          "1. 一个相关的新闻标题（headline）：可以是笑话的背景、主题或相关新闻，10-40字\n"
          "2. 两个关键词（word1, word2）：笑话中最重要的两个词，必须一个为动词另一个为名词，每个2-5字\n\n"
          "笑话：{joke}\n\n要求：\n- headline要简洁，像新闻标题\n- word1和word2要是笑话中的词汇\n"
          "- 严格按照JSON格式输出，不要有其他内容\n\n输出格式：\n"
          '{{"headline": "新闻标题", "word1": "关键词1", "word2": "关键词2"}}',
    "en": "You are an expert in humor. Read the joke below and write:\n"
          "1. a related news headline (headline): the joke's background, topic or a related piece of news, 4-20 words\n"
          "2. two key words (word1, word2): the two most important words of the joke, one a verb and the other a "
          "noun, each one word taken from the joke\n\nJoke: {joke}\n\nRules:\n- the headline is short, like a "
          "news headline, and does not repeat the joke\n- word1 and word2 appear in the joke\n- answer with the "
          "JSON only, nothing else\n\nOutput format:\n"
          '{{"headline": "news headline", "word1": "keyword 1", "word2": "keyword 2"}}',
    "es": "Eres un experto en humor. Lee el chiste y escribe:\n"
          "1. un titular de noticia relacionado (headline): el contexto, el tema o una noticia relacionada, 4-20 "
          "palabras\n2. dos palabras clave (word1, word2): las dos palabras más importantes del chiste, un verbo y "
          "un sustantivo, cada una tomada del chiste\n\nChiste: {joke}\n\nReglas:\n- el titular es breve, como "
          "un titular de prensa, y no repite el chiste\n- word1 y word2 aparecen en el chiste\n- responde solo con "
          "el JSON, nada más\n\nFormato de salida:\n"
          '{{"headline": "titular", "word1": "palabra clave 1", "word2": "palabra clave 2"}}',
}

STOP_WORDS = {
    "en": set("""a about above after again against all am an and any are aren't as at be because been before being
        below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during
        each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
        herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself let's me more
        most mustn't my myself no nor not of off on once only or other ought our ours ourselves out over own same
        shan't she she'd she'll she's should shouldn't so some such than that that's the their theirs them
        themselves then there there's these they they'd they'll they're they've this those through to too under
        until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where where's which
        while who who's whom why why's with won't would wouldn't you you'd you'll you're you've your yours yourself
        yourselves just now also still even really like get got said says told tell asked ask one two make made
        because will now then much many every never always something nothing thing things""".split()),
    "es": set("""a al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el
        ella ellas ellos en entre era erais eran eras eres es esa esas ese eso esos esta estaba estado estamos estan
        estar estas este esto estos estoy fue fueron fui ha habia han has hasta hay la las le les lo los mas me mi
        mis mucho muchos muy nada ni no nos nosotros o os otra otras otro otros para pero poco por porque que quien
        se sea ser si sido sin sobre son su sus tambien tanto te tengo tiene tienen todo todos tu tus un una uno
        unos vosotros y ya yo dijo dice ahora cada vez más qué cómo está están también así después""".split()),
}


def prompt_text(task: TaskPrompt) -> str:
    """The instruction for one task, in the task's language."""
    template = TEMPLATES.get((task.lang, task.prompt_type))
    if template is None:
        raise ValueError(f"{task.id}: no template for language {task.lang!r} and prompt type {task.prompt_type!r}")
    if task.prompt_type == "headline":
        return template.format(headline=task.headline)
    return template.format(word1=task.words[0], word2=task.words[-1])


def task_theme(task: TaskPrompt) -> str:
    """What a joke is about, as a prompt-aware reward model reads it beside the joke: the required words joined by
    commas, or the headline ('' for a task with neither). The same for people's votes on a theme.

    >>> task_theme(TaskPrompt("1", "en", "words", words=("cactus", "lawsuit")))
    'cactus, lawsuit'
    """
    if task.words:
        return ", ".join(task.words)
    return task.headline or ""


def format_for_model(tokenizer, text: str) -> str:
    """The prompt as the model sees it: the tokenizer's chat template when it has one, else the raw text."""
    return format_conversation(tokenizer, [{"role": "user", "content": text}])


def format_conversation(tokenizer, messages: list[dict]) -> str:
    """A conversation ({role, content} turns ending with the user's) as the model sees it before answering: the
    chat template when the tokenizer has one, else the turns' texts separated by blank lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(m["content"] for m in messages)


def completion_prefix(tokenizer) -> str:
    """What separates a raw prompt ('...Funny text:') from its joke; a chat template has its own separator."""
    return "" if getattr(tokenizer, "chat_template", None) else " "


def _content_words_latin(text: str, lang: str) -> list[str]:
    words = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text)
    stop = STOP_WORDS[lang]
    return [w for w in words if len(w) >= 4 and w.lower() not in stop and "'" not in w]


def annotate_prompt(joke: str, lang: str) -> str:
    """The annotator's instruction for one joke (ANNOTATE_TEMPLATES)."""
    if lang not in ANNOTATE_TEMPLATES:
        raise ValueError(f"no annotation template for language {lang!r}; have {sorted(ANNOTATE_TEMPLATES)}")
    return ANNOTATE_TEMPLATES[lang].format(joke=joke)


def zh_pos(word: str) -> str | None:
    """'noun', 'verb' or None for a Chinese word, by jieba's tag of the word as a whole (its first piece)."""
    jieba.setLogLevel(logging.WARNING)
    pairs = list(pseg.cut(word))
    flag = pairs[0].flag if pairs else ""
    return "noun" if flag.startswith("n") else "verb" if flag.startswith("v") else None


def _nouns_verbs_zh(text: str) -> tuple[list[str], list[str]]:
    jieba.setLogLevel(logging.WARNING)
    nouns, verbs = [], []
    for pair in pseg.cut(text):
        if len(pair.word) < 2:
            continue
        if pair.flag.startswith("n"):
            nouns.append(pair.word)
        elif pair.flag.startswith("v"):
            verbs.append(pair.word)
    return nouns, verbs


def pick_two_words(text: str, lang: str) -> tuple[str, str] | None:
    """Two content words of a joke, to build a two-words prompt it answers. None when it has fewer than two.

    Chinese: a noun and a verb by jieba's POS tags (two nouns if there is no verb). English/Spanish (no tagger):
    the two longest non-stop-words, longer words being rarer, as MWAHAHA's word pairs are; in text order."""
    if lang == "zh":
        nouns, verbs = _nouns_verbs_zh(text)
        if nouns and verbs and nouns[0] != verbs[0]:
            pair = [nouns[0], verbs[0]]
        else:
            candidates = list(dict.fromkeys(nouns + verbs))
            if len(candidates) < 2:
                return None
            pair = candidates[:2]
        return tuple(sorted(pair, key=text.index))
    if lang not in STOP_WORDS:
        raise ValueError(f"no stop-word list for language {lang!r}")
    words = list(dict.fromkeys(_content_words_latin(text, lang)))  # unique, text order
    if len(words) < 2:
        return None
    longest = sorted(words, key=len, reverse=True)[:2]  # sorted() is stable: ties keep text order
    return tuple(w for w in words if w in longest)


def demonstrations_from_jokes(rows: list[LabeledText]) -> tuple[list[Demonstration], int]:
    """(two-words demonstrations built from the humor rows, number of jokes skipped for lack of two words)."""
    demos, skipped = [], 0
    for row in rows:
        if row.label != 1:
            continue
        words = pick_two_words(row.text, row.lang)
        if words is None:
            skipped += 1
            continue
        demos.append(Demonstration(TaskPrompt(f"{row.id}:words", row.lang, "words", words=words), row.text))
    return demos, skipped
