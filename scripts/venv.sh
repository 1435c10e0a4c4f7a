# Sourced by run.sh and test.sh: create or reuse .venv/ in the repo root and install what the project needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.installed-$(cat requirements.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  pip install -q --disable-pip-version-check -r requirements.txt
  pip install -q --disable-pip-version-check --no-deps -e .
  touch "$stamp"
fi
