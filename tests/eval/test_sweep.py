"""The sweep runner: one RL run per setting (GRPO, or the stage a setting names), the same evaluation, a Pareto
table and plot, resume, failures."""

import csv
import json

import pytest
import yaml

from tests.conftest import TINY


@pytest.mark.e2e
def test_sweep_runs_settings_records_failures_and_resumes(run, tmp_path, capsys):
    from eval.sweep import main as sweep

    run_dir, _ = run
    spec = {"name": "w", "config": TINY, "overrides": {"max_steps": 2}, "eval": {"samples_per_prompt": 1},
            "settings": {"default": {"reward_weights": "default"}, "kl": {"kl_beta": 0.2, "stage": "rloo"},
                         "broken": {"reward_weights": {"words": {"no_such_component": 1.0}}}}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    args = [str(path), "--runs_dir", str(run_dir.parent), "--run_name", run_dir.name]
    rows = sweep(args)
    assert [(r["setting"], r["status"]) for r in rows] == [("start (sft)", "reference"), ("default", "done"),
                                                           ("kl", "done"), ("broken", "failed")]
    assert "no_such_component" in rows[3]["error"]
    sweep_dir = run_dir.parent / "sweeps" / "w"
    table = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert [r["setting"] for r in table] == ["start (sft)", "default", "kl", "broken"] and table[1]["mean_rm"]
    assert any(r["pareto"] == "True" for r in table[1:3]) and table[0]["pareto"] == ""   # the start is no candidate
    report = (sweep_dir / "report.md").read_text()
    assert "![pareto](pareto.png)" in report and "## failed settings" in report
    assert (sweep_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    for name, algorithm in (("default", "grpo"), ("kl", "rloo")):        # one TensorBoard parent, one run each
        assert any((sweep_dir / name / algorithm / "tb").iterdir())
        result = json.loads((sweep_dir / name / "eval.json").read_text())
        assert result["status"] == "done" and result["stage"] == algorithm
    capsys.readouterr()
    again = sweep(args)                                                  # finished settings are skipped
    out = capsys.readouterr().out
    assert "default: done before, skipped" in out and "kl: done before, skipped" in out
    assert [r["status"] for r in again] == ["reference", "done", "done", "failed"]


def test_a_setting_naming_an_unknown_stage_is_refused_before_anything_runs(tmp_path):
    import pytest

    from eval.sweep import read_sweep
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "w", "config": TINY, "settings": {"a": {"stage": "dpo"}}}))
    with pytest.raises(ValueError, match=r"setting 'a': 'stage' must be one of \['grpo', 'rloo', 'ppo'\]"):
        read_sweep(path)
