#!/usr/bin/env bash
# The test suite on tiny random models (no downloads, a few minutes on 2 cores). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/scripts/venv.sh"
ruff check --quiet .          # pyflakes, pycodestyle, import order (pyproject.toml [tool.ruff])
python -m pytest -q "$@"
