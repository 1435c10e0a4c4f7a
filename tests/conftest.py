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
