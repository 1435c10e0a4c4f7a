#!/usr/bin/env bash
# The test suite on tiny random models (no downloads, a few minutes on 2 cores). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/scripts/venv.sh"
python -m pytest -q "$@"
