#!/usr/bin/env bash
# Outputs never reach a commit: register nbstripout as this clone's git filter for notebooks
# (.gitattributes names it). git then compares and commits each notebook as nbstripout leaves
# it (no outputs, no execution counts, no kernel-filled metadata; cell ids and tags kept), so
# running a notebook in JupyterLab or VS Code and saving it does not show it as modified.
# Kernel-filled metadata: nbstripout's defaults (widget state, execution times...) and, from
# EXTRA_KEYS, what a kernel or editor writes on opening: language_info (the kernel's Python
# version...), VS Code's interpreter and cell language. The notebook keeps its kernelspec
# (`mnist-lambda`, the project's kernel). EXTRA_KEYS is also git config
# filter.nbstripout.extrakeys, which nbstripout reads when run by hand or by the lint hook.
# `make setup` runs this; run it yourself in a clone made before it existed.
set -euo pipefail
cd "$(dirname "$0")/.."
git rev-parse --git-dir >/dev/null 2>&1 || { echo "notebook filter: not a git clone, skipped"; exit 0; }
EXTRA_KEYS="metadata.language_info metadata.vscode cell.metadata.vscode"
strip="$PWD/.venv/bin/nbstripout --keep-id --keep-metadata-keys cell.metadata.tags"
git config filter.nbstripout.extrakeys "$EXTRA_KEYS"
git config filter.nbstripout.clean "$strip"
git config filter.nbstripout.smudge cat
git config filter.nbstripout.required true
git config diff.ipynb.textconv "$strip -t"
echo "setup: nbstripout is this clone's git filter for notebooks (outputs never reach a commit)"
