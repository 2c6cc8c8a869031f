"""openapi/predict.yaml: a valid OpenAPI 3 document, the one the template's API uses, with the
handler's own limits, every status a caller can see, and the local front applying its request
validation the way API Gateway does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from offline_tools import load_cfn
from openapi_contract import check_documented, load_openapi
from openapi_spec_validator import validate
from repo_paths import EVENTS_DIR, OPENAPI, TEMPLATE

from mnist_lambda.aws_limits import API_GATEWAY_PAYLOAD_BYTES as REQUEST_LIMIT
from mnist_lambda.local_stack.api_front.validation import BodyValidator, body_validators
from mnist_lambda.template.reader import TemplateError, api_definition, load_stack_spec
from mnist_serving import errors, request
from mnist_serving.responses import error_response


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_openapi()


@pytest.fixture(scope="module")
def operation(spec) -> dict[str, Any]:
    return spec["paths"]["/predict"]["post"]


@pytest.fixture(scope="module")
def request_schema(spec) -> dict[str, Any]:
    return spec["components"]["schemas"]["PredictRequest"]


def test_is_a_valid_openapi_3_document(spec) -> None:
    assert spec["openapi"].startswith("3.0")
    validate(spec)


def test_the_template_api_uses_this_file_and_keeps_the_event(spec) -> None:
    template = load_cfn(TEMPLATE)
    api = template["Resources"]["MnistApi"]["Properties"]
    location = api["DefinitionBody"]["Fn::Transform"]["Parameters"]["Location"]
    assert (TEMPLATE.parent / location).resolve() == OPENAPI
    stack = load_stack_spec(TEMPLATE)
    assert stack.definitions["MnistApi"] == yaml.safe_load(OPENAPI.read_text())
    for route in stack.routes:  # every Events: Api route is in the definition
        assert route.method.lower() in spec["paths"][route.path]
    integration = spec["paths"]["/predict"]["post"]["x-amazon-apigateway-integration"]
    assert integration["type"] == "aws_proxy" and integration["httpMethod"] == "POST"
    # the alias AutoPublishAlias makes: SnapStart snapshots published versions only
    assert "${PredictFunction.Alias}" in integration["uri"]["Fn::Sub"]


def test_body_validation_is_on(spec, operation) -> None:
    name = operation["x-amazon-apigateway-request-validator"]
    assert spec["x-amazon-apigateway-request-validators"][name] == {
        "validateRequestBody": True,
        "validateRequestParameters": False,
    }
    assert operation["requestBody"]["required"] is True
    assert list(operation["requestBody"]["content"]) == ["application/json"]


def test_request_schema_has_the_handlers_limits(request_schema) -> None:
    assert request_schema["type"] == "object"
    assert request_schema["additionalProperties"] is False
    optional = {"output_key", "return"}
    assert set(request_schema["properties"]) >= set(request.FIELDS)
    assert set(request_schema["properties"]) - set(request.FIELDS) <= optional
    required = {n for n in request.FIELDS if n not in request._OPTIONAL_FIELDS}
    assert set(request_schema["required"]) == required == {"bucket", "key"}
    bucket = request_schema["properties"]["bucket"]
    assert bucket["pattern"] == f"^{request._BUCKET_RE.pattern}$"
    assert (bucket["minLength"], bucket["maxLength"]) == (3, 63)
    key = request_schema["properties"]["key"]
    assert (key["minLength"], key["maxLength"]) == (1, request.MAX_KEY_BYTES)
    assert request_schema["properties"]["output_key"] == key | {
        "description": request_schema["properties"]["output_key"]["description"]
    }
    returned = request_schema["properties"]["return"]
    assert returned["type"] == "string" and tuple(returned["enum"]) == request.RETURN_VALUES


def test_every_status_a_caller_can_see_is_documented(operation) -> None:
    documented = {int(s) for s in operation["responses"]}
    function_statuses = {cls.status for cls in _app_errors()}
    gateway_statuses = {400, 403, 413, 429, 500, 502, 504}
    assert function_statuses | gateway_statuses | {200} == documented
    for status, response in operation["responses"].items():
        assert response["description"]
        assert set(response["content"]) == {"application/json"}, status


def _app_errors() -> list[type[errors.AppError]]:
    found = [errors.AppError]
    for cls in found:
        found += [c for c in cls.__subclasses__() if c not in found]
    return found


@pytest.mark.parametrize("cls", _app_errors(), ids=lambda c: c.__name__)
def test_function_error_bodies_match_the_schema(cls) -> None:
    response = error_response(cls(), "req-1")
    check_documented(response["statusCode"], json.loads(response["body"]))


@pytest.mark.parametrize(
    ("status", "message"),
    [(400, "Invalid request body"), (403, "Missing Authentication Token"),
     (413, "Request Too Long"), (429, "Too Many Requests"), (500, "Internal server error"),
     (502, "Internal server error"), (504, "Endpoint request timed out")],
)  # fmt: skip
def test_api_gateway_error_bodies_match_the_schema(status: int, message: str) -> None:
    check_documented(status, {"message": message})


def test_predictions_schema(spec) -> None:
    validator = jsonschema.Draft4Validator(spec["components"]["schemas"]["Predictions"])
    assert validator.is_valid([0, 9, 3])
    assert not validator.is_valid([10]) and not validator.is_valid([-1])
    assert not validator.is_valid(["1"]) and not validator.is_valid({"0": 1})


def test_the_200_answer_is_labels_probabilities_or_a_location() -> None:
    labels = [7, 2, 1]
    probabilities = {
        "labels": [7, 2],
        "probabilities": [[0, 0, 0, 0, 0, 0, 0, 1.0, 0, 0], [0.1, 0.0, 0.9] + [0.0] * 7],
        "classes": list(range(10)),
    }
    location = {"bucket": "b", "key": "predictions/x.npz", "rows": 3, "format": "npz"}
    for body in (labels, probabilities, location):
        check_documented(200, body)
    for bad in (
        {**probabilities, "extra": 1},
        {k: v for k, v in probabilities.items() if k != "classes"},
        {**probabilities, "probabilities": [[1.5]]},
        {**probabilities, "probabilities": [["0.5"]]},
        {**probabilities, "classes": [1, 1]},
        {**location, "format": "pkl"},
        {**location, "rows": 0},
        {"labels": [1]},
    ):
        with pytest.raises(AssertionError, match="does not match its schema"):
            check_documented(200, bad)


def test_the_handlers_probabilities_answer_matches_the_schema() -> None:
    import numpy as np

    from mnist_serving.predictions import Predictions

    p = np.array([[0.25, 0.75] + [0.0] * 8, [1 / 3, 1 / 3, 1 / 3] + [0.0] * 7], np.float32)
    answer = Predictions.from_probabilities(p, np.arange(10)).body()
    check_documented(200, answer)
    assert answer["labels"] == [1, 0]  # a tie goes to the first column
    assert answer["probabilities"][1][:3] == [0.3333] * 3 and answer["classes"] == [*range(10)]
    json_row = json.dumps(answer["probabilities"][0], separators=(",", ":"))
    assert json_row == "[0.25,0.75,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0]"


def test_what_the_handler_accepts_the_schema_accepts(request_schema) -> None:
    """Every recorded event body: if the handler takes it, API Gateway lets it through."""
    validator = jsonschema.Draft4Validator(request_schema)
    events = sorted(EVENTS_DIR.glob("*.json"))
    assert events
    for path in events:
        event = json.loads(path.read_text())
        try:
            request.parse_event(event)
        except errors.AppError:
            continue
        body = event["body"]
        if event.get("isBase64Encoded"):
            import base64

            body = base64.b64decode(body)
        assert validator.is_valid(json.loads(body)), path.name


# --- the local front applies the same validation ------------------------------------------


@pytest.fixture(scope="module")
def validator() -> BodyValidator:
    found = body_validators(load_stack_spec(TEMPLATE))
    assert set(found) == {("MnistApi", "POST", "/predict")}
    (only,) = found.values()
    assert only.enabled
    return only


GOOD = b'{"bucket": "my-bucket", "key": "inputs/x.npy"}'


@pytest.mark.parametrize(
    ("content_type", "body", "passes"),
    [
        ("application/json", GOOD, True),
        (None, GOOD, True),
        ("application/json; charset=utf-8", GOOD, True),
        ("Application/JSON", b'{"bucket": "my-bucket"}', False),
        (None, b"", False),
        (None, b"[]", False),
        (None, b"not json", False),
        (None, b'{"bucket": "my-bucket", "key": "k", "x": 1}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "output_key": "out/p.json"}', True),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": "probabilities"}', True),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": "labels"}', True),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": "Probabilities"}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": "proba"}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": ""}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": 1}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": null}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": true}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": ["probabilities"]}', False),
        (None, b'{"bucket": "my-bucket", "key": "k", "return": "' + b"p" * 100_000 + b'"}', False),
        (None, b'{"bucket": "my-bucket", "key": "k\\n"}', False),
        (None, b'{"bucket": "my-bucket\\n", "key": "k"}', False),
        (None, b'{"bucket": "my-bucket", "key": "/k"}', False),
        (None, b'{"bucket": "my-bucket", "key": "\xff"}', False),
        (None, b"[" * 50_000 + b"]" * 50_000, False),
        # no schema for these types: API Gateway lets them through (the function answers 415)
        ("text/plain", b"not json", True),
        ("application/x-www-form-urlencoded", b"a=b", True),
    ],
)
def test_front_validation_follows_api_gateway(validator, content_type, body, passes) -> None:
    assert validator.check(content_type, body) is passes


def test_front_reads_definitions_the_ways_sam_allows(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(OPENAPI.read_text())
    include = {"Fn::Transform": {"Name": "AWS::Include", "Parameters": {"Location": "api.yaml"}}}
    assert api_definition(include, None, tmp_path)["paths"]
    assert api_definition(None, "api.yaml", tmp_path)["paths"]
    inline = {"openapi": "3.0.1", "paths": {}}
    assert api_definition(inline, None, tmp_path) is inline
    assert api_definition(None, None, tmp_path) is None
    with pytest.raises(TemplateError, match="not a local file"):
        api_definition(None, "s3://bucket/api.yaml", tmp_path)
    with pytest.raises(TemplateError, match="cannot be read"):
        api_definition(None, "missing.yaml", tmp_path)
    assert REQUEST_LIMIT == 10 * 1024 * 1024
