"""./run.sh checks every stage's settings before the first stage starts: a value only a late stage refuses stops the
pipeline at once, naming that stage, instead of after SFT and the reward models trained for tens of minutes."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRESETS = [str(ROOT / "configs" / "tiny.yaml"), str(ROOT / "configs" / "cpu_default.yaml")]


@pytest.fixture(scope="module")
def pipeline():
    """scripts/pipeline_preset.py as a module (scripts/ is not a package): run.sh's stage list and its check."""
    spec = importlib.util.spec_from_file_location("pipeline_preset", ROOT / "scripts" / "pipeline_preset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_script(pipeline, tmp_path, capsys, *flags) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python scripts/pipeline_preset.py OUT.yaml FLAGS`, as run.sh calls it."""
    from common.cli import cli

    try:
        cli(pipeline.main)([str(tmp_path / "preset.yaml"), "--runs_dir", str(tmp_path / "runs"), *flags])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_a_value_only_grpo_refuses_stops_the_pipeline_naming_grpo_and_writes_nothing(pipeline, tmp_path, capsys):
    code, out, err = _run_script(pipeline, tmp_path, capsys, "--config", PRESETS[1], "--kl_beta", "-1")
    assert code == 2 and out == ""                                  # run.sh gets no stage to run
    assert err.startswith("error: stage grpo (rl/grpo.py) ") and "kl_beta must be >= 0, got -1.0" in err
    assert "Traceback" not in err and len(err.splitlines()) == 2     # the line, and the --debug hint
    assert not (tmp_path / "runs").exists()                          # no run directory, no lock file


@pytest.mark.parametrize("preset", PRESETS)
def test_shipped_presets_pass_and_every_stage_is_printed(pipeline, preset, tmp_path, capsys):
    code, out, err = _run_script(pipeline, tmp_path, capsys, "--config", preset, "--dry_run", "true")
    assert code == 0, err
    assert out.splitlines() == [pipeline.stage_command(entry, extra) for entry, extra in pipeline.pipeline_stages()]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("flag, value, refusal", [
    ("arena_bootstrap", "0", "arena_bootstrap must be >= 1, got 0"),                  # EvalArgs' range
    ("arena_judge", "judge", "arena_judge 'judge': expected component:<name>"),     # EvalArgs.__post_init__
])
def test_a_value_only_evaluation_refuses_names_the_eval_stage(pipeline, tmp_path, flag, value, refusal):
    pipeline.write_preset(tmp_path / "p.yaml", ["--config", PRESETS[0], f"--{flag}", value])
    with pytest.raises(ValueError, match=r"^stage eval \(eval/evaluate.py\) ") as refused:
        pipeline.check_stage_settings(tmp_path / "p.yaml")
    assert refusal in str(refused.value)


def test_votes_given_to_run_sh_train_the_preference_rm_and_not_the_classifier(pipeline, tmp_path):
    """vote_sources train only the pairwise RM: run.sh hands them to that stage and none to the binary RM before it,
    which would refuse them (as train_rm.py does when a user gives votes to the classifier directly)."""
    pipeline.write_preset(tmp_path / "p.yaml", ["--config", PRESETS[0], "--vote_sources", "[votes.jsonl]"])
    pipeline.check_stage_settings(tmp_path / "p.yaml")
    from common.config import parse_config as real_parse_config
    configs = {entry.name: real_parse_config(entry.config, entry.section, ["--config", str(tmp_path / "p.yaml"), *extra])
               for entry, extra in pipeline.pipeline_stages()}
    assert configs["rm"].vote_sources == [] and configs["rm_pairwise"].vote_sources == ["votes.jsonl"]
    with pytest.raises(ValueError, match="vote_sources are side-by-side"):
        real_parse_config(configs["rm"].__class__, "rm", ["--config", str(tmp_path / "p.yaml")])


def test_every_stage_run_sh_runs_is_checked_with_its_own_flags(pipeline, tmp_path, capsys, monkeypatch):
    """The stages checked are the stages printed for run.sh, each parsed as its entry point parses it (its config
    class, its preset section, `--config PRESET` plus its extra flags), and run.sh keeps no list of its own."""
    parsed = []

    def recording_parse_config(cls, section, argv):
        parsed.append((cls, section, argv, real_parse_config(cls, section, argv)))
        return parsed[-1][-1]

    real_parse_config = pipeline.parse_config
    monkeypatch.setattr(pipeline, "parse_config", recording_parse_config)
    code, out, err = _run_script(pipeline, tmp_path, capsys, "--config", PRESETS[0])
    assert code == 0, err
    stages = pipeline.pipeline_stages()
    preset = str(tmp_path / "preset.yaml")
    assert [(cls, section, argv) for cls, section, argv, _ in parsed] == [
        (entry.config, entry.section, ["--config", preset, *extra]) for entry, extra in stages]
    assert out.splitlines() == [pipeline.stage_command(entry, extra) for entry, extra in stages]
    for (entry, _), (*_, config) in zip(stages, parsed):            # the extra flags make the stage named
        assert getattr(config, "stage_name", entry.name) == entry.name
    run_sh = (ROOT / "run.sh").read_text(encoding="utf-8")
    assert "scripts/pipeline_preset.py" in run_sh
    assert not any(entry.module.replace(".", "/") in run_sh for entry, _ in stages)
