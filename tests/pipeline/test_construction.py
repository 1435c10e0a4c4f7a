"""Right by construction: tests that fail on the wrong code, not only pass on the right one.
scripts/mutate.py applies the mutations they are meant to kill and reports which survive."""

import json
from pathlib import Path

import pytest
import tomllib
import torch

from common.models import load_base_policy
from common.stage_configs import PPOArgs, RewardArgs
from common.training import lora_config

ROOT = Path(__file__).resolve().parents[2]


def perturbed_policy(seed: int = 0):
    """The tiny policy with a LoRA whose B matrices are random (a fresh LoRA is the identity: B = 0)."""
    from peft import get_peft_model

    model, tok = load_base_policy("tiny:llama")
    model = get_peft_model(model, lora_config(PPOArgs(lora_r=4, lora_alpha=8, lora_dropout=0.0)))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.eval(), tok


# ---------------------------------------------------------------- PPO reads the right positions


def test_ppo_logprobs_and_values_match_a_manual_full_forward_at_the_sampling_temperature():
    from rl.ppo import ValueHead, forward

    model, tok = perturbed_policy()
    head = ValueHead(model.config.hidden_size)
    torch.nn.init.normal_(head.linear.weight)
    tok.padding_side = "left"
    enc = tok(["a b c d", "e"], return_tensors="pt", padding=True)
    completion = torch.tensor([[11, 12, 13], [14, 15, 16]])
    batch = {"prompt_ids": enc["input_ids"], "prompt_mask": enc["attention_mask"], "completion_ids": completion,
             "completion_mask": torch.ones_like(completion)}
    temperature = 0.7
    with torch.no_grad():
        got = forward(model, head, batch, temperature, bf16=False)
        ids = torch.cat([enc["input_ids"], completion], 1)
        mask = torch.cat([enc["attention_mask"], torch.ones_like(completion)], 1)
        out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                    output_hidden_states=True)
    Lq = enc["input_ids"].shape[1]
    for b in range(2):
        for t in range(3):
            logits = out.logits[b, Lq + t - 1].float() / temperature          # the position before token t
            expected = torch.log_softmax(logits, -1)[completion[b, t]]
            assert got["logprobs"][b, t].item() == pytest.approx(expected.item(), abs=1e-4), (b, t)
            value = head(out.hidden_states[-1][b:b + 1, Lq + t - 1:Lq + t]).item()
            assert got["values"][b, t].item() == pytest.approx(value, abs=1e-4), (b, t)


def test_ppo_kl_is_positive_once_the_policy_differs_from_its_reference():
    from data.loaders import load_sample_prompts
    from reward.composite import build_components
    from rl.ppo import KLController, ValueHead, rollout

    model, tok = perturbed_policy()
    cfg = PPOArgs(reward_weights={"headline": {"length_reward": 1.0}, "words": {"coverage_reward": 1.0}},
                  max_new_tokens=6, batch_size=4, minibatch_size=2, bf16=False)
    tasks = [t for t in load_sample_prompts() if t.lang == "en"][:4]
    head = ValueHead(model.config.hidden_size)
    _, logs, _ = rollout(model, head, tok, tasks, build_components(cfg), cfg, KLController(0.1), bf16=False)
    assert logs["ppo/kl_sequence"] != 0.0 and abs(logs["kl"]) > 1e-4


# ---------------------------------------------------------------- the preference trainer's loss is rl/losses.py's


@pytest.mark.parametrize("k", [2, 3])
def test_preference_trainer_loss_equals_the_pure_loss_on_the_same_logprobs(tmp_path, k):
    from datasets import Dataset
    from transformers import TrainingArguments

    from rl.losses import dpop_loss, pgcl_loss
    from rl.preference import PreferenceTrainer, collate, sequence_logps, tokenize_example

    model, tok = perturbed_policy(1)
    if k == 2:
        loss_fn = lambda pi, ref: dpop_loss(pi[:, 0], pi[:, 1], ref[:, 0], ref[:, 1], 0.5, 0.5)
    else:
        loss_fn = lambda pi, ref: pgcl_loss(pi[:, 0], pi[:, 1], pi[:, 2], ref[:, 0], ref[:, 1], ref[:, 2], 0.5, 1.0, 0.5)
    completions = [" a cat", " no", " the dog barked"][:k]
    examples = [tokenize_example(tok, p, completions, 64) for p in ("Joke:", "Tell one:")]
    trainer = PreferenceTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                    use_cpu=True, remove_unused_columns=False),
                                train_dataset=Dataset.from_list(examples), data_collator=collate(tok.pad_token_id),
                                loss_fn=loss_fn, beta=0.5)
    batch = collate(tok.pad_token_id)(examples)
    with torch.no_grad():
        pi = sequence_logps(model, batch).view(-1, k)
        with model.disable_adapter():
            ref = sequence_logps(model, batch).view(-1, k)
        got = trainer.compute_loss(model, dict(batch))
    assert (pi - ref).abs().max() > 1e-3                          # the reference is the adapter switched off
    assert got.item() == pytest.approx(loss_fn(pi, ref)[0].item(), rel=1e-5)


# ---------------------------------------------------------------- reward and metrics


class FixedRM:
    def score(self, texts, instructions=None, themes=None):
        return [0.8] * len(texts)


def test_the_seed_formula_on_a_repetitive_text_by_hand():
    from reward.composite import build_components, score

    cfg = RewardArgs(reward_weights="seed", length_window={"en": [2, 40]})
    text = "la la la la la la la la"               # 8 words: 6 trigrams, 1 distinct -> repetition 5/6; length 1.0
    out = score(build_components(cfg, FixedRM()), [text], ["headline"], cfg.reward_weights, lang=["en"], words=[None])
    assert out["repetition_penalty"][0] == pytest.approx(5 / 6)
    assert out["total"][0] == pytest.approx(0.75 * 0.8 + 0.20 * 1.0 - 0.15 * 5 / 6)


def test_f1_is_the_humor_class_when_the_classes_differ():
    from reward.train_rm import classification_metrics

    # labels 1 1 1 0, predictions 1 1 0 1: humor P = R = F1 = 2/3; the not-humor class would give 0
    m = classification_metrics([1, 1, 1, 0], [0.9, 0.8, 0.3, 0.6])
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


@pytest.mark.parametrize("text, words, lang, expected", [
    ("I want to start a fan club.", ["ant", "art"], "en", 0.0),          # hidden inside other words
    ("My cute scarecrow sat in the corner.", ["cut", "car"], "en", 0.0),
    ("The cacti sued me.", ["cactus", "sue"], "en", 1.0),                 # inflected forms
    ("Three mice walk into a bar.", ["mouse", "bar"], "en", 1.0),
    ("I spilled ice-cream on the icecream truck.", ["ice cream", "truck"], "en", 1.0),   # hyphen / space
    ("Los gatos corrieron.", ["gato", "correr"], "es", 1.0),
    ("冰箱说它要减肥", ["冰箱", "减肥"], "zh", 1.0),                           # Chinese: substring
    ("A CACTUS. Lawsuit!", ["cactus", "lawsuit"], "en", 1.0),
    ("A cactus.", ["cactus", "lawsuit"], "en", 0.5),
    # a lemmatizer maps some words onto another word's lemma: a comparative is not its positive, a suppletive
    # form of one verb is not another verb's
    ("This is better than nothing.", ["good", "nothing"], "en", 0.5),
    ("The best day of my life.", ["good", "life"], "en", 0.5),
    ("The worst day of my life.", ["bad", "life"], "en", 0.5),
    ("Fui al mercado ayer.", ["ser", "mercado"], "es", 0.5),
    ("El gatito duerme en la cama.", ["gato", "dormir"], "es", 0.5),   # a diminutive is another word
    ("La casa se casó.", ["casa", "casar"], "es", 1.0),
])
def test_coverage_matches_whole_words_and_their_inflections(text, words, lang, expected):
    from reward.components import coverage_reward

    assert coverage_reward([text], words=[words], lang=[lang]) == [expected]


def test_spanish_ordinals_are_not_script_drift():
    from reward.components import script_drift_penalty

    assert script_drift_penalty(["Llegó el 1º de mayo y la 2ª vez fue peor."], lang="es") == [0.0]


def test_every_package_with_doctests_is_collected():
    testpaths = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["testpaths"]
    with_doctests = {p.parent.name for p in ROOT.glob("*/*.py") if ">>> " in p.read_text(encoding="utf-8")
                     and p.parent.name not in ("tests", "scripts", "bench")}
    assert with_doctests <= set(testpaths), with_doctests - set(testpaths)


# ---------------------------------------------------------------- the reward model's label


def test_the_rm_reads_the_humor_label_it_was_trained_with_and_refuses_unknown_labels(tmp_path):
    from common.models import load_classifier
    from reward.model import RM_META, HumorRewardModel

    model, tok = load_classifier("tiny:bert")
    model.config.id2label, model.config.label2id = {0: "humor", 1: "not_humor"}, {"humor": 0, "not_humor": 1}
    model.save_pretrained(tmp_path / "flipped")
    tok.save_pretrained(tmp_path / "flipped")
    (tmp_path / "flipped" / RM_META).write_text(json.dumps({"with_prompt": False, "humor_label": 0}))
    rm = HumorRewardModel(tmp_path / "flipped")
    texts = ["a joke", "a headline"]
    with torch.no_grad():
        probs = torch.softmax(rm.model(**rm.tokenizer(texts, padding=True, return_tensors="pt")).logits, -1)
    assert rm.score(texts) == pytest.approx(probs[:, 0].tolist(), abs=1e-5)     # column 0 is humor here
    model.config.id2label, model.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    model.save_pretrained(tmp_path / "unknown")
    tok.save_pretrained(tmp_path / "unknown")
    (tmp_path / "unknown" / RM_META).write_text(json.dumps({"with_prompt": False}))
    with pytest.raises(ValueError, match="which label is humor"):
        HumorRewardModel(tmp_path / "unknown")


# ---------------------------------------------------------------- prompts are cut on the left, the same everywhere


def test_long_prompts_keep_their_end_in_every_stage():
    from common.generation import fit_prompt, generate_ids
    from data.loaders import TaskPrompt
    from rl.online import prompt_dataset

    model, tok = load_base_policy("tiny:llama")
    task = TaskPrompt("long", "en", "headline", headline=" ".join(["very"] * 200) + " long headline")
    ds = prompt_dataset([task], tok, max_prompt_tokens=32)
    prompt = ds[0]["prompt"]
    assert prompt.endswith("long headline\n\nFunny text:")                      # the instruction's end survives
    assert len(tok(prompt, add_special_tokens=False)["input_ids"]) <= 32
    assert fit_prompt(tok, "short prompt", 32) == "short prompt"
    captured = {}

    def fake_generate(**kw):                      # records the prompt ids generation gets, stops at once
        captured["ids"] = kw["input_ids"]
        return torch.cat([kw["input_ids"], torch.full((kw["input_ids"].shape[0], 2), tok.eos_token_id)], 1)

    model.generate = fake_generate
    generate_ids(model, tok, [prompt + " " + "pad " * 50], 2, 1.0, 1.0, max_prompt_tokens=32)
    kept = tok.decode(captured["ids"][0], skip_special_tokens=True)
    assert kept.rstrip().endswith("pad") and captured["ids"].shape[1] <= 33      # the end kept, not the start
