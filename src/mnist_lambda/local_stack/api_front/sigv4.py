"""SigV4 as API Gateway checks it on an ``AWS_IAM`` method: botocore's own signer recomputes the
signature over exactly the headers the client signed, compared in constant time.

:func:`parse_authorization` reads the ``Authorization`` header (API Gateway's
``IncompleteSignatureException`` answers for a malformed one); :func:`verify` checks the date
(5 minutes of clock skew either way), the body hash and the signature with the caller's secret.
Refusals are :class:`Refusal` (status, body, ``x-amzn-ErrorType``). Only an IAM user's
long-term keys are known here: a request with ``X-Amz-Security-Token`` (STS session
credentials) is refused as an unknown token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
MAX_CLOCK_SKEW = timedelta(minutes=5)
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."
_REQUIRED = ("Credential", "Signature", "SignedHeaders")


class Refusal(Exception):
    """API Gateway's answer to a request it will not pass on: ``status``, ``{key: message}``
    (``key`` is ``Message`` in an IAM denial, as API Gateway sends it), ``x-amzn-ErrorType``,
    and why, for the stack log (never a secret)."""

    def __init__(
        self, status: int, message: str, error_type: str, reason: str, key: str = "message"
    ) -> None:
        super().__init__(reason)
        self.status, self.message, self.error_type = status, message, error_type
        self.reason, self.key = reason, key


def incomplete(message: str, reason: str) -> Refusal:
    return Refusal(403, message, "IncompleteSignatureException", reason)


def mismatch(reason: str) -> Refusal:
    return Refusal(403, SIGNATURE_MISMATCH, "InvalidSignatureException", reason)


def unknown_key(reason: str) -> Refusal:
    return Refusal(403, INVALID_TOKEN, "UnrecognizedClientException", reason)


@dataclass(frozen=True)
class Authorization:
    """A parsed ``AWS4-HMAC-SHA256`` Authorization header."""

    access_key: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


class Headers:
    """A request's headers as the client sent them (names, case, repeats)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = [(str(k), str(v)) for k, v in pairs]

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.pairs if k.lower() == name]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def __contains__(self, name: str) -> bool:
        return bool(self.get_all(name))


def parse_authorization(value: str, headers: Headers) -> Authorization:
    """The header's parts, or API Gateway's ``IncompleteSignatureException``."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    if scheme == ALGORITHM:
        for token in rest.replace(",", " ").split():
            key, sep, val = token.partition("=")
            if not sep:
                raise incomplete(
                    f"'{token}' not a valid key=value pair (missing equal-sign) in "
                    f"Authorization header: '{value}'.",
                    "malformed Authorization header (a parameter without '=')",
                )
            params[key] = val
    problems = [f"Authorization header requires '{p}' parameter." for p in _REQUIRED]
    problems = [m for p, m in zip(_REQUIRED, problems, strict=True) if not params.get(p)]
    if "x-amz-date" not in headers and "date" not in headers:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        missing = [p for p in _REQUIRED if not params.get(p)] or ["a date header"]
        raise incomplete(
            " ".join([*problems, f"Authorization={value}"]),
            f"incomplete Authorization header (no {', '.join(missing)})",
        )
    signed = tuple(params["SignedHeaders"].split(";"))
    if "host" not in signed:
        raise incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            "the Host header is not signed",
        )
    for name in signed:
        if name not in headers:
            raise incomplete(
                f"'{name}' is named as a SignedHeader, but it does not exist in the HTTP request.",
                f"signed header {name!r} is absent",
            )
    parts = params["Credential"].split("/")
    if len(parts) != 5:
        raise mismatch(f"malformed Credential scope ({len(parts)} parts)")
    access_key, scope_date, region, service, terminator = parts
    return Authorization(
        access_key, scope_date, region, service, terminator, signed, params["Signature"]
    )


def request_time(headers: Headers) -> datetime:
    """``X-Amz-Date`` (ISO 8601 basic), else ``Date`` (HTTP date), in UTC."""
    if (amz_date := headers.get("x-amz-date")) is not None:
        try:
            return datetime.strptime(amz_date.strip(), SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            text = amz_date
    else:
        text = headers.get("date") or ""
        try:
            return parsedate_to_datetime(text).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    raise incomplete(
        f"Date must be in ISO-8601 'basic format'. Got '{text}'. "
        "See http://en.wikipedia.org/wiki/ISO_8601",
        "unreadable request date",
    )


def check_clock(when: datetime, now: datetime) -> None:
    """API Gateway's 5 minutes of allowed clock skew, either way."""
    stamp = SIGV4_TIMESTAMP
    if when < now - MAX_CLOCK_SKEW:
        raise Refusal(
            403,
            f"Signature expired: {when:{stamp}} is now earlier than "
            f"{now - MAX_CLOCK_SKEW:{stamp}} ({now:{stamp}} - 5 min.)",
            "InvalidSignatureException",
            "signature expired (request date over 5 minutes ago)",
        )
    if when > now + MAX_CLOCK_SKEW:
        raise Refusal(
            403,
            f"Signature not yet current: {when:{stamp}} is still later than "
            f"{now + MAX_CLOCK_SKEW:{stamp}} ({now:{stamp}} + 5 min.)",
            "InvalidSignatureException",
            "signature not yet current (request date over 5 minutes ahead)",
        )


class _Verifier(SigV4Auth):
    """botocore's signer, made to sign exactly the headers the client named."""

    def __init__(self, credentials: Credentials, region: str, signed: tuple[str, ...]) -> None:
        super().__init__(credentials, SERVICE, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                header_map[name] = value  # adds a value: repeats are kept, in order
        return header_map


def expected_signature(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    auth: Authorization,
    *,
    secret: str,
    region: str,
    timestamp: str,
) -> str:
    """The signature botocore computes for this request with ``secret``, in ``region`` and
    ``execute-api``, at ``timestamp`` (the request's date, ISO 8601 basic)."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers.pairs:
        request.headers[name] = value  # adds, as received (HTTPHeaders keeps repeats)
    request.context["timestamp"] = timestamp
    signer = _Verifier(Credentials(auth.access_key, secret), region, auth.signed_headers)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def verify(
    method: str,
    url: str,
    headers: Headers,
    body: bytes,
    auth: Authorization,
    *,
    secret: str,
    region: str,
    now: datetime | None = None,
) -> None:
    """Raise a :class:`Refusal` unless ``auth`` signs this request with ``secret``: date within
    5 minutes of ``now``, scope ``<its date>/<region>/execute-api/aws4_request``, the body's
    SHA-256 (``x-amz-content-sha256`` must be it when sent) and the signature."""
    when = request_time(headers)
    check_clock(when, now or datetime.now(UTC))
    timestamp = f"{when:{SIGV4_TIMESTAMP}}"
    scope = (auth.scope_date, auth.region, auth.service, auth.terminator)
    if scope != (timestamp[:8], region, SERVICE, "aws4_request"):
        raise mismatch(f"credential scope {'/'.join(scope)} is not {timestamp[:8]}/{region}/...")
    content_hash = headers.get("x-amz-content-sha256")
    if content_hash is not None and content_hash != hashlib.sha256(body).hexdigest():
        raise mismatch("x-amz-content-sha256 is not the body's SHA-256")
    expected = expected_signature(
        method, url, headers, body, auth, secret=secret, region=region, timestamp=timestamp
    )
    if not hmac.compare_digest(expected.encode(), auth.signature.encode("utf-8", "replace")):
        raise mismatch("signature does not match")
