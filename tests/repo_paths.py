"""Where the tests find the project's files (tests/ may hold sub-folders; these do not move)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""
EVENTS_DIR = ROOT / "events"
LAMBDA_APP = ROOT / "lambda_app"
OPENAPI = ROOT / "openapi" / "predict.yaml"
TEMPLATE = ROOT / "template_no_auth.yaml"
AUTH_TEMPLATE = ROOT / "template.yaml"
"""The authenticated deployment, generated from TEMPLATE (mnist_lambda.template.auth)."""
AUTH_OPENAPI = ROOT / "openapi" / "predict_auth.yaml"
TEMPLATES = (TEMPLATE, AUTH_TEMPLATE)
