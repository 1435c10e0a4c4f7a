"""The house rules of the layout: layers only import downwards, no import cycle, no import hidden in a function
(except optional heavy packages), one list of stages that the entry points and configs agree with."""

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest

from common.config import parse_config
from common.stage_configs import DPOArgs, GRPOArgs, PGCLArgs, PPOArgs, SFTArgs
from common.stages import POLICY_STAGES, SECTIONS, STAGES

ROOT = Path(__file__).resolve().parents[2]
# bottom to top; a package may import its own layer's package and the ones below, never above or beside
LAYERS = {"data": 0, "common": 1, "reward": 2, "sft": 3, "rl": 3, "eval": 4}
LAZY_OK = {"unsloth", "vllm", "deepspeed", "matplotlib"}     # optional or heavy: imported where they are used


def project_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts): p
            for package in LAYERS for p in sorted((ROOT / package).glob("*.py")) if p.name != "__init__.py"}


def imports(path: Path) -> tuple[list[str], list[tuple[int, str]]]:
    """(project modules imported at module level, (line, module) of every import inside a function)."""
    top, nested = [], []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in child.names] if isinstance(child, ast.Import) else [child.module or ""]
                for name in names:
                    (nested.append((child.lineno, name)) if in_function else top.append(name))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return top, nested


def test_layers_only_import_downwards_and_nothing_hides_in_a_function():
    wrong, hidden = [], []
    for module, path in project_modules().items():
        package = module.split(".")[0]
        top, nested = imports(path)
        for name in top:
            target = name.split(".")[0]
            if target in LAYERS and target != package and LAYERS[target] >= LAYERS[package]:
                wrong.append(f"{module} -> {name}")
        hidden += [f"{module}:{line} imports {name}" for line, name in nested if name.split(".")[0] not in LAZY_OK]
    assert not wrong, f"imports that climb a layer or cross to a sibling: {wrong}"
    assert not hidden, f"imports inside functions: {hidden}"


def test_no_import_cycle():
    modules = project_modules()
    graph = {m: [n for n in imports(p)[0] if n in modules and n != m] for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(path + [m, n])}")
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_the_layout_test_catches_a_climbing_import(tmp_path):
    """The checks above must be able to fail: a data module importing reward, and an import in a function."""
    bad = tmp_path / "bad.py"
    bad.write_text("from reward.composite import score\n\ndef f():\n    from eval.metrics import summarize\n")
    top, nested = imports(bad)
    assert top == ["reward.composite"] and nested == [(4, "eval.metrics")]


def test_every_stage_entry_point_parses_its_own_config_section():
    """Each stage parses its section, itself or (an online RL algorithm) through rl/online.py, which parses the
    config of the stage named by the algorithm."""
    from rl.online import OnlineAlgorithm
    online_source = (ROOT / "rl" / "online.py").read_text(encoding="utf-8")
    for stage in STAGES:
        module = importlib.import_module(stage.module)
        assert callable(getattr(module, "main", None)), stage.name
        algorithms = [a for a in vars(module).values() if isinstance(a, OnlineAlgorithm)]
        if algorithms:
            assert [a.name for a in algorithms] == [stage.name] and stage.config is GRPOArgs, stage.name
            assert "parse_config(GRPOArgs, stage(name).section" in online_source
        else:
            source = Path(module.__file__).read_text(encoding="utf-8")
            own = f'parse_config({stage.config.__name__}, "{stage.section}"' in source
            by_objective = stage.name.startswith("rm_") and "parse_config(RMArgs, cfg.stage_name, argv)" in source
            assert own or by_objective, stage.name
        assert SECTIONS[stage.section] is stage.config
    # a new algorithm's row joins these without an edit here (one module + one row in common/stages.py)
    assert {"sft", "grpo", "rloo", "ppo", "dpo", "dpop", "pgcl"} <= set(POLICY_STAGES) and POLICY_STAGES[0] == "sft"


@pytest.mark.parametrize("cls, section, flag", [
    (PPOArgs, "ppo", "epochs"), (PPOArgs, "ppo", "warmup_steps"), (PPOArgs, "ppo", "logging_steps"),
    (PPOArgs, "ppo", "use_unsloth"), (DPOArgs, "dpo", "use_unsloth"), (DPOArgs, "dpo", "structure_eval_prompts"),
    (PGCLArgs, "pgcl", "reward_weights"), (SFTArgs, "sft", "reward_weights"), (GRPOArgs, "grpo", "lam"),
])
def test_a_field_the_stage_does_not_use_is_an_error(cls, section, flag, tmp_path):
    assert flag not in {f.name for f in dataclasses.fields(cls)}
    with pytest.raises(SystemExit):
        parse_config(cls, section, [f"--{flag}", "1"])
    preset = tmp_path / "p.yaml"
    preset.write_text(f"{section}:\n  {flag}: 1\n")
    with pytest.raises(ValueError, match=f"unknown key '{flag}' in section '{section}'"):
        parse_config(cls, section, ["--config", str(preset)])


def test_each_setting_is_defined_once():
    """kl_beta and balance_prompt_types live in one group shared by GRPO and PPO; thresholds are config fields."""
    for name in ("kl_beta", "balance_prompt_types", "drift_threshold", "repetition_threshold", "rm_component"):
        owners = {f.name: cls for cls in (GRPOArgs, PPOArgs) for f in dataclasses.fields(cls)}
        assert name in owners
    source = (ROOT / "common" / "stage_configs.py").read_text(encoding="utf-8")
    assert source.count("    kl_beta:") == 1 and source.count("    balance_prompt_types:") == 1
    assert "gae_lambda" in {f.name for f in dataclasses.fields(PPOArgs)}
