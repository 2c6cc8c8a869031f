#!/usr/bin/env bash
# Create .venv/ with exactly what poetry.lock pins (main + dev groups) and this project, editable.
#
# Poetry resolves and locks; pip installs the exported, hash-pinned lock. That path needs only a
# package index that speaks the simple API (what pip uses), so it works behind mirrors and
# proxies where `poetry install` cannot reach PyPI's JSON API. Where it can, `poetry install
# --with dev` gives the same environment.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
# pip warns once per package about unusable find-links/index locations some machines configure;
# keep real errors, drop that noise.
quiet_pip() { "$@" 2> >(grep -v "^WARNING: Location '" >&2); }
"$PY" - <<'PYCHECK' || { echo "error: Python 3.11+ is needed (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 14) else 1)
PYCHECK

if [ ! -x .tools/bin/poetry ]; then
  echo "setup: installing Poetry into .tools/"
  "$PY" -m venv .tools
  quiet_pip .tools/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/bootstrap-requirements.txt
fi
.tools/bin/poetry check --lock --quiet || {
  echo "error: poetry.lock does not match pyproject.toml; run '.tools/bin/poetry lock'" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.tools/bin/poetry export --with dev --format requirements.txt --output .venv/requirements.lock.txt
echo "setup: installing the locked dependencies into .venv/ (first run takes a few minutes)"
quiet_pip .venv/bin/python -m pip install --quiet --disable-pip-version-check \
  --require-hashes --no-deps -r .venv/requirements.lock.txt
quiet_pip .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .

# checkov (IaC scanner) has a lock of its own: its boto3 pin conflicts with aws-sam-cli's.
[ -x .tools/iac-scan/bin/python ] || "$PY" -m venv .tools/iac-scan
.tools/bin/poetry export --directory tools/iac-scan --format requirements.txt \
  --output "$PWD/.tools/iac-scan/requirements.lock.txt"
quiet_pip .tools/iac-scan/bin/python -m pip install --quiet --disable-pip-version-check \
  --require-hashes --no-deps -r .tools/iac-scan/requirements.lock.txt
# The function's task root as the image has it (requirements for the image's Python and
# platform, the runtime interface client): built now, so `serve` works offline afterwards.
.venv/bin/python -m mnist_lambda.local_stack.task_root
# The Dockerfile's base image (AWS's, or its stand-in from the files above) where an engine
# answers; without one, the tests marked `docker` skip and say why.
if problem=$(.venv/bin/python -c "from mnist_lambda.image.docker_engine import engine_problem as p; print(p() or '')") && [ -z "$problem" ]; then
  .venv/bin/mnist-lambda image base || echo "setup: the base image is not ready (see above); the docker tests will say why" >&2
else
  echo "setup: no Docker engine ($problem): the tests marked docker will skip"
fi
bash scripts/git-notebook-filter.sh
bash scripts/jupyter-setup.sh
touch .venv/.installed
echo "setup: .venv/ is ready"
