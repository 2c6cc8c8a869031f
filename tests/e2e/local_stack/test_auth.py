"""The local stack enforces template.yaml's auth as API Gateway does, over HTTP through the real
front: every refusal byte for byte (status, body, ``x-amzn-ErrorType``) with the function not
invoked (the stack log shows no ``START RequestId`` for it), the allowed caller's 200, and no
mutation of a validly signed request accepted (hypothesis).

Requests go out through :mod:`http.client` with exactly the headers given (repeats too), signed
by botocore's :class:`~botocore.auth.SigV4Auth` as any AWS SDK signs them.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polling import wait_until
from real_stack import PREFIX, npy_bytes, real_stack
from repo_paths import AUTH_TEMPLATE

from mnist_lambda import local_stack

pytestmark = pytest.mark.timeout(600)

KEY = PREFIX + "digits.npy"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:5], dtype=np.uint8)


def _start(
    tmp: Path, model: Path, rows: np.ndarray, *args: str
) -> Iterator[local_stack.StackInfo]:
    with real_stack(tmp, model, template=AUTH_TEMPLATE, extra_args=args) as info:
        local_stack.s3_client(info).put_object(Bucket=info.bucket, Key=KEY, Body=npy_bytes(rows))
        yield info


@pytest.fixture(scope="module")
def iam_stack(tmp_path_factory, small_model_path, rows) -> Iterator[local_stack.StackInfo]:
    yield from _start(
        tmp_path_factory.mktemp("iam"), small_model_path, rows, "-P", "AuthType=AWS_IAM"
    )


@pytest.fixture(scope="module")
def key_stack(tmp_path_factory, small_model_path, rows) -> Iterator[local_stack.StackInfo]:
    plan = [
        "-P",
        "UsagePlanRateLimit=1",
        "-P",
        "UsagePlanBurstLimit=2",
        "-P",
        "UsagePlanQuotaPerDay=4",
    ]
    yield from _start(
        tmp_path_factory.mktemp("key"), small_model_path, rows, "-P", "AuthType=API_KEY", *plan
    )


# --- requests exactly as given --------------------------------------------------------------


class Answer:
    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self.status, self.body = resp.status, resp.read()
        self.headers = resp.headers
        self.request_id = resp.headers.get("x-amzn-RequestId", "")

    def json(self) -> object:
        return json.loads(self.body)


def send(
    info: local_stack.StackInfo,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    method: str = "POST",
    path: str | None = None,
) -> Answer:
    """One request with exactly ``headers`` (no Host, User-Agent or Accept-Encoding added)."""
    url = urlsplit(info.predict_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.putrequest(method, path or url.path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def body_for(info: local_stack.StackInfo) -> bytes:
    return json.dumps({"bucket": info.bucket, "key": KEY}).encode()


def sign(
    info: local_stack.StackInfo,
    keys: dict[str, str],
    body: bytes,
    *,
    region: str | None = None,
    service: str = "execute-api",
    secret: str | None = None,
    when: datetime | None = None,
    path: str | None = None,
) -> list[tuple[str, str]]:
    """The headers botocore's SigV4 signer gives a POST of ``body`` to the predict URL."""
    url = urlsplit(info.predict_url)
    request = AWSRequest(
        method="POST",
        url=f"http://{url.netloc}{path or url.path}",
        data=body,
        headers={"Content-Type": "application/json", "Host": url.netloc},
    )
    credentials = Credentials(keys["aws_access_key_id"], secret or keys["aws_secret_access_key"])
    signer = SigV4Auth(credentials, service, region or info.region)
    if when is None:
        signer.add_auth(request)
    else:  # add_auth reads botocore's clock: the same steps at another time
        request.context["timestamp"] = f"{when:{SIGV4_TIMESTAMP}}"
        request.headers["X-Amz-Date"] = request.context["timestamp"]
        canonical = signer.canonical_request(request)
        signature = signer.signature(signer.string_to_sign(request, canonical), request)
        signed_headers = signer.signed_headers(signer.headers_to_sign(request))
        request.headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
    return list(request.headers.items())


# --- what the stack log says ----------------------------------------------------------------


def log_text(info: local_stack.StackInfo) -> str:
    assert info.log_file is not None
    return info.log_file.read_text(errors="replace")


def invocations(info: local_stack.StackInfo) -> int:
    return log_text(info).count("START RequestId:")


def assert_refused(
    info: local_stack.StackInfo,
    answer: Answer,
    status: int,
    body: bytes,
    error_type: str,
    *,
    before: int,
) -> None:
    """API Gateway's exact answer, logged as a refusal, and no invocation of the function."""
    assert (answer.status, answer.body) == (status, body), answer.body
    assert answer.headers["x-amzn-ErrorType"] == error_type
    assert answer.headers["Content-Type"] == "application/json"
    assert not any(h.lower().startswith("x-lambda-emulator") for h in answer.headers)
    line = f"{answer.request_id}: refused"
    assert wait_until(lambda: line in log_text(info), 5), f"no refusal logged for {line}"
    assert invocations(info) == before


def gateway(message: str, key: str = "message") -> bytes:
    return json.dumps({key: message}, separators=(",", ":")).encode()


# --- AWS_IAM ----------------------------------------------------------------------------------


def test_ready_json_gives_the_callers_and_method_arn(iam_stack: local_stack.StackInfo) -> None:
    auth = iam_stack.auth
    assert auth["type"] == "AWS_IAM" and auth["region"] == iam_stack.region
    assert set(auth["callers"]) == {"allowed", "denied"}
    assert auth["callers"]["allowed"]["arn"] == "arn:aws:iam::123456789012:user/invoker"
    assert auth["callers"]["denied"]["arn"] == "arn:aws:iam::123456789012:user/denied"
    [arn] = auth["method_arns"]
    assert re.fullmatch(
        r"arn:aws:execute-api:us-east-1:123456789012:[a-z0-9]{10}/dev/POST/predict", arn
    )


def test_the_allowed_caller_gets_its_labels(iam_stack, expected: list[int]) -> None:
    before = invocations(iam_stack)
    body = body_for(iam_stack)
    answer = send(iam_stack, sign(iam_stack, iam_stack.auth["callers"]["allowed"], body), body)
    assert answer.status == 200, answer.body
    assert answer.json() == expected
    assert wait_until(lambda: invocations(iam_stack) == before + 1, 5)
    # the project's own client signs the same way (local_stack.endpoint_auth)
    resp = requests.post(
        iam_stack.predict_url,
        json={"bucket": iam_stack.bucket, "key": KEY},
        auth=local_stack.endpoint_auth(iam_stack),
        timeout=60,
    )
    assert resp.status_code == 200


def test_no_signature_is_a_missing_token(iam_stack) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    answer = send(iam_stack, [("Host", "x"), ("Content-Type", "application/json")], body)
    assert_refused(
        iam_stack,
        answer,
        403,
        b'{"message":"Missing Authentication Token"}',
        "MissingAuthenticationTokenException",
        before=before,
    )


@pytest.mark.parametrize("what", ["secret", "body", "date", "region", "service", "path"])
def test_a_wrong_signature_is_refused(iam_stack, what: str) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    keys = iam_stack.auth["callers"]["allowed"]
    sent = body
    if what == "secret":
        headers = sign(iam_stack, keys, body, secret=keys["aws_secret_access_key"][::-1])
    elif what == "body":
        headers, sent = sign(iam_stack, keys, body), body.replace(b"digits", b"digitz")
    elif what == "date":  # signed now, sent with the date one second later
        headers = sign(iam_stack, keys, body)
        stamp = datetime.strptime(dict(headers)["X-Amz-Date"], SIGV4_TIMESTAMP)
        later = f"{stamp + timedelta(seconds=1):{SIGV4_TIMESTAMP}}"
        headers = [(k, later if k == "X-Amz-Date" else v) for k, v in headers]
    elif what == "region":
        headers = sign(iam_stack, keys, body, region="eu-west-1")
    elif what == "service":
        headers = sign(iam_stack, keys, body, service="lambda")
    else:  # signed for the stage-less route, sent to the stage's
        headers = sign(iam_stack, keys, body, path="/predict")
    answer = send(iam_stack, headers, sent)
    assert_refused(
        iam_stack, answer, 403, gateway(MISMATCH), "InvalidSignatureException", before=before
    )


def test_an_unknown_access_key_is_an_invalid_token(iam_stack) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    stranger = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "x" * 40}
    answer = send(iam_stack, sign(iam_stack, stranger, body), body)
    assert_refused(
        iam_stack,
        answer,
        403,
        gateway(INVALID_TOKEN),
        "UnrecognizedClientException",
        before=before,
    )
    # the function's own key is a real IAM user of the stack, but not an API caller
    answer = send(iam_stack, sign(iam_stack, dict(iam_stack.function_credentials), body), body)
    assert (answer.status, answer.body) == (403, gateway(INVALID_TOKEN))


def test_a_caller_without_invoke_is_denied(iam_stack) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    denied = iam_stack.auth["callers"]["denied"]
    answer = send(iam_stack, sign(iam_stack, denied, body), body)
    [arn] = iam_stack.auth["method_arns"]
    message = (
        f"User: {denied['arn']} is not authorized to perform: execute-api:Invoke on resource: "
        f"{arn}"
    )
    assert_refused(
        iam_stack,
        answer,
        403,
        gateway(message, key="Message"),
        "AccessDeniedException",
        before=before,
    )


@pytest.mark.parametrize("minutes", [-6, 6])
def test_clock_skew_over_five_minutes_is_refused(iam_stack, minutes: int) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    keys = iam_stack.auth["callers"]["allowed"]
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes)
    answer = send(iam_stack, sign(iam_stack, keys, body, when=when), body)
    stamp = f"{when:{SIGV4_TIMESTAMP}}"
    when_re, stamp_re = r"(\d{8}T\d{6}Z)", re.escape(stamp)
    if minutes < 0:
        pattern = (
            rf"Signature expired: {stamp_re} is now earlier than {when_re} "
            rf"\({when_re} - 5 min\.\)"
        )
    else:
        pattern = (
            rf"Signature not yet current: {stamp_re} is still later than {when_re} "
            rf"\({when_re} \+ 5 min\.\)"
        )
    message = answer.json()["message"]  # type: ignore[index]
    found = re.fullmatch(pattern, message)
    assert found, message
    limit, now = (datetime.strptime(g, SIGV4_TIMESTAMP) for g in found.groups())
    assert limit - now == timedelta(minutes=5 if minutes > 0 else -5)
    assert_refused(
        iam_stack, answer, 403, gateway(message), "InvalidSignatureException", before=before
    )
    # 4 minutes off is within API Gateway's allowance
    when = datetime.now(UTC) + timedelta(minutes=4 if minutes > 0 else -4)
    assert send(iam_stack, sign(iam_stack, keys, body, when=when), body).status == 200


def test_a_malformed_authorization_header_is_an_incomplete_signature(iam_stack) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    headers = [
        ("Host", "x"),
        ("Authorization", "Bearer abc"),
        ("Content-Type", "application/json"),
    ]
    message = (
        "Authorization header requires 'Credential' parameter. Authorization header requires "
        "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        "Authorization=Bearer abc"
    )
    answer = send(iam_stack, headers, body)
    assert_refused(
        iam_stack, answer, 403, gateway(message), "IncompleteSignatureException", before=before
    )


def test_a_session_token_is_refused(iam_stack) -> None:
    before, body = invocations(iam_stack), body_for(iam_stack)
    keys = iam_stack.auth["callers"]["allowed"]
    headers = [*sign(iam_stack, keys, body), ("X-Amz-Security-Token", "FwoGZXIvYXdzEXAMPLE")]
    answer = send(iam_stack, headers, body)
    assert_refused(
        iam_stack,
        answer,
        403,
        gateway(INVALID_TOKEN),
        "UnrecognizedClientException",
        before=before,
    )


# --- no mutation of a signed request is accepted (hypothesis) ---------------------------------

_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)


def _canonical(value: str) -> str:
    return " ".join(value.split())


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, object]:
    kind = draw(
        st.sampled_from(
            [
                "header",
                "repeat",
                "drop",
                "body",
                "path",
                "method",
                "date",
                "signature",
                "signed",
                "sha256",
            ]
        )
    )
    if kind in ("header", "repeat", "drop"):
        return kind, (draw(st.sampled_from(["Host", "Content-Type", "X-Amz-Date"])), draw(_TEXT))
    if kind == "body":
        return kind, draw(st.binary(max_size=80))
    if kind == "path":
        return kind, draw(
            st.sampled_from(
                ["/predict", "/dev/predict/", "/dev/predict?x=1", "/dev/Predict", "/dev/%70redict"]
            )
        )
    if kind == "method":
        return kind, draw(st.sampled_from(["PUT", "GET", "PATCH", "DELETE"]))
    if kind == "date":
        return kind, draw(st.integers(-600, 600).filter(bool))
    if kind == "signature":
        return kind, draw(st.integers(0, 63))
    if kind == "signed":
        return kind, draw(st.sampled_from(["host", "host;x-amz-date", "content-type;host"]))
    return kind, draw(st.sampled_from(["UNSIGNED-PAYLOAD", "0" * 64]))


def _apply(
    info: local_stack.StackInfo, headers: list[tuple[str, str]], body: bytes, mutation
) -> tuple[list[tuple[str, str]], bytes, str, str | None]:
    kind, arg = mutation
    method, path = "POST", None
    if kind == "header":
        name, value = arg
        old = dict(headers)[name]
        if _canonical(value) == _canonical(old):
            value += "x"
        headers = [(k, value if k == name else v) for k, v in headers]
    elif kind == "repeat":
        name, value = arg
        headers = [*headers, (name, value)]
    elif kind == "drop":
        headers = [(k, v) for k, v in headers if k != arg[0]]
    elif kind == "body":
        body = arg if arg != body else body + b" "
    elif kind == "path":
        path = arg
    elif kind == "method":
        method = arg
    elif kind == "date":
        stamp = datetime.strptime(dict(headers)["X-Amz-Date"], SIGV4_TIMESTAMP)
        moved = f"{stamp + timedelta(seconds=arg):{SIGV4_TIMESTAMP}}"
        headers = [(k, moved if k == "X-Amz-Date" else v) for k, v in headers]
    elif kind == "signature":
        auth = dict(headers)["Authorization"]
        head, signature = auth.rsplit("Signature=", 1)
        flipped = "0123456789abcdef"[(int(signature[arg], 16) + 1) % 16]
        signature = signature[:arg] + flipped + signature[arg + 1 :]
        headers = [
            (k, head + "Signature=" + signature if k == "Authorization" else v) for k, v in headers
        ]
    elif kind == "signed":
        auth = re.sub(
            r"SignedHeaders=[^,]*", f"SignedHeaders={arg}", dict(headers)["Authorization"]
        )
        headers = [(k, auth if k == "Authorization" else v) for k, v in headers]
    else:
        headers = [*headers, ("X-Amz-Content-SHA256", arg)]
    return headers, body, method, path


def test_no_mutation_of_a_signed_request_is_accepted(iam_stack) -> None:
    keys = iam_stack.auth["callers"]["allowed"]
    body = body_for(iam_stack)
    assert send(iam_stack, sign(iam_stack, keys, body), body).status == 200
    before = invocations(iam_stack)
    statuses: dict[int, int] = {}

    @settings(
        max_examples=80,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(mutation=mutations())
    def check(mutation) -> None:
        headers, sent, method, path = _apply(
            iam_stack, sign(iam_stack, keys, body), body, mutation
        )
        answer = send(iam_stack, headers, sent, method=method, path=path)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status == 403, (mutation, answer.status, answer.body)
        assert "x-amzn-ErrorType" in answer.headers

    check()
    time.sleep(0.2)
    assert invocations(iam_stack) == before, statuses


# --- API_KEY ----------------------------------------------------------------------------------


def test_ready_json_gives_the_api_key_and_usage_plan(key_stack) -> None:
    auth = key_stack.auth
    assert auth["type"] == "API_KEY" and auth["header"] == "x-api-key"
    [key] = auth["api_keys"]
    assert re.fullmatch(r"[A-Za-z0-9]{40}", key["value"]) and re.fullmatch(
        r"[a-z0-9]{10}", key["id"]
    )
    [plan] = auth["usage_plans"]
    assert plan["api_keys"] == [key["id"]] and plan["stage"] == "dev"
    assert plan["throttle"] == {"rate_limit": 1.0, "burst_limit": 2}
    assert plan["quota"] == {"limit": 4, "period": "DAY"}


def test_api_key_missing_or_wrong_is_forbidden(key_stack) -> None:
    before, body = invocations(key_stack), body_for(key_stack)
    value = key_stack.auth["api_keys"][0]["value"]
    base = [("Host", "x"), ("Content-Type", "application/json")]
    for extra in (
        [],
        [("x-api-key", value[:-1])],
        [("x-api-key", value + "a")],
        [("x-api-key", "")],
    ):
        answer = send(key_stack, [*base, *extra], body)
        assert_refused(
            key_stack, answer, 403, b'{"message":"Forbidden"}', "ForbiddenException", before=before
        )


def test_usage_plan_throttle_then_quota(key_stack) -> None:
    """Burst 2 at 1 request/s, 4 a day: 200 200 429 (throttle), then 200 200 once refilled,
    then 429 Limit Exceeded however long the caller waits (until the next UTC day)."""
    body = body_for(key_stack)
    headers = [
        ("Host", "x"),
        ("Content-Type", "application/json"),
        ("x-api-key", key_stack.auth["api_keys"][0]["value"]),
    ]
    assert [send(key_stack, headers, body).status for _ in range(2)] == [200, 200]
    before = invocations(key_stack)
    answer = send(key_stack, headers, body)
    assert_refused(
        key_stack,
        answer,
        429,
        b'{"message":"Too Many Requests"}',
        "TooManyRequestsException",
        before=before,
    )
    time.sleep(2.2)  # two tokens back
    assert [send(key_stack, headers, body).status for _ in range(2)] == [200, 200]
    time.sleep(1.2)  # a token, but no quota
    before = invocations(key_stack)
    answer = send(key_stack, headers, body)
    assert_refused(
        key_stack,
        answer,
        429,
        b'{"message":"Limit Exceeded"}',
        "LimitExceededException",
        before=before,
    )


def test_no_such_method_with_an_unreadable_authorization_header(iam_stack) -> None:
    """API Gateway reads an Authorization header before it finds no method: a request it
    cannot read is an incomplete signature, a readable one the usual Missing Authentication
    Token."""
    before, body = invocations(iam_stack), body_for(iam_stack)
    headers = [("Host", "x"), ("Authorization", "Bearer abc"), ("X-Amz-Date", "20260101T000000Z")]
    answer = send(iam_stack, headers, body, path="/dev/nothing")
    message = (
        "Authorization header requires 'Credential' parameter. Authorization header requires "
        "'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. "
        "Authorization=Bearer abc"
    )
    assert (answer.status, answer.body) == (403, gateway(message))
    assert answer.headers["x-amzn-ErrorType"] == "IncompleteSignatureException"
    keys = iam_stack.auth["callers"]["allowed"]
    answer = send(iam_stack, sign(iam_stack, keys, body), body, path="/dev/nothing")
    assert (answer.status, answer.body) == (403, b'{"message":"Missing Authentication Token"}')
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert invocations(iam_stack) == before


def test_a_redeploy_keeps_the_api_key(key_stack) -> None:
    value = key_stack.auth["api_keys"][0]["value"]
    info = local_stack.redeploy(key_stack.state_file.parent)
    assert info.auth["api_keys"][0]["value"] == value
