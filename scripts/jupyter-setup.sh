#!/usr/bin/env bash
# What JupyterLab and VS Code need to run the notebooks as `make run` does (`make setup` and
# `make lab` run it; it is quick and idempotent):
# - the `mnist-lambda` kernel, which the notebooks name, registered inside .venv/ and running
#   .venv/bin/python: JupyterLab from .venv/ lists it, VS Code's Jupyter extension finds it
#   under the .venv interpreter, papermill runs it;
# - autosave off for JupyterLab from .venv/: opening or running a notebook does not rewrite it
#   on disk, only saving on purpose does (and the nbstripout filter keeps outputs out of git);
# - no news or update checks from JupyterLab (they reach jupyter.org; the project works offline);
# - JupyterLab's kernels over Unix sockets (IPC), as papermill's in `make run`: over TCP every
#   kernel start prints ipykernel's "running over TCP without encryption" warning in the
#   terminal. (JupyterLab's terminal still shows tornado's warning, once, that the websocket
#   ping timeout exceeds the ping interval: lowering it to the interval makes jupyter_server
#   drop live connections, "WebSocket ping timeout after 30000 ms"; left as it is.)
set -euo pipefail
cd "$(dirname "$0")/.."
# one Python start (importing the runner takes seconds): the kernel registered, then the transport
# of JupyterLab's kernels (TCP where a socket path would be too long for Unix: a long home folder)
transport=$(.venv/bin/python -c "from mnist_lambda.pipeline import runner
runner.ensure_kernel()
print(runner.lab_kernel_transport())")
settings=.venv/share/jupyter/lab/settings
mkdir -p "$settings"
cat > "$settings/overrides.json" <<'JSON'
{
  "@jupyterlab/docmanager-extension:plugin": {
    "autosave": false
  },
  "@jupyterlab/apputils-extension:notification": {
    "fetchNews": "false",
    "checkForUpdates": false
  }
}
JSON
# jupyter_server reads only extension switches from jupyter_server_config.d/: this file it reads.
mkdir -p .venv/etc/jupyter
cat > .venv/etc/jupyter/jupyter_server_config.json <<JSON
{
  "KernelManager": {
    "transport": "$transport"
  }
}
JSON
echo "setup: kernel 'mnist-lambda (.venv)' registered in .venv/; JupyterLab autosave off, kernels over $transport"
