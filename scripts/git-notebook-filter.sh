#!/usr/bin/env bash
# Outputs never reach a commit: register nbstripout as this clone's git filter for notebooks
# (.gitattributes names it). git then compares and commits each notebook as nbstripout leaves
# it (no outputs, no execution counts, no kernel-filled metadata; cell ids and tags kept), so
# running a notebook in JupyterLab or VS Code and saving it does not show it as modified.
# `make setup` runs this; run it yourself in a clone made before it existed.
set -euo pipefail
cd "$(dirname "$0")/.."
git rev-parse --git-dir >/dev/null 2>&1 || { echo "notebook filter: not a git clone, skipped"; exit 0; }
strip="$PWD/.venv/bin/nbstripout --keep-id --keep-metadata-keys cell.metadata.tags"
git config filter.nbstripout.clean "$strip"
git config filter.nbstripout.smudge cat
git config filter.nbstripout.required true
git config diff.ipynb.textconv "$strip -t"
echo "setup: nbstripout is this clone's git filter for notebooks (outputs never reach a commit)"
