from types import SimpleNamespace

from data.loaders import LabeledText, TaskPrompt
from data.prompts import demonstrations_from_jokes, format_for_model, pick_two_words, prompt_text


def test_templates_in_three_languages():
    zh = prompt_text(TaskPrompt("zh_1", "zh", "headline", headline="熊猫拒绝吃竹子"))
    assert zh == "请根据以下新闻标题，创作一段幽默的中文文本：\n\n标题：熊猫拒绝吃竹子\n\n幽默文本："
    zh_words = prompt_text(TaskPrompt("zh_2", "zh", "words", words=("冰箱", "减肥")))
    assert "词语：冰箱、减肥" in zh_words
    es = prompt_text(TaskPrompt("es_1", "es", "words", words=("gato", "presupuesto")))
    assert es.startswith("Escribe un texto humorístico") and "gato, presupuesto" in es
    en = prompt_text(TaskPrompt("en_1", "en", "headline", headline="Cats ignore humans"))
    assert "Headline: Cats ignore humans" in en and en.endswith("Funny text:")


def test_two_words_from_a_joke():
    assert pick_two_words("The astronaut broke up with the moon. She needed space.", "en") == ("astronaut", "needed")
    assert pick_two_words("Mi despertador y yo tenemos una relación complicada.", "es") == ("despertador", "complicada")
    noun, verb = pick_two_words("医生让我多运动，我就每天在床上翻身一百次。", "zh")
    assert (noun, verb) == ("医生", "运动")
    assert pick_two_words("It is so.", "en") is None


def test_demonstrations_only_from_jokes():
    rows = [LabeledText("The penguin wore a tuxedo to the interview.", 1, "en", "t", "1"),
            LabeledText("The council approved the budget.", 0, "en", "t", "2")]
    demos, skipped = demonstrations_from_jokes(rows)
    assert len(demos) == 1 and skipped == 0 and demos[0].task.words == ("penguin", "interview")


def test_chat_template_used_when_the_tokenizer_has_one():
    calls = []
    chat = SimpleNamespace(chat_template="x", apply_chat_template=lambda msgs, **kw: calls.append((msgs, kw)) or "<chat>")
    assert format_for_model(chat, "hi") == "<chat>"
    assert calls[0][0] == [{"role": "user", "content": "hi"}] and calls[0][1]["add_generation_prompt"] is True
    assert format_for_model(SimpleNamespace(chat_template=None), "hi") == "hi"
