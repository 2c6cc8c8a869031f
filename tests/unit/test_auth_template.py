"""template.yaml (the authenticated deployment) is template_no_auth.yaml plus auth and nothing
else: generated from it, up to date, read with the right auth per route, and translated by SAM
with the auth on POST /predict and no unauthenticated method (lint: tests/component)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from offline_tools import load_cfn
from repo_paths import OPENAPI, ROOT, TEMPLATE

from mnist_lambda.template import AUTH_TEMPLATE_NAME, auth_parameters, template_path
from mnist_lambda.template.auth import OPENAPI_AUTH, stale
from mnist_lambda.template.reader import (
    AUTH_API_KEY,
    AUTH_IAM,
    AUTH_NONE,
    _Resolver,
    load_stack_spec,
    load_template_text,
    method_auth,
)

AUTH_TEMPLATE = ROOT / AUTH_TEMPLATE_NAME
AUTH_OPENAPI = ROOT / OPENAPI_AUTH
BUCKET = {"DataBucketName": "my-data"}

AUTH_PARAMETERS = {"AuthType", "UsagePlanRateLimit", "UsagePlanBurstLimit", "UsagePlanQuotaPerDay"}
AUTH_CONDITIONS = {"UseIamAuth", "UseApiKeyAuth"}
AUTH_RESOURCES = {"ApiKey", "UsagePlan", "UsagePlanKey"}
AUTH_OUTPUTS = {"PredictMethodArn", "ApiKeyId"}


def test_the_generated_files_are_up_to_date() -> None:
    assert stale() == [], "run: python -m mnist_lambda.template.auth"


def test_the_templates_differ_only_in_auth() -> None:
    plain, auth = load_cfn(TEMPLATE), load_cfn(AUTH_TEMPLATE)
    assert set(auth["Parameters"]) - set(plain["Parameters"]) == AUTH_PARAMETERS
    assert set(auth["Conditions"]) - set(plain["Conditions"]) == AUTH_CONDITIONS
    assert set(auth["Resources"]) - set(plain["Resources"]) == AUTH_RESOURCES
    assert set(auth["Outputs"]) - set(plain["Outputs"]) == AUTH_OUTPUTS
    stripped = copy.deepcopy(auth)
    for section, names in (
        ("Parameters", AUTH_PARAMETERS),
        ("Conditions", AUTH_CONDITIONS),
        ("Resources", AUTH_RESOURCES),
        ("Outputs", AUTH_OUTPUTS),
    ):
        for name in names:
            del stripped[section][name]
    include = stripped["Resources"]["MnistApi"]["Properties"]["DefinitionBody"]
    assert include["Fn::Transform"]["Parameters"]["Location"] == OPENAPI_AUTH
    include["Fn::Transform"]["Parameters"]["Location"] = str(OPENAPI.relative_to(ROOT))
    for descriptions in (stripped, plain):  # words only
        descriptions.pop("Description")
        descriptions["Outputs"]["PredictUrl"].pop("Description")
    assert stripped == plain
    # ... and the API definitions differ only in the security they declare
    source, with_auth = (yaml.safe_load(p.read_text()) for p in (OPENAPI, AUTH_OPENAPI))
    assert with_auth["paths"]["/predict"]["post"].pop("security")
    assert with_auth["components"].pop("securitySchemes")
    assert with_auth.pop("x-amazon-apigateway-api-key-source") == "HEADER"
    assert with_auth == source


@pytest.mark.parametrize(
    ("auth", "expected"), [("none", AUTH_NONE), ("iam", AUTH_IAM), ("api_key", AUTH_API_KEY)]
)
def test_each_auth_is_read_on_the_route(auth: str, expected: str) -> None:
    spec = load_stack_spec(template_path(auth), {**BUCKET, **auth_parameters(auth)})
    (route,) = spec.routes
    assert (route.method, route.path, route.auth) == ("POST", "/predict", expected)
    if auth == "api_key":
        (plan,) = spec.usage_plans
        assert (plan.api, plan.stage, plan.api_keys) == ("MnistApi", "dev", ("ApiKey",))
        assert plan.throttle is not None and plan.quota_limit and plan.quota_period == "DAY"
    else:
        assert spec.usage_plans == ()  # the plan and its key are conditional on API_KEY


def test_the_default_auth_is_iam_and_unknown_values_are_refused() -> None:
    assert load_cfn(AUTH_TEMPLATE)["Parameters"]["AuthType"]["Default"] == "AWS_IAM"
    with pytest.raises(ValueError, match="auth must be one of"):
        template_path("cognito")


def test_unknown_or_mixed_security_is_an_error() -> None:
    from mnist_lambda.template.reader import TemplateError

    doc: dict[str, Any] = {
        "paths": {"/p": {"post": {"security": [{"oidc": []}]}}},
        "components": {"securitySchemes": {"oidc": {"type": "openIdConnect"}}},
    }
    with pytest.raises(TemplateError, match="not supported"):
        method_auth(doc, "/p", "POST")
    doc["paths"]["/p"]["post"]["security"] = [{"missing": []}]
    with pytest.raises(TemplateError, match="not defined"):
        method_auth(doc, "/p", "POST")
    assert method_auth(doc, "/other", "POST") == AUTH_NONE


def _translated(auth_type: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """template.yaml as CloudFormation runs it: the AWS::Include snippet in place, conditions
    and parameters resolved, then through the SAM translator (offline)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    template = copy.deepcopy(load_cfn(AUTH_TEMPLATE))
    parameters = {**BUCKET, "AuthType": auth_type}
    resolver = _Resolver(template, parameters, "us-east-1")
    definition = load_template_text(AUTH_OPENAPI)
    security = definition["paths"]["/predict"]["post"]["security"]
    definition["paths"]["/predict"]["post"]["security"] = resolver.resolve(security)
    template["Resources"]["MnistApi"]["Properties"]["DefinitionBody"] = definition
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mnist-predict:1"
    template["Resources"]["PredictFunction"]["Properties"]["ImageUri"] = image
    for logical_id, resource in list(template["Resources"].items()):
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            del template["Resources"][logical_id]
    return Translator(managed_policy_map={}, sam_parser=Parser()).translate(
        template, parameter_values=parameters
    )


@pytest.mark.parametrize(("auth_type", "scheme"), [("AWS_IAM", "sigv4"), ("API_KEY", "api_key")])
def test_sam_translation_has_the_auth_on_every_method(
    monkeypatch: pytest.MonkeyPatch, auth_type: str, scheme: str
) -> None:
    translated = _translated(auth_type, monkeypatch)
    resources = translated["Resources"]
    (api,) = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    body = api["Properties"]["Body"]
    methods = [
        (path, method, operation)
        for path, item in body["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
    ]
    assert [(p, m) for p, m, _ in methods] == [("/predict", "post")]  # no other method at all
    for _, _, operation in methods:
        assert operation["security"] == [{scheme: []}]
    schemes = body["components"]["securitySchemes"]
    if auth_type == "AWS_IAM":
        assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    types = {r["Type"] for r in resources.values()}
    plan_types = {"AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlan"}
    assert plan_types <= types if auth_type == "API_KEY" else not plan_types & types
    # the key's value is API Gateway's, never the template's nor an output's
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::ApiKey":
            assert "Value" not in resource["Properties"]
    outputs = translated["Outputs"]
    assert outputs["ApiKeyId"]["Value"] == {"Ref": "ApiKey"}
