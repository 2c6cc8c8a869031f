#!/usr/bin/env bash
# What JupyterLab and VS Code need to run the notebooks as `make run` does (`make setup` and
# `make lab` run it; it is quick and idempotent):
# - the `mnist-lambda` kernel, which the notebooks name, registered inside .venv/ and running
#   .venv/bin/python: JupyterLab from .venv/ lists it, VS Code's Jupyter extension finds it
#   under the .venv interpreter, papermill runs it;
# - autosave off for JupyterLab from .venv/: opening or running a notebook does not rewrite it
#   on disk, only saving on purpose does (and the nbstripout filter keeps outputs out of git).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c "from mnist_lambda.pipeline.runner import ensure_kernel; ensure_kernel()"
settings=.venv/share/jupyter/lab/settings
mkdir -p "$settings"
cat > "$settings/overrides.json" <<'JSON'
{
  "@jupyterlab/docmanager-extension:plugin": {
    "autosave": false
  }
}
JSON
echo "setup: kernel 'mnist-lambda (.venv)' registered in .venv/; JupyterLab autosave off"
