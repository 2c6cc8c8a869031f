"""The API front's SigV4 check, IAM evaluation, API keys and usage plan meters, without a
server: requests signed by botocore, exactly as a client signs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mnist_lambda.local_stack.api_front import sigv4
from mnist_lambda.local_stack.api_front.auth import (
    ApiKeyGate,
    IamGate,
    Principal,
    StaticIdentities,
    is_allowed,
    local_api_id,
    method_arn,
)
from mnist_lambda.local_stack.api_front.sigv4 import Headers, Refusal
from mnist_lambda.local_stack.api_front.throttle import QuotaMeter, period_start
from mnist_lambda.template.reader import StackSpec, Throttle, UsagePlan

REGION = "us-east-1"
URL = "http://127.0.0.1:8080/dev/predict"
BODY = b'{"bucket": "b", "key": "k.npy"}'
ALICE = Principal("AKIAALICE0000000000", "alice-secret", "arn:aws:iam::123456789012:user/alice")
BOB = Principal("AKIABOB00000000000000", "bob-secret", "arn:aws:iam::123456789012:user/bob")
ARN = method_arn(REGION, "MnistApi", "dev", "POST", "/predict")


def _allow(action: str, resource: str, effect: str = "Allow") -> str:
    statement = {"Effect": effect, "Action": action, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


IDENTITIES = StaticIdentities(
    {p.access_key_id: p for p in (ALICE, BOB)},
    {ALICE.arn: [_allow("execute-api:Invoke", ARN)], BOB.arn: [_allow("s3:GetObject", "*")]},
)


def signed(
    principal: Principal = ALICE,
    *,
    body: bytes = BODY,
    url: str = URL,
    region: str = REGION,
    service: str = "execute-api",
    secret: str | None = None,
    when: datetime | None = None,
    extra: dict[str, str] | None = None,
) -> list[tuple[str, str]]:
    """The headers botocore's signer sends for a POST of ``body`` to ``url``."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/json", "Host": "127.0.0.1:8080", **(extra or {})},
    )
    credentials = Credentials(principal.access_key_id, secret or principal.secret_access_key)
    signer = SigV4Auth(credentials, service, region)
    if when is None:
        signer.add_auth(request)
    else:  # botocore takes the time from its clock: sign at ``when`` as add_auth does
        request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        canonical = signer.canonical_request(request)
        string_to_sign = signer.string_to_sign(request, canonical)
        signature = signer.signature(string_to_sign, request)
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(request))}, "
            f"Signature={signature}"
        )
    return list(request.headers.items())


def check(headers: list[tuple[str, str]], body: bytes = BODY, url: str = URL, method="POST"):
    return IamGate(IDENTITIES, REGION).check(method, url, Headers(headers), body, ARN)


def refusal(headers: list[tuple[str, str]], **kw) -> Refusal:
    with pytest.raises(Refusal) as info:
        check(headers, **kw)
    return info.value


def test_a_request_signed_by_botocore_passes() -> None:
    assert check(signed()) == ALICE


def test_no_authorization_header_is_a_missing_token() -> None:
    r = refusal([("Host", "127.0.0.1:8080"), ("Content-Type", "application/json")])
    assert (r.status, r.message, r.error_type) == (
        403,
        "Missing Authentication Token",
        "MissingAuthenticationTokenException",
    )


@pytest.mark.parametrize(
    "change",
    [
        {"secret": "wrong"},
        {"region": "eu-west-1"},
        {"service": "lambda"},
        {"body": b'{"bucket": "b", "key": "other.npy"}'},
        {"url": "http://127.0.0.1:8080/dev/other"},
    ],
    ids=["secret", "region", "service", "body", "path"],
)
def test_a_wrong_signature_is_refused(change: dict) -> None:
    r = refusal(signed(**change))
    assert (r.status, r.message, r.error_type) == (
        403,
        sigv4.SIGNATURE_MISMATCH,
        "InvalidSignatureException",
    )


def test_a_changed_date_is_refused() -> None:
    headers = signed()
    stamp = next(v for k, v in headers if k == "X-Amz-Date")
    later = datetime.strptime(stamp, SIGV4_TIMESTAMP) + timedelta(seconds=1)
    headers = [(k, f"{later:{SIGV4_TIMESTAMP}}" if k == "X-Amz-Date" else v) for k, v in headers]
    assert refusal(headers).message == sigv4.SIGNATURE_MISMATCH


def test_a_body_hash_that_is_not_the_bodys_is_refused() -> None:
    # signed over x-amz-content-sha256: UNSIGNED-PAYLOAD, the body would be free to change
    headers = signed(extra={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert refusal(headers).error_type == "InvalidSignatureException"


def test_an_unknown_key_is_an_invalid_token() -> None:
    stranger = Principal("AKIASTRANGER00000000", "x", "arn:aws:iam::123456789012:user/x")
    r = refusal(signed(stranger))
    assert (r.status, r.message, r.error_type) == (
        403,
        "The security token included in the request is invalid.",
        "UnrecognizedClientException",
    )


def test_a_session_token_is_an_invalid_token() -> None:
    headers = signed(extra={"X-Amz-Security-Token": "FwoGZXIvYXdzE"})
    assert refusal(headers).error_type == "UnrecognizedClientException"


def test_a_principal_without_invoke_is_denied_with_a_capital_m() -> None:
    r = refusal(signed(BOB))
    assert (r.status, r.key, r.error_type) == (403, "Message", "AccessDeniedException")
    assert r.message == (
        f"User: {BOB.arn} is not authorized to perform: execute-api:Invoke on resource: {ARN}"
    )


@pytest.mark.parametrize("minutes", [-6, 6])
def test_clock_skew_over_five_minutes_is_refused(minutes: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    when = now + timedelta(minutes=minutes)
    headers = Headers(signed(when=when))
    auth = sigv4.parse_authorization(headers.get("authorization") or "", headers)
    with pytest.raises(Refusal) as info:
        sigv4.verify("POST", URL, headers, BODY, auth, secret=ALICE.secret_access_key,
                     region=REGION, now=now)  # fmt: skip
    fmt = SIGV4_TIMESTAMP
    if minutes < 0:
        expected = (
            f"Signature expired: {when:{fmt}} is now earlier than "
            f"{now - timedelta(minutes=5):{fmt}} ({now:{fmt}} - 5 min.)"
        )
    else:
        expected = (
            f"Signature not yet current: {when:{fmt}} is still later than "
            f"{now + timedelta(minutes=5):{fmt}} ({now:{fmt}} + 5 min.)"
        )
    assert (info.value.message, info.value.error_type) == (expected, "InvalidSignatureException")


def test_within_five_minutes_is_accepted() -> None:
    assert check(signed(when=datetime.now(UTC) - timedelta(minutes=4))) == ALICE


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "Bearer eyJhbGciOi",
            "Authorization header requires 'Credential' parameter. Authorization header requires "
            "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
            "Authorization=Bearer eyJhbGciOi",
        ),
        (
            "AWS4-HMAC-SHA256 Credential= AKIA/20260101/us-east-1/execute-api/aws4_request",
            "'AKIA/20260101/us-east-1/execute-api/aws4_request' not a valid key=value pair "
            "(missing equal-sign) in Authorization header: 'AWS4-HMAC-SHA256 Credential= "
            "AKIA/20260101/us-east-1/execute-api/aws4_request'.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/execute-api/aws4_request, "
            "SignedHeaders=content-type;x-amz-date, Signature=00",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=A/20260101/us-east-1/execute-api/aws4_request, "
            "SignedHeaders=host;x-custom;x-amz-date, Signature=00",
            "'x-custom' is named as a SignedHeader, but it does not exist in the HTTP request.",
        ),
    ],
    ids=["bearer", "no-equal-sign", "host-unsigned", "absent-header"],
)
def test_a_malformed_header_is_an_incomplete_signature(value: str, message: str) -> None:
    headers = [("Host", "h"), ("X-Amz-Date", "20260101T000000Z"), ("Authorization", value)]
    r = refusal(headers)
    assert (r.status, r.message, r.error_type) == (403, message, "IncompleteSignatureException")


def test_no_date_header_is_an_incomplete_signature() -> None:
    headers = [(k, v) for k, v in signed() if k != "X-Amz-Date"]
    r = refusal(headers)
    assert r.error_type == "IncompleteSignatureException"
    assert "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' " in (
        r.message
    )


def test_explicit_deny_wins_and_no_allow_is_a_denial() -> None:
    allow, deny = _allow("execute-api:Invoke", "*"), _allow("execute-api:*", ARN, "Deny")
    assert is_allowed([allow], "execute-api:Invoke", ARN)
    assert not is_allowed([allow, deny], "execute-api:Invoke", ARN)
    assert not is_allowed([_allow("s3:*", "*")], "execute-api:Invoke", ARN)
    assert not is_allowed([], "execute-api:Invoke", ARN)
    other_stage = method_arn(REGION, "MnistApi", "prod", "POST", "/predict")
    assert not is_allowed([_allow("execute-api:Invoke", ARN)], "execute-api:Invoke", other_stage)


def test_method_arn_and_api_id() -> None:
    api_id = local_api_id("MnistApi")
    assert len(api_id) == 10 and api_id.isalnum() and api_id == api_id.lower()
    assert f"arn:aws:execute-api:us-east-1:123456789012:{api_id}/dev/POST/predict" == ARN
    assert local_api_id("OtherApi") != api_id


def _spec(throttle: Throttle | None = None, limit: int | None = None) -> StackSpec:
    plan = UsagePlan("Plan", "MnistApi", "dev", throttle, limit, "DAY" if limit else None, ("K",))
    return StackSpec({}, (), usage_plans=(plan,))


def test_api_keys_forbidden_throttled_and_limited() -> None:
    gate = ApiKeyGate()
    gate.configure(_spec(Throttle(0.001, 2), limit=None))
    key = gate.keys["K"]
    assert len(key.value) == 40 and key.value.isalnum() and len(key.id) == 10

    def answer(value: str | None, stage: str = "dev") -> tuple[int, str, str] | None:
        try:
            gate.check(Headers([("x-api-key", value)] if value else []), "MnistApi", stage)
        except Refusal as r:
            return r.status, r.message, r.error_type
        return None

    forbidden = (403, "Forbidden", "ForbiddenException")
    assert answer(None) == forbidden
    assert answer(key.value + "x") == forbidden
    assert answer(key.value, stage="prod") == forbidden  # no usage plan of that stage
    assert answer(key.value) is None and answer(key.value) is None
    assert answer(key.value) == (429, "Too Many Requests", "TooManyRequestsException")
    gate.configure(_spec(limit=2))  # a redeploy: same key, its plan changed
    assert gate.keys["K"] == key
    assert answer(key.value) is None and answer(key.value) is None
    assert answer(key.value) == (429, "Limit Exceeded", "LimitExceededException")
    assert gate.describe()["api_keys"] == [{"id": key.id, "value": key.value, "name": "K"}]


def test_quota_periods_are_utc_days_weeks_from_sunday_and_months() -> None:
    wednesday = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    assert period_start("DAY", wednesday) == datetime(2026, 12, 2, tzinfo=UTC)
    assert period_start("WEEK", wednesday) == datetime(2026, 11, 29, tzinfo=UTC)  # Sunday
    assert period_start("WEEK", datetime(2026, 11, 29, 1, tzinfo=UTC)).day == 29
    assert period_start("MONTH", wednesday) == datetime(2026, 12, 1, tzinfo=UTC)
    meter = QuotaMeter(1, "DAY")
    assert meter.take(wednesday) and not meter.take(wednesday)
    assert meter.take(wednesday + timedelta(hours=9))  # the next UTC day: a new quota
    with pytest.raises(ValueError):
        QuotaMeter(1, "YEAR")


def test_the_allowed_callers_policy_names_every_iam_method() -> None:
    from mnist_lambda.local_stack.supervisor import LocalStack, StackConfig
    from mnist_lambda.template.reader import Route

    routes = (
        Route("POST", "/predict", "F", "dev", "MnistApi", "AWS_IAM"),
        Route("ANY", "/items/{id}", "F", "dev", "MnistApi", "AWS_IAM"),
        Route("GET", "/health", "F", "dev", "MnistApi", "NONE"),
    )
    arns = LocalStack(StackConfig(region="eu-west-1")).method_arns(StackSpec({}, routes))
    api = local_api_id("MnistApi")
    assert arns == [
        f"arn:aws:execute-api:eu-west-1:123456789012:{api}/dev/POST/predict",
        f"arn:aws:execute-api:eu-west-1:123456789012:{api}/dev/*/items/*",
    ]
    # a request on the parameterised path is one of them, for IAM's wildcard match
    request_arn = method_arn("eu-west-1", "MnistApi", "dev", "DELETE", "/items/7")
    assert is_allowed([_allow("execute-api:Invoke", arns[1])], "execute-api:Invoke", request_arn)
