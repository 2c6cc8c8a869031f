# The commands a new user needs: `make run`, `make lab` and `make test`. Each sets up .venv/ first.
.PHONY: setup run lab test test-fast lint serve clean

setup: .venv/.installed

.venv/.installed: poetry.lock pyproject.toml tools/iac-scan/poetry.lock scripts/setup.sh \
		scripts/bootstrap-requirements.txt lambda_app/requirements.txt Dockerfile \
		src/mnist_lambda/tutorial/app/requirements.txt
	@./scripts/setup.sh

run: setup  ## the whole pipeline on the embedded local defaults
	.venv/bin/mnist-lambda run

LAB_DIR ?= $(CURDIR)
lab: setup  ## JupyterLab from .venv/ on notebooks/, with the project's kernel (Ctrl-C stops it)
	@bash scripts/jupyter-setup.sh
	.venv/bin/jupyter lab --ServerApp.root_dir="$(LAB_DIR)" --LabApp.default_url=/lab/tree/notebooks \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: setup  ## every test: unit, component and end to end (Docker ones too where an engine runs)
	.venv/bin/pytest

test-fast: setup  ## the unit tests only, for the edit loop (well under a minute)
	.venv/bin/pytest tests/unit -q

lint: setup  ## every hook of .pre-commit-config.yaml over every file (offline, check only)
	.venv/bin/python scripts/lint.py

serve: setup  ## the local serverless stack (S3 + Lambda emulator + API Gateway front)
	.venv/bin/mnist-lambda serve

clean:
	rm -rf .venv .tools .lambda
