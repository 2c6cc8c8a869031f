"""The SAM template, the one source of what the function is configured with: where it is and
the names the project uses from it. :mod:`.reader` reads it as ``sam local`` does (functions,
settings, routes); :mod:`.edit` changes one parameter's default; :mod:`.auth` generates the
authenticated deployment from the tutorial's."""

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
AUTH_TEMPLATE_NAME = "template.yaml"
"""The authenticated deployment (generated from :data:`TEMPLATE_NAME` by :mod:`.auth`)."""
AUTH_PARAMETER = "AuthType"
""":data:`AUTH_TEMPLATE_NAME`'s parameter that chooses the method's auth."""
AUTH_TYPES = {"none": "NONE", "iam": "AWS_IAM", "api_key": "API_KEY"}
"""The pipeline's ``auth`` values and API Gateway's name of each (``none``: the tutorial's)."""


def template_path(auth: str = "none") -> Path:
    """The project's template for ``auth`` (a key of :data:`AUTH_TYPES`)."""
    if auth not in AUTH_TYPES:
        raise ValueError(f"auth must be one of {', '.join(AUTH_TYPES)}, not {auth!r}")
    return project_root() / (TEMPLATE_NAME if auth == "none" else AUTH_TEMPLATE_NAME)


def auth_parameters(auth: str) -> dict[str, str]:
    """The template parameters that choose ``auth`` in :func:`template_path` (``auth``)'s file."""
    template_path(auth)  # checks the value
    return {} if auth == "none" else {AUTH_PARAMETER: AUTH_TYPES[auth]}
