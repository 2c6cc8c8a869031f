# The two commands a new user needs: `make run` and `make test`. Both set up .venv/ first.
.PHONY: setup run test test-fast lint serve clean

setup: .venv/.installed

.venv/.installed: poetry.lock pyproject.toml tools/iac-scan/poetry.lock scripts/setup.sh \
		scripts/bootstrap-requirements.txt lambda_app/requirements.txt Dockerfile \
		src/mnist_lambda/tutorial/app/requirements.txt
	@./scripts/setup.sh

run: setup  ## the whole pipeline on the embedded local defaults
	.venv/bin/mnist-lambda run

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
