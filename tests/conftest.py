from pathlib import Path

import pytest

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--data_dir", default=str(DEFAULT_DATA_DIR),
                     help="Directory of the real data sets (../shared/data layout); tests that need it skip if absent.")


@pytest.fixture(scope="session")
def data_dir(request) -> Path:
    path = Path(request.config.getoption("--data_dir"))
    if not (path / "SOURCES.md").is_file() and not (path / "colbert_humor").is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml")


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """sft -> rm -> grpo -> ppo -> dpo -> dpop -> eval on configs/tiny.yaml, in sequence as a user runs them (shared by the test files)."""
    from reward.train_rm import main as train_rm
    from rl.dpo import main as dpo
    from rl.grpo import main as grpo
    from rl.ppo import main as ppo
    from sft.sft import main as sft

    runs = tmp_path_factory.mktemp("runs")
    common = ["--config", TINY, "--runs_dir", str(runs), "--run_name", "t"]
    summaries = {"sft": sft(common), "rm": train_rm(common), "grpo": grpo(common + ["--max_steps", "3"]),
                 "ppo": ppo(common + ["--max_steps", "3"]),
                 "dpo": dpo(common + ["--loss", "dpo"]), "dpop": dpo(common + ["--loss", "dpop"])}
    from eval.evaluate import main as evaluate
    summaries["eval"] = evaluate(common + ["--samples_per_prompt", "2"])
    return runs / "t", summaries


def pytest_collection_modifyitems(config, items):
    """Every test on the shared trained pipeline (the `run` fixture) is end to end; the others that train or
    sample carry @pytest.mark.e2e themselves."""
    for item in items:
        if "run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
