"""Contract tests with TRL and transformers (common/compat.py): each fails on a release that changes an internal the
project relies on, instead of the project going quietly wrong. The sampling temperature / top-p and the log keys
the alarms read are checked on real runs in tests/rl/test_online.py."""

import inspect

import pytest
from trl import GRPOTrainer, RLOOTrainer

from common.compat import (
    ANY_VERSION_ENV,
    REWARD_TRAINER_COLUMNS,
    SAMPLING_METHOD,
    SCORING_METHOD,
    SUPPORTED,
    check_versions,
    default_top_k,
)


def test_versions_outside_the_checked_range_are_refused_in_one_line(monkeypatch):
    monkeypatch.delenv(ANY_VERSION_ENV, raising=False)
    low = {package: f"{low}.0" for package, (low, _) in SUPPORTED.items()}
    check_versions(low)                                               # the lowest supported passes
    check_versions()                                                  # so does what is installed
    for package, (_, high) in SUPPORTED.items():
        with pytest.raises(ValueError, match=rf"^{package} {high}\.0 is outside .*{ANY_VERSION_ENV}=1"):
            check_versions({**low, package: f"{high}.0"})
    monkeypatch.setenv(ANY_VERSION_ENV, "1")
    check_versions({**low, "trl": "9.0.0"})                           # the user's own risk, on request


@pytest.mark.parametrize("trainer", [GRPOTrainer, RLOOTrainer])
def test_the_online_trainers_have_the_steps_the_monitor_overrides_with_the_same_arguments(trainer):
    """rl/monitor.py's SamplingMonitor calls super() with these exact arguments."""
    params = lambda name: list(inspect.signature(getattr(trainer, name)).parameters)
    assert params(SAMPLING_METHOD) == ["self", "prompts"]
    assert params(SCORING_METHOD) == ["self", "inputs", "prompts", "completions", "completion_ids_list"]


def test_a_trainer_without_those_steps_is_refused_by_the_seam():
    from rl.monitor import monitored
    with pytest.raises(TypeError, match=r"has no \['_generate', '_calculate_rewards'\]"):
        monitored(object)


def test_generate_has_a_default_top_k_our_fast_nucleus_copies():
    assert default_top_k() == 50


def test_reward_trainer_trains_on_pre_tokenized_pairs_as_given(tmp_path):
    """The ranking RM hands RewardTrainer ids already tokenized as the encoder does ([CLS] ... [SEP]): TRL must take
    them as they are, chosen first, without tokenizing again or appending an EOS."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from common.models import load_classifier
    model, tokenizer = load_classifier("tiny:bert", num_labels=1)
    chosen = tokenizer(["a cat sued a dog", "ha"])["input_ids"]
    rejected = tokenizer(["the end", "a long and winding road"])["input_ids"]
    data = Dataset.from_dict(dict(zip(REWARD_TRAINER_COLUMNS, (chosen, rejected))))
    args = RewardConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to="none", use_cpu=True,
                        max_length=64)
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    rows = [[t for t, m in zip(ids.tolist(), mask.tolist()) if m] for ids, mask in
            zip(batch["input_ids"], batch["attention_mask"])]
    assert sorted(rows) == sorted(chosen + rejected)
    order = {tuple(ids): i for i, ids in enumerate(rows)}
    assert all(order[tuple(c)] < len(chosen) for c in chosen)          # the chosen half comes first


def test_torch_says_whether_the_cpu_has_native_bf16():
    from common.compat import cpu_has_native_bf16
    assert isinstance(cpu_has_native_bf16(), bool)
