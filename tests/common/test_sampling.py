"""The nucleus sampler of our sampling path: the same kept tokens as transformers' TopPLogitsWarper,
from a top-k slice when it holds the mass, and the same samples end to end."""

import pytest
import torch
from transformers import TopPLogitsWarper

from common.generation import FastTopP


@pytest.mark.parametrize("top_p", [0.3, 0.9, 0.95, 1.0])
@pytest.mark.parametrize("sharpness", [0.1, 1.0, 6.0])          # flat (falls back to the full sort) to peaked
def test_fast_top_p_keeps_the_same_tokens_as_the_full_sort(top_p, sharpness):
    torch.manual_seed(0)
    scores = torch.randn(16, 5000) * sharpness
    ids = torch.zeros(16, 1, dtype=torch.long)
    ours = torch.isfinite(FastTopP(top_p)(ids, scores.clone()))
    theirs = torch.isfinite(TopPLogitsWarper(top_p)(ids, scores.clone()))
    assert torch.equal(ours, theirs)
    assert ours.sum(dim=1).min() >= 1


@pytest.mark.parametrize("top_p", [0.5, 0.95])
@pytest.mark.parametrize("sharpness", [0.3, 4.0])              # flat (the full-sort fallback) and peaked
def test_the_nucleus_sampler_draws_from_exactly_the_nucleus_distribution(top_p, sharpness):
    """What NucleusSampler draws from is softmax(TopPLogitsWarper(scores)): the kept tokens' probabilities,
    renormalised; its output is 0 at one kept token and -inf elsewhere (generate's greedy step takes it); and the
    frequencies of its draws match those probabilities."""
    from common.generation import NucleusSampler

    torch.manual_seed(0)
    row = torch.randn(1, 300) * sharpness
    ids = torch.zeros(1, 1, dtype=torch.long)
    target = TopPLogitsWarper(top_p)(ids, row.clone()).softmax(dim=-1)[0]             # (V,)
    sampler = NucleusSampler(top_p, prefix=64)
    decided = sampler.decide(row)
    if decided is not None:                                            # the slice's draw weights, over the vocabulary
        top_probs, top_idx, keep = decided
        weights = torch.zeros(300).scatter(0, top_idx[0], (top_probs * keep)[0])
        assert torch.allclose(weights / weights.sum(), target, atol=1e-6)
    assert (decided is None) == (sharpness == 0.3)                     # both paths are exercised
    draws = 20_000
    out = sampler(ids.expand(draws, 1), row.expand(draws, -1).clone())                # (N, V)
    assert torch.equal(torch.isfinite(out).sum(dim=1), torch.ones(draws, dtype=torch.long))
    tokens = out.argmax(dim=1)
    assert bool((target[tokens] > 0).all())                            # only kept tokens are drawn
    freq = torch.bincount(tokens, minlength=300).float() / draws
    assert (freq - target).abs().max() < 0.015                         # 4+ standard errors at N = 20,000


def test_generation_applies_temperature_top_k_and_top_p_as_huggingface_does():
    """End to end through generate: with a nucleus that keeps only the most likely token after temperature and
    top-k, our sampling path and transformers' own sampling must write the same tokens."""
    from common.generation import generate_ids, stop_token_ids
    from common.models import load_base_policy

    model, tok = load_base_policy("tiny:llama")
    prompts = ["Write a joke about a cactus:", "Funny text:"]
    ours = generate_ids(model, tok, prompts, 12, 0.9, 1e-6)["completion_ids"]
    enc = tok(prompts, return_tensors="pt", padding=True)
    theirs = model.generate(**enc, max_new_tokens=12, do_sample=True, temperature=0.9, top_p=1e-6,
                            eos_token_id=stop_token_ids(model, tok), pad_token_id=tok.pad_token_id)
    theirs = theirs[:, enc["input_ids"].shape[1]:]
    n = min(ours.shape[1], theirs.shape[1])
    mask = ours[:, :n] != tok.pad_token_id
    assert torch.equal(ours[:, :n][mask], theirs[:, :n][mask])


def test_a_sampled_first_token_follows_the_models_nucleus_distribution():
    """One token for 4,000 copies of a prompt: its frequencies match softmax(top-p(top-k(logits / T))) of the
    model's own next-token logits."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper

    from common.generation import generate_ids
    from common.models import load_base_policy

    model, tok = load_base_policy("tiny:llama")
    torch.manual_seed(11)
    draws = 4000
    ours = generate_ids(model, tok, ["Funny text:"] * draws, 1, 1.5, 0.9)["completion_ids"][:, 0]       # (N,)
    with torch.no_grad():
        logits = model(**tok(["Funny text:"], return_tensors="pt")).logits[:, -1].float()                 # (1, V)
    ids = torch.zeros(1, 1, dtype=torch.long)
    warped = TopPLogitsWarper(0.9)(ids, TopKLogitsWarper(model.generation_config.top_k or 50)(
        ids, TemperatureLogitsWarper(1.5)(ids, logits)))
    target = warped.softmax(dim=-1)[0]
    freq = torch.bincount(ours, minlength=target.shape[0]).float() / draws
    assert bool((target[ours] > 0).all())
    assert (freq - target).abs().max() < 0.03                          # 4 standard errors at N = 4,000


def test_fast_nucleus_changes_how_someone_elses_generate_samples_and_puts_everything_back():
    from transformers import GenerationConfig

    from common.generation import fast_nucleus
    from common.models import load_base_policy

    model, tok = load_base_policy("tiny:llama")
    enc = tok(["Write a joke about a cactus:"], return_tensors="pt")
    config = GenerationConfig(do_sample=True, temperature=0.9, top_p=0.8, max_new_tokens=6,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    config.top_p = 1e-6                    # a nucleus of one token: the same samples however they are drawn
    plain = model.generate(**enc, generation_config=config)
    with fast_nucleus(model, config):
        assert (config.temperature, config.top_k, config.top_p, config.do_sample) == (None, None, None, False)
        fast = model.generate(**enc, generation_config=config)
    assert torch.equal(plain, fast)                                   # the same tokens, drawn the fast way
    assert (config.temperature, config.top_p, config.do_sample) == (0.9, 1e-6, True) and "generate" not in vars(model)


def test_folded_lora_samples_the_policy_itself_and_puts_the_weights_back():
    """The LoRA folded into the weights while sampling: the log-probs of the sampled tokens are the
    unfolded policy's, the same tokens come out, and the base weights are back afterwards."""
    from peft import LoraConfig, get_peft_model

    from common.generation import folded_lora, generate_ids
    from common.logprobs import token_logprobs
    from common.models import load_base_policy

    base, tok = load_base_policy("tiny:llama")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules="all-linear",
                                            init_lora_weights=False))       # random B: the adapter changes outputs
    model.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = ["Write a joke about a cactus:", "Funny text:"]
    torch.manual_seed(3)
    gen = generate_ids(model, tok, prompts, 10, 1.0, 0.9)                   # folded while it samples
    torch.manual_seed(3)
    unfolded = generate_ids(model, tok, prompts, 10, 1.0, 0.9, fold_lora=False)
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n], atol=1e-6), n                   # unfolded again
    ids = torch.cat([gen["prompt_ids"], gen["completion_ids"]], dim=1)
    mask = torch.cat([gen["prompt_mask"], gen["completion_mask"]], dim=1)
    T = gen["completion_ids"].shape[1]
    with torch.no_grad():
        plain, _, _ = token_logprobs(model, ids, mask, last=T)
        with folded_lora(model) as folded_layers:
            folded, _, _ = token_logprobs(model, ids, mask, last=T)
        with model.disable_adapter():
            reference, _, _ = token_logprobs(model, ids, mask, last=T)
    keep = gen["completion_mask"].bool()
    assert folded_layers > 0
    assert torch.allclose(folded[keep], plain[keep], atol=1e-4)
    assert not torch.allclose(reference[keep], plain[keep], atol=1e-3)      # the adapter does matter here
    assert not any(getattr(m, "merged", False) for m in model.modules())
    assert torch.equal(unfolded["completion_ids"], gen["completion_ids"])


def test_bf16_sampling_weights_compute_what_autocast_computes_and_give_the_fp32_weights_back():
    """Under bf16 autocast, bf16 copies of the Linear weights (cast once, not at every call) give the very logits
    autocast gives with the fp32 weights, and the fp32 tensors come back untouched; a tied LM head stays fp32."""
    from peft import LoraConfig, get_peft_model

    from common.generation import bf16_linear_weights, folded_lora, generate_ids, sampling_processors, stop_token_ids
    from common.models import load_base_policy

    base, tok = load_base_policy("tiny:llama")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.eval()
    enc = tok(["Write a joke about a cactus:", "Funny text:"], return_tensors="pt", padding=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), folded_lora(model):
        storage = {n: p.data_ptr() for n, p in model.named_parameters()}
        values = {n: p.detach().clone() for n, p in model.named_parameters()}
        expected = model(**enc).logits
        with bf16_linear_weights(model) as cast:
            got = model(**enc).logits
            assert all(p.dtype == torch.bfloat16 for n, p in model.named_parameters() if "q_proj.base_layer" in n)
        for n, p in model.named_parameters():                              # the very fp32 tensors, untouched
            assert p.data_ptr() == storage[n] and p.dtype == torch.float32 and torch.equal(p, values[n]), n
    assert cast > 0 and torch.equal(got, expected)
    # whole samples: the same tokens as autocast alone (folded once outside both: a fold and unfold can move the fp32
    # weights by an ulp, and a bf16 rounding with them)
    with folded_lora(model):
        torch.manual_seed(5)
        ours = generate_ids(model, tok, ["Funny text:"], 8, 1.0, 0.9, bf16=True, fold_lora=False)
        torch.manual_seed(5)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            plain = model.generate(**tok(["Funny text:"], return_tensors="pt"), max_new_tokens=8,
                                   eos_token_id=stop_token_ids(model, tok), pad_token_id=tok.pad_token_id,
                                   **sampling_processors(model, 1.0, 0.9))
    assert torch.equal(ours["completion_ids"][0][ours["completion_mask"][0].bool()],
                       plain[0, ours["prompt_ids"].shape[1]:][:int(ours["completion_mask"][0].sum())])

    tied = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    tied[1].weight = tied[0].weight                                          # a tied LM head
    with bf16_linear_weights(tied) as cast:
        assert cast == 0 and tied[1].weight.dtype == torch.float32


@pytest.mark.parametrize("bf16", [False, True])
def test_sampling_that_raises_leaves_every_weight_and_setting_as_it_was(bf16):
    """An error inside generate (out of memory, a bad token id, Ctrl-C) must not leave the LoRA folded into the base
    weights, bf16 copies in place of the fp32 weights, or someone else's generation config rewritten: the policy
    would go on training from corrupted weights without a word."""
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig

    from common.generation import fast_nucleus, generate_ids
    from common.models import load_base_policy

    base, tok = load_base_policy("tiny:llama")
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.eval()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    ids = tok(["a cactus walks into a bar"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits

    def explode(**kwargs):
        raise KeyboardInterrupt("interrupted while sampling")

    model.generate = explode
    with pytest.raises(KeyboardInterrupt):
        generate_ids(model, tok, ["Write a joke:"], 4, 0.9, 0.9, bf16=bf16)
    for n, p in model.named_parameters():
        assert p.dtype == dtypes[n] and torch.allclose(p, before[n], atol=1e-6), n    # unfolding rounds
    assert not any(getattr(m, "merged", False) for m in model.modules())
    del model.generate
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, logits, atol=1e-5)

    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.9)
    original = model.generate
    with pytest.raises(RuntimeError, match="boom"):
        with fast_nucleus(model, config):
            raise RuntimeError("boom")
    assert (config.temperature, config.top_k, config.top_p) == (0.7, 20, 0.9)
    assert model.generate == original and "generate" not in vars(model)


@pytest.mark.parametrize("setting", [{"min_p": 0.05}, {"typical_p": 0.9}, {"do_sample": False}, {"top_p": 1.0}])
def test_fast_nucleus_leaves_generate_alone_when_it_cannot_reproduce_the_configured_sampling(setting):
    """A warper of generate's own beyond temperature / top-k / top-p (min_p, typical_p, ...) would be dropped by
    our list: fast_nucleus then changes nothing, and generate samples as configured."""
    from transformers import GenerationConfig

    from common.generation import fast_nucleus
    from common.models import load_base_policy

    model, _ = load_base_policy("tiny:llama")
    config = GenerationConfig(**{"do_sample": True, "temperature": 0.9, "top_p": 0.8, **setting})
    before = config.to_dict()
    with fast_nucleus(model, config):
        assert config.to_dict() == before and "generate" not in vars(model)
