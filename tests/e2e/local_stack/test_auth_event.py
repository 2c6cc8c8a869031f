"""What the function sees of an authenticated caller: the echo function behind an in-process
front whose methods are ``AWS_IAM`` (POST /predict) and ``API_KEY`` (GET /items/{id})."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from echo_app import write_echo_app

from mnist_lambda.client import EndpointAuth
from mnist_lambda.local_stack.api_front.auth import Principal, StaticIdentities, method_arn
from mnist_lambda.local_stack.api_front.server import ApiFront
from mnist_lambda.local_stack.environment import function_environment
from mnist_lambda.local_stack.lambda_emulator import FunctionPool
from mnist_lambda.template.reader import AUTH_API_KEY, AUTH_IAM, load_stack_spec

pytestmark = pytest.mark.timeout(120)

REGION = "us-east-1"
CALLER = Principal(
    "AKIAECHOCALLER000000", "echo-secret", "arn:aws:iam::123456789012:user/echo", "AIDAECHO"
)
DEFINITION = """\
      DefinitionBody:
        openapi: "3.0.1"
        info: {title: echo, version: "1"}
        paths:
          /predict:
            post:
              security: [{sigv4: []}]
          /items/{id}:
            get:
              security: [{key: []}]
        components:
          securitySchemes:
            sigv4: {type: apiKey, name: Authorization, in: header,
                    x-amazon-apigateway-authtype: awsSigv4}
            key: {type: apiKey, name: x-api-key, in: header}
  EchoKey:
    Type: AWS::ApiGateway::ApiKey
    Properties: {Enabled: true}
  EchoPlan:
    Type: AWS::ApiGateway::UsagePlan
    Properties:
      ApiStages: [{ApiId: !Ref EchoApi, Stage: !Ref StageName}]
  EchoPlanKey:
    Type: AWS::ApiGateway::UsagePlanKey
    Properties: {KeyId: !Ref EchoKey, KeyType: API_KEY, UsagePlanId: !Ref EchoPlan}
"""


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiFront]:
    app_dir, template = write_echo_app(tmp_path_factory.mktemp("echo-auth"))
    stage = "      StageName: !Ref StageName\n"
    template.write_text(template.read_text().replace(stage, stage + DEFINITION))
    spec = load_stack_spec(template)
    assert {r.path: r.auth for r in spec.routes} == {
        "/predict": AUTH_IAM,
        "/items/{id}": AUTH_API_KEY,
    }
    arn = method_arn(REGION, "EchoApi", "dev", "POST", "/predict")
    policy = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": arn}]}
    identities = StaticIdentities(
        {CALLER.access_key_id: CALLER}, {CALLER.arn: [json.dumps(policy)]}
    )
    fspec = spec.functions["EchoFunction"]
    pool = FunctionPool(fspec, function_environment(fspec, {}), app_dir, 1)
    pool.start()
    front = ApiFront(spec, {"EchoFunction": pool}, identities=identities, region=REGION)
    front.start()
    try:
        yield front
    finally:
        front.stop()
        pool.close()


def test_a_signed_callers_identity_reaches_the_function(front: ApiFront) -> None:
    keys = {"aws_access_key_id": CALLER.access_key_id, "aws_secret_access_key": "echo-secret"}
    resp = requests.post(
        front.url + "/dev/predict?x=1",
        json={"hello": "world"},
        auth=EndpointAuth.iam(REGION, keys),
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    context = resp.json()["event"]["requestContext"]
    identity = context["identity"]
    assert identity["userArn"] == CALLER.arn
    assert identity["accessKey"] == CALLER.access_key_id
    assert identity["accountId"] == "123456789012"
    assert identity["user"] == identity["caller"] == "AIDAECHO"
    # the event's apiId is the one in the method ARN the policy names
    assert (
        method_arn(REGION, "EchoApi", "dev", "POST", "/predict")
        .split(":")[5]
        .startswith(context["apiId"] + "/")
    )
    unsigned = requests.post(front.url + "/dev/predict", json={}, timeout=60)
    assert (unsigned.status_code, unsigned.content) == (
        403,
        b'{"message":"Missing Authentication Token"}',
    )


def test_an_api_keys_id_reaches_the_function(front: ApiFront) -> None:
    key = front.api_keys.keys["EchoKey"]
    resp = requests.get(front.url + "/dev/items/7", headers={"x-api-key": key.value}, timeout=60)
    assert resp.status_code == 200, resp.text
    identity = resp.json()["event"]["requestContext"]["identity"]
    assert (identity["apiKey"], identity["apiKeyId"]) == (key.value, key.id)
    # without the key
    assert requests.get(front.url + "/dev/items/7", timeout=60).status_code == 403


def test_a_path_parameter_method_arn(front: ApiFront) -> None:
    route = next(r for r in front.spec.routes if r.path == "/items/{id}")
    assert front.method_arn(route, "GET", "/items/7").endswith("/dev/GET/items/7")
