"""The one client of ``POST /predict``: retries by urllib3, answers parsed once into a Result.

Used by the notebooks, ``predict-batch``, ``bench`` and the tests::

    with Client(url) as client:
        result = client.predict(bucket, key)        # EndpointError unless 200
        result.labels, result.seconds, result.cold, result.predict_ms, result.retries
        result = client.predict(bucket, key, return_probabilities=True)
        result.labels, result.probabilities, result.classes   # (n,), (n, 10) float32, (10,)

An authenticated endpoint (template.yaml) gets an :class:`EndpointAuth`: SigV4 by botocore's
own signer with the standard credential chain (or given keys), or an ``x-api-key``::

    Client(url, auth=EndpointAuth.iam("us-east-1"))     # AWS_PROFILE, environment, SSO...
    Client(url, auth=EndpointAuth.key(api_key_value))

Retries are urllib3's :class:`~urllib3.util.Retry` mounted on a requests session: 429, 502,
503 and 504 and connection/read errors, POST included (a predict call is idempotent: the same
object gives the same labels, an ``output_key`` is overwritten), exponential backoff with
jitter, the server's ``Retry-After`` respected (capped). Other statuses are answers, never
retried. Every retry is counted (:attr:`Result.retries`, :attr:`Client.stats`).
:func:`latency_summary` sums up what the calls took; what they cost is :mod:`mnist_lambda.pricing`.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import botocore.session
import numpy as np
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.util import Retry

from mnist_lambda.aws_limits import API_GATEWAY_TIMEOUT_S

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Throttled, or the gateway/function/S3 failing for a moment; 500 is a bug, not retried."""
DEFAULT_TIMEOUT_S = API_GATEWAY_TIMEOUT_S + 6
"""Longer than API Gateway's integration timeout, so its 504 arrives before ours."""
DEFAULT_MAX_ATTEMPTS = 6
_SERVER_TIMING = re.compile(r"([\w.-]+)\s*;\s*dur=([\d.]+)")


class EndpointError(RuntimeError):
    """The endpoint did not answer 200 (after retries); ``result`` is its last answer, if any."""

    def __init__(self, message: str, result: Result | None = None) -> None:
        super().__init__(message)
        self.result = result
        self.status = result.status if result else None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Result:
    """One answer of ``POST /predict`` with its headers parsed; ``response`` is the raw one."""

    status: int
    seconds: float
    """End to end, retries and their waits included."""
    retries: int
    body: Any
    """The JSON body (labels, an ``output_key`` location or an error), None if not JSON."""
    probabilities: np.ndarray | None = field(default=None, repr=False, compare=False)
    """``"return": "probabilities"``: (n, n_classes) float32, columns in the order of
    ``classes`` (rounded by the endpoint to 4 decimals); None for any other answer."""
    classes: np.ndarray | None = field(default=None, compare=False)
    """The model's classes (int64) of a probabilities answer; None otherwise."""
    request_id: str | None = None
    model_sha256: str | None = None
    model_version: str | None = None
    row_count: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    """``Server-Timing`` (the function's own phases: ``s3``, ``decode``, ``predict``...)."""
    cold: bool | None = None
    """The local stack's emulator headers (``X-Lambda-Emulator-*``); None elsewhere."""
    instance: str | None = None
    init_ms: float | None = None
    restore_ms: float | None = None
    """SnapStart: the restore from the snapshot (instead of an init) on a cold call."""
    duration_ms: float | None = None
    max_memory_mb: float | None = None
    lambda_throttled: bool = False
    """A 500 that Lambda's reserved concurrency caused (``X-Lambda-Emulator-Throttled``)."""
    response: requests.Response | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_response(cls, response: requests.Response, seconds: float) -> Result:
        """Parse a response's body and headers, once."""
        h = response.headers
        try:
            body = response.json()
        except ValueError:
            body = None
        history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        cold = h.get("X-Lambda-Emulator-Cold-Start")
        rows = h.get("X-Row-Count")
        timing = h.get("Server-Timing", "")
        probabilities, classes = _probabilities(body)
        return cls(
            status=response.status_code,
            seconds=seconds,
            retries=len(history),
            body=body,
            probabilities=probabilities,
            classes=classes,
            request_id=h.get("X-Request-Id"),
            model_sha256=h.get("X-Model-Sha256"),
            model_version=h.get("X-Model-Version"),
            row_count=int(rows) if rows and rows.isdigit() else None,
            timings_ms={k: float(v) for k, v in _SERVER_TIMING.findall(timing)},
            cold=None if cold is None else cold == "true",
            instance=h.get("X-Lambda-Emulator-Instance"),
            init_ms=_float(h.get("X-Lambda-Emulator-Init-Duration-Ms")),
            restore_ms=_float(h.get("X-Lambda-Emulator-Restore-Duration-Ms")),
            duration_ms=_float(h.get("X-Lambda-Emulator-Duration-Ms")),
            max_memory_mb=_float(h.get("X-Lambda-Emulator-Max-Memory-Used-Mb")),
            lambda_throttled=response.status_code == 500
            and h.get("X-Lambda-Emulator-Throttled") == "true",
            response=response,
        )

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def function_ms(self) -> float | None:
        """The invocation's duration reported by the emulator, without the init (or restore)."""
        if self.duration_ms is None:
            return None
        return self.duration_ms - (self.init_ms or self.restore_ms or 0.0)

    @property
    def predict_ms(self) -> float | None:
        return self.timings_ms.get("predict")

    @property
    def labels(self) -> np.ndarray:
        """The labels of a 200 answer without ``output_key`` (the bare list, or the ``labels``
        of a probabilities answer), as int64."""
        labels = self.body.get("labels") if self.probabilities is not None else self.body
        if not isinstance(labels, list):
            raise EndpointError(f"not a list of labels: {str(self.body)[:200]}", self)
        return np.asarray(labels, dtype=np.int64)

    def timings(self) -> dict[str, Any]:
        """The numbers a benchmark keeps: seconds, cold, init, function and predict ms."""
        return {
            "seconds": self.seconds,
            "cold": bool(self.cold),
            "init_ms": self.init_ms,
            "function_ms": self.function_ms,
            "predict_ms": self.predict_ms,
        }


def _probabilities(body: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``probabilities`` and ``classes`` of a probabilities answer, else (None, None)."""
    if not (isinstance(body, dict) and {"labels", "probabilities", "classes"} <= set(body)):
        return None, None
    try:
        probabilities = np.asarray(body["probabilities"], dtype=np.float32)
        classes = np.asarray(body["classes"], dtype=np.int64)
    except (TypeError, ValueError):
        return None, None
    if probabilities.ndim != 2 or probabilities.shape[1:] != classes.shape:
        return None, None
    return probabilities, classes


class EndpointAuth(AuthBase):
    """How each call proves who makes it: ``iam`` (a SigV4 signature for ``execute-api``) or
    ``api_key`` (the ``x-api-key`` header). Secrets stay out of ``repr``."""

    SERVICE = "execute-api"

    def __init__(
        self, kind: str, *, region: str = "", credentials: Any = None, api_key: str = ""
    ) -> None:
        if kind not in ("iam", "api_key"):
            raise ValueError(f"auth kind must be 'iam' or 'api_key', not {kind!r}")
        if kind == "iam" and (credentials is None or not region):
            raise ValueError("SigV4 needs credentials and a region")
        if kind == "api_key" and not api_key:
            raise ValueError("an API key is needed")
        self.kind, self.region = kind, region
        self._credentials, self._api_key = credentials, api_key

    @classmethod
    def iam(cls, region: str, keys: dict[str, str] | None = None) -> EndpointAuth:
        """SigV4 with ``keys`` (``aws_access_key_id``, ``aws_secret_access_key`` and maybe
        ``aws_session_token``), else the standard credential chain."""
        if keys:
            credentials = Credentials(
                keys["aws_access_key_id"],
                keys["aws_secret_access_key"],
                keys.get("aws_session_token"),
            )
        else:
            advice = "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            try:
                credentials = botocore.session.Session().get_credentials()
            except BotoCoreError as exc:
                raise EndpointError(f"the endpoint needs SigV4 and {exc}: {advice}") from exc
            if credentials is None:
                raise EndpointError(
                    f"the endpoint needs SigV4 (AuthType AWS_IAM) and no AWS credentials were "
                    f"found: {advice}"
                )
        return cls("iam", region=region, credentials=credentials)

    @classmethod
    def key(cls, value: str) -> EndpointAuth:
        """The ``x-api-key`` header with ``value``."""
        return cls("api_key", api_key=value)

    def __repr__(self) -> str:
        return f"EndpointAuth({self.kind!r}, region={self.region!r})"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Sign (or key) one prepared request; requests calls this before each send."""
        if self.kind == "api_key":
            request.headers["x-api-key"] = self._api_key
            return request
        credentials = self._credentials
        frozen = getattr(credentials, "get_frozen_credentials", lambda: credentials)()
        content_type = request.headers.get("Content-Type")
        signed = AWSRequest(
            method=request.method,
            url=request.url,
            data=request.body or b"",
            headers={"Content-Type": content_type} if content_type else {},
        )
        SigV4Auth(frozen, self.SERVICE, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


@dataclass
class CallStats:
    """Every attempt a client made: calls, retries and the status of each (``error``: none)."""

    calls: int = 0
    retries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, outcomes: list[str]) -> None:
        self.calls += len(outcomes)
        self.retries += len(outcomes) - 1
        for outcome in outcomes:
            self.statuses[outcome] = self.statuses.get(outcome, 0) + 1


def make_retry(
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    *,
    backoff_factor: float = 0.25,
    backoff_max: float = 8.0,
    backoff_jitter: float = 0.5,
    retry_after_max: float = 8.0,
) -> Retry:
    """urllib3's Retry for POST /predict: ``max_attempts`` calls in all.

    Attempt ``i`` (from 2) waits ``min(backoff_max, backoff_factor * 2**(i - 1) + U(0, jitter))``
    (urllib3 retries the first failure at once), or ``Retry-After`` (at most
    ``retry_after_max``) when the answer carries one.
    """
    return Retry(
        total=max_attempts - 1,
        redirect=0,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"POST"}),
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        backoff_jitter=backoff_jitter,
        respect_retry_after_header=True,
        retry_after_max=retry_after_max,
        raise_on_status=False,
    )


class Client:
    """A keep-alive session to one ``POST /predict`` URL; thread-safe, counts its attempts."""

    def __init__(
        self,
        url: str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        pool_size: int = 10,
        retry: Retry | None = None,
        auth: EndpointAuth | None = None,
    ) -> None:
        """``auth``: how calls authenticate (None: a public endpoint, template_no_auth)."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.url = url
        self.timeout_s = timeout_s
        self.retry = retry or make_retry(max_attempts)
        self.max_attempts = (self.retry.total or 0) + 1
        self.stats = CallStats()
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.session.auth = auth
        adapter = HTTPAdapter(pool_maxsize=max(1, pool_size), max_retries=self.retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def post(self, body: dict[str, Any]) -> Result:
        """POST ``body`` with retries; return the last answer whatever its status.

        Raises :class:`EndpointError` only when no answer came (connection errors, timeouts).
        """
        start = time.perf_counter()
        try:
            response = self.session.post(self.url, json=body, timeout=self.timeout_s)
        except requests.RequestException as exc:
            with self._lock:
                self.stats.add(["error"] * self.max_attempts)
            raise EndpointError(
                f"POST {self.url} {body.get('key')}: no answer after {self.max_attempts} "
                f"attempt(s): {type(exc).__name__}: {exc}"
            ) from exc
        result = Result.from_response(response, time.perf_counter() - start)
        history = response.raw.retries.history if response.raw.retries else ()
        outcomes = [str(h.status) if h.status else "error" for h in history]
        with self._lock:
            self.stats.add([*outcomes, str(result.status)])
        return result

    def predict(
        self,
        bucket: str,
        key: str,
        output_key: str | None = None,
        return_probabilities: bool = False,
    ) -> Result:
        """POST ``{"bucket", "key"[, "output_key"][, "return": "probabilities"]}``; the 200
        answer, else EndpointError. With ``return_probabilities`` the answer (without
        ``output_key``) has :attr:`Result.probabilities` and :attr:`Result.classes`."""
        body = {"bucket": bucket, "key": key}
        if output_key is not None:
            body["output_key"] = output_key
        if return_probabilities:
            body["return"] = "probabilities"
        result = self.post(body)
        if not result.ok:
            text = result.response.text[:300] if result.response is not None else ""
            raise EndpointError(
                f"POST {self.url} {key}: HTTP {result.status} after {result.retries} "
                f"retries: {text}",
                result,
            )
        return result


def predict(
    url: str,
    bucket: str,
    key: str,
    *,
    output_key: str | None = None,
    return_probabilities: bool = False,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    auth: EndpointAuth | None = None,
) -> Result:
    """One call on a fresh connection (the tutorial's client, with retries)."""
    with Client(
        url, max_attempts=max_attempts, timeout_s=timeout_s, pool_size=1, auth=auth
    ) as client:
        return client.predict(bucket, key, output_key, return_probabilities)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50, p95, mean, min, max and count of durations a client measured (seconds)."""
    values = np.asarray(seconds, dtype=float)
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "mean": float(values.mean()),
        "min": float(values.min()),
        "max": float(values.max()),
        "n": int(values.size),
    }
