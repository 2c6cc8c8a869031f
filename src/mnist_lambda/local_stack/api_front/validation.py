"""API Gateway's request body validation, from the API's OpenAPI definition."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from mnist_lambda.local_stack.api_front.event import media_type
from mnist_lambda.template.reader import StackSpec

_VALIDATOR = "x-amazon-apigateway-request-validator"


class BodyValidator:
    """The request body validation of one method, from its OpenAPI operation."""

    def __init__(self, definition: Mapping[str, Any], operation: Mapping[str, Any]) -> None:
        validators = definition.get(f"{_VALIDATOR}s") or {}
        name = operation.get(_VALIDATOR, definition.get(_VALIDATOR))
        settings = (validators.get(name) or {}) if name else {}
        self.enabled = bool(settings.get("validateRequestBody"))
        content = (operation.get("requestBody") or {}).get("content") or {}
        root = {k: v for k, v in definition.items() if k in ("components", "definitions")}
        self.schemas: dict[str, Any] = {}
        for media, entry in content.items():
            if isinstance(schema := (entry or {}).get("schema"), dict):
                self.schemas[media.lower()] = jsonschema.Draft4Validator({**root, **schema})

    def check(self, content_type: str | None, body: bytes) -> bool:
        """Whether API Gateway would let this body through to the integration."""
        validator = self.schemas.get(media_type(content_type) or "application/json")
        if not self.enabled or validator is None:
            return True  # no model for this content type: API Gateway does not validate
        try:
            return validator.is_valid(json.loads(body.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False


def body_validators(spec: StackSpec) -> dict[tuple[str, str, str], BodyValidator]:
    """(api, METHOD, path) -> validator, for every route whose API has an OpenAPI definition."""
    found: dict[tuple[str, str, str], BodyValidator] = {}
    for route in spec.routes:
        definition = spec.definitions.get(route.api) or {}
        item = (definition.get("paths") or {}).get(route.path) or {}
        method = "x-amazon-apigateway-any-method" if route.method == "ANY" else route.method
        operation = item.get(method.lower()) or item.get("x-amazon-apigateway-any-method")
        if isinstance(operation, dict):
            found[(route.api, route.method, route.path)] = BodyValidator(definition, operation)
    return found
