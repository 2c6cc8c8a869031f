"""The SAM template, the one source of what the function is configured with: where it is and
the names the project uses from it. :mod:`.reader` reads it as ``sam local`` does (functions,
settings, routes); :mod:`.edit` changes one parameter's default."""

from __future__ import annotations

from pathlib import Path

from mnist_lambda.paths import project_root

TEMPLATE_NAME = "template_no_auth.yaml"
"""The tutorial's template (no authorizer), at the project root."""
FUNCTION_ID = "PredictFunction"
"""The function's logical id."""
BUCKET_PARAMETER = "DataBucketName"
"""The parameter that names the one data bucket."""
MEMORY_PARAMETER = "MemorySize"
"""The parameter that sets the function's memory (and so its CPU share)."""


def template_path() -> Path:
    """The project's template."""
    return project_root() / TEMPLATE_NAME
