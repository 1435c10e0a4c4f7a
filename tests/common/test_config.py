import pytest

from common.config import parse_config
from common.stage_configs import GRPOArgs, SFTArgs


def test_preset_shared_keys_section_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("run_name: r1\nlangs: [en, zh]\nrm_backbone: tiny:bert\nsft:\n  max_steps: 7\n  learning_rate: 1\n")
    cfg = parse_config(SFTArgs, "sft", ["--config", str(f), "--learning_rate", "0", "--run_name", "r2"])
    assert (cfg.run_name, cfg.langs, cfg.max_steps, cfg.learning_rate) == ("r2", ["en", "zh"], 7, 0.0)
    assert isinstance(cfg.learning_rate, float)


def test_a_ranking_rm_reads_the_rm_section_then_its_own_and_the_classifier_only_rms(tmp_path):
    from reward.train_rm import main as train_rm

    f = tmp_path / "p.yaml"
    f.write_text("run_name: r\nmax_rows_per_source: 50\nrm:\n  max_steps: 150\n  batch_size: 16\n"
                 "rm_pairwise:\n  max_steps: 600\n  max_rows_per_source: null\n")
    classifier = train_rm(["--config", str(f), "--dry_run", "true"])["config"]
    pairwise = train_rm(["--config", str(f), "--rm_objective", "pairwise", "--dry_run", "true"])["config"]
    rating = train_rm(["--config", str(f), "--rm_objective", "rating", "--dry_run", "true"])["config"]
    assert (classifier["max_steps"], classifier["batch_size"], classifier["max_rows_per_source"]) == (150, 16, 50)
    assert (pairwise["max_steps"], pairwise["batch_size"], pairwise["max_rows_per_source"]) == (600, 16, None)
    assert (rating["max_steps"], rating["max_rows_per_source"]) == (150, 50)
    over = train_rm(["--config", str(f), "--rm_objective", "pairwise", "--max_steps", "3", "--dry_run", "true"])
    assert over["config"]["max_steps"] == 3                               # the command line still wins
    f.write_text("rm_pairwise:\n  kl_beta: 0.1\n")
    with pytest.raises(ValueError, match="unknown key 'kl_beta' in section 'rm_pairwise'"):
        train_rm(["--config", str(f), "--rm_objective", "pairwise", "--dry_run", "true"])


def test_unknown_keys_are_errors(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("learnin_rate: 1\n")
    with pytest.raises(ValueError, match="unknown key 'learnin_rate'"):
        parse_config(SFTArgs, "sft", ["--config", str(f)])
    g = tmp_path / "section.yaml"
    g.write_text("sft:\n  kl_beta: 0.1\n")  # a GRPO field in the SFT section
    with pytest.raises(ValueError, match="unknown key 'kl_beta' in section 'sft'"):
        parse_config(SFTArgs, "sft", ["--config", str(g)])
    with pytest.raises(SystemExit):
        parse_config(SFTArgs, "sft", ["--no_such_flag", "1"])


def test_type_errors_and_derived_checks():
    with pytest.raises(ValueError, match="'max_steps' must be int"):
        parse_config(SFTArgs, "sft", ["--max_steps", "three"])
    with pytest.raises(ValueError, match="num_generations >= 2"):
        parse_config(GRPOArgs, "grpo", ["--num_generations", "1", "--batch_size", "4"])
    with pytest.raises(ValueError, match="multiple of num_generations"):
        parse_config(GRPOArgs, "grpo", ["--num_generations", "3", "--batch_size", "8"])
    cfg = parse_config(GRPOArgs, "grpo", ["--reward_weights", "{words: {coverage_reward: 1.0}}"])
    assert cfg.reward_weights == {"words": {"coverage_reward": 1.0}}


def test_exponent_floats_without_a_dot_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-5 (no dot) as a string; a learning rate written that way must still be a float
    assert parse_config(SFTArgs, "sft", ["--learning_rate", "1e-5"]).learning_rate == 1e-5
    f = tmp_path / "lr.yaml"
    f.write_text("sft:\n  learning_rate: 3e-4\n")
    assert parse_config(SFTArgs, "sft", ["--config", str(f)]).learning_rate == 3e-4
    with pytest.raises(ValueError, match="'learning_rate' must be a number, got 'fast'"):
        parse_config(SFTArgs, "sft", ["--learning_rate", "fast"])
    assert parse_config(GRPOArgs, "grpo", ["--reward_weights", "seed"]).reward_weights["words"]["rm_reward"] == 0.55


# Numeric fields that take any value, each with the reason (none today: every numeric field has a range).
UNBOUNDED_NUMERIC_FIELDS: dict[str, str] = {}


def test_every_numeric_field_carries_its_range_and_its_default_is_in_it():
    import dataclasses
    import typing

    from common.stage_configs import Range
    from common.stages import SECTIONS

    numeric = {int, float, int | None, float | None}
    missing = []
    for cls in set(SECTIONS.values()):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] not in numeric or f.name in UNBOUNDED_NUMERIC_FIELDS:
                continue
            allowed = f.metadata.get("range")
            if not isinstance(allowed, Range):
                missing.append(f"{cls.__name__}.{f.name}")
            elif f.default is not None and f.default is not dataclasses.MISSING:
                assert f.default in allowed, f"{cls.__name__}.{f.name}: default {f.default} not {allowed}"
    assert not missing, f"numeric fields without metadata['range']: {sorted(missing)}"


def test_a_value_outside_a_fields_range_is_refused_naming_the_field():
    from common.stage_configs import PPOArgs, RMArgs

    with pytest.raises(ValueError, match="kl_beta must be >= 0, got -1.0"):
        parse_config(PPOArgs, "ppo", ["--kl_beta", "-1"])
    # a name defined in several classes carries its range in each
    with pytest.raises(ValueError, match="max_length must be >= 1, got 0"):
        parse_config(RMArgs, "rm", ["--max_length", "0"])
    with pytest.raises(ValueError, match=r"max_length must be >= 1, got 0"):
        parse_config(SFTArgs, "sft", ["--max_length", "0"])
    with pytest.raises(ValueError, match=r"test_size must be in \(0, 1\), got 1.0"):
        parse_config(RMArgs, "rm", ["--test_size", "1"])
    assert parse_config(PPOArgs, "ppo", ["--kl_beta", "0"]).kl_beta == 0.0     # the bound itself is allowed


def test_help_shows_a_fields_range(capsys):
    from common.stage_configs import EvalArgs, PPOArgs

    with pytest.raises(SystemExit):
        parse_config(PPOArgs, "ppo", ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "too large stops learning. (must be >= 0)" in text            # kl_beta's help, then its range
    assert "--gamma GAMMA Discount over completion tokens (1: the joke is one episode). (must be in [0, 1])" in text
    with pytest.raises(SystemExit):                                       # a literal % in a help text is no format
        parse_config(EvalArgs, "eval", ["--help"])
    assert "95 % intervals. (must be >= 1)" in " ".join(capsys.readouterr().out.split())
