"""A method's authorization as API Gateway applies it: ``AWS_IAM`` (SigV4 by a known IAM user
whose policies allow ``execute-api:Invoke`` on the method) or ``API_KEY`` (``x-api-key`` of a
key in a usage plan of the stage, within the plan's throttle and quota).

Who the callers are and what their policies say comes from an :class:`Identities` the
supervisor hands in (the stack's moto IAM); the policies are evaluated by moto's own IAM engine
(:class:`moto.iam.access_control.IAMPolicy`, the one that enforces the function's S3 policy):
an explicit Deny wins, and no Allow is a denial. Every refusal is a :class:`.sigv4.Refusal`.
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from moto.iam.access_control import IAMPolicy, PermissionResult

from mnist_lambda.local_stack.api_front import sigv4
from mnist_lambda.local_stack.api_front.event import local_api_id
from mnist_lambda.local_stack.api_front.sigv4 import Headers, Refusal
from mnist_lambda.local_stack.api_front.throttle import QuotaMeter, TokenBucket
from mnist_lambda.template.reader import ACCOUNT_ID, StackSpec, UsagePlan

INVOKE = "execute-api:Invoke"
POLICY_TTL_S = 5.0  # how long a caller's policies are reused before they are read again
_ALNUM = string.ascii_lowercase + string.digits


def method_arn(region: str, api: str, stage: str, method: str, path: str) -> str:
    """``arn:aws:execute-api:<region>:<account>:<api id>/<stage>/<METHOD>/<path>``."""
    resource = f"{local_api_id(api)}/{stage}/{method}/{path.lstrip('/')}"
    return f"arn:aws:execute-api:{region}:{ACCOUNT_ID}:{resource}"


@dataclass(frozen=True)
class Principal:
    """An IAM user the stack created: its access key, secret and ARN."""

    access_key_id: str
    secret_access_key: str
    arn: str
    user_id: str = ""  # IAM's AIDA... id: the event's identity.user and .caller

    def identity(self) -> dict[str, str]:
        """What API Gateway puts in the event's ``requestContext.identity`` for this caller."""
        return {
            "accessKey": self.access_key_id,
            "accountId": ACCOUNT_ID,
            "caller": self.user_id,
            "user": self.user_id,
            "userArn": self.arn,
        }

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"Principal({self.arn!r}, {self.access_key_id!r})"


class Identities(Protocol):
    """Who may sign: the principal of an access key, and its policy documents (JSON)."""

    def principal(self, access_key_id: str) -> Principal | None: ...

    def policies(self, principal: Principal) -> Sequence[str]: ...


def is_allowed(documents: Sequence[str], action: str, resource: str) -> bool:
    """IAM's evaluation with moto's engine: an explicit Deny wins, then any Allow, else no."""
    results = [IAMPolicy(doc).is_action_permitted(action, resource) for doc in documents]
    return PermissionResult.DENIED not in results and PermissionResult.PERMITTED in results


class IamGate:
    """SigV4 and ``execute-api:Invoke`` for ``AWS_IAM`` methods."""

    def __init__(self, identities: Identities, region: str) -> None:
        self.identities, self.region = identities, region
        self._policies: dict[str, tuple[float, Sequence[str]]] = {}
        self._lock = threading.Lock()

    def forget_policies(self) -> None:
        """Read every caller's policies again on its next request (a redeploy)."""
        with self._lock:
            self._policies.clear()

    def _documents(self, principal: Principal) -> Sequence[str]:
        with self._lock:
            cached = self._policies.get(principal.access_key_id)
        if cached is not None and time.monotonic() - cached[0] < POLICY_TTL_S:
            return cached[1]
        documents = list(self.identities.policies(principal))
        with self._lock:
            self._policies[principal.access_key_id] = (time.monotonic(), documents)
        return documents

    def check(
        self,
        method: str,
        url: str,
        headers: Headers,
        body: bytes,
        resource: str,
        *,
        now: datetime | None = None,
    ) -> Principal:
        """The principal that signed this request and may invoke ``resource``, or a Refusal."""
        value = headers.get("authorization")
        if value is None:
            raise Refusal(
                403,
                "Missing Authentication Token",
                "MissingAuthenticationTokenException",
                "no Authorization header on an AWS_IAM method",
            )
        auth = sigv4.parse_authorization(value, headers)
        if "x-amz-security-token" in headers:
            raise sigv4.unknown_key(
                "X-Amz-Security-Token: session credentials are not emulated (IAM users only)"
            )
        principal = self.identities.principal(auth.access_key)
        if principal is None:
            raise sigv4.unknown_key(f"unknown access key {auth.access_key[:4]}...")
        sigv4.verify(
            method,
            url,
            headers,
            body,
            auth,
            secret=principal.secret_access_key,
            region=self.region,
            now=now,
        )
        if not is_allowed(self._documents(principal), INVOKE, resource):
            raise Refusal(
                403,
                f"User: {principal.arn} is not authorized to perform: {INVOKE} "
                f"on resource: {resource}",
                "AccessDeniedException",
                f"{principal.arn} is not allowed {INVOKE} on {resource}",
                key="Message",
            )
        return principal


@dataclass(frozen=True)
class ApiKey:
    """One ``AWS::ApiGateway::ApiKey``: its id and value (made at start) and logical id."""

    id: str
    value: str
    name: str

    def __repr__(self) -> str:
        return f"ApiKey({self.name!r}, {self.id!r})"

    @classmethod
    def new(cls, name: str) -> ApiKey:
        """A fresh key: a 10-character id and a 40-character value, as API Gateway makes."""
        value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
        return cls("".join(secrets.choice(_ALNUM) for _ in range(10)), value, name)


class _Meters:
    """One API key's throttle and quota under one usage plan."""

    def __init__(self, plan: UsagePlan) -> None:
        self.bucket = TokenBucket(plan.throttle) if plan.throttle else None
        quota = plan.quota_limit is not None and plan.quota_period is not None
        self.quota = QuotaMeter(plan.quota_limit, plan.quota_period) if quota else None  # type: ignore[arg-type]


class ApiKeyGate:
    """``x-api-key`` for ``API_KEY`` methods: the key, its usage plan's throttle, its quota."""

    def __init__(self) -> None:
        # logical id -> key; the plans; (plan, key logical id) -> its meters: swapped in whole
        self._tables: tuple[dict[str, ApiKey], tuple[UsagePlan, ...], dict[Any, _Meters]]
        self._tables = ({}, (), {})
        self._lock = threading.Lock()

    @property
    def keys(self) -> Mapping[str, ApiKey]:
        return self._tables[0]

    @property
    def plans(self) -> tuple[UsagePlan, ...]:
        return self._tables[1]

    def configure(self, spec: StackSpec) -> None:
        """The spec's usage plans; its API keys made once (a redeploy keeps keys and counts)."""
        with self._lock:  # check() reads the tables without it
            keys, _, meters = self._tables
            keys = dict(keys)
            for plan in spec.usage_plans:
                for name in plan.api_keys:
                    keys.setdefault(name, ApiKey.new(name))
            meters = {
                (p, k): meters.get((p, k)) or _Meters(p)  # an unchanged plan keeps its counts
                for p in spec.usage_plans
                for k in p.api_keys
            }
            self._tables = (keys, spec.usage_plans, meters)

    def check(self, headers: Headers, api: str, stage: str) -> ApiKey:
        """The request's key if a usage plan of ``api``'s ``stage`` has it and room for one
        more request, else a Refusal."""
        value, (keys, plans, meters) = headers.get("x-api-key"), self._tables
        sent = (value or "").encode("utf-8", "replace")
        key = next(
            (
                k
                for k in keys.values()
                if value is not None and secrets.compare_digest(k.value.encode(), sent)
            ),
            None,
        )
        plan = next(
            (
                p
                for p in plans
                if key is not None and (p.api, p.stage) == (api, stage) and key.name in p.api_keys
            ),
            None,
        )
        if key is None or plan is None:
            reason = (
                "no x-api-key header"
                if value is None
                else "unknown API key"
                if key is None
                else f"API key {key.id} is in no usage plan of {api}/{stage}"
            )
            raise Refusal(403, "Forbidden", "ForbiddenException", reason)
        meter = meters[(plan, key.name)]
        if meter.bucket is not None and not meter.bucket.take():
            raise Refusal(
                429,
                "Too Many Requests",
                "TooManyRequestsException",
                f"API key {key.id} over usage plan {plan.name}'s throttle",
            )
        if meter.quota is not None and not meter.quota.take():
            raise Refusal(
                429,
                "Limit Exceeded",
                "LimitExceededException",
                f"API key {key.id} over usage plan {plan.name}'s quota",
            )
        return key

    def describe(self) -> dict[str, object]:
        def throttle(plan: UsagePlan) -> dict[str, float] | None:
            t = plan.throttle
            return {"rate_limit": t.rate_limit, "burst_limit": t.burst_limit} if t else None

        """The keys (with their values: the ready line is the stack's own secret store) and
        the usage plans, for the ready JSON."""
        return {
            "api_keys": [
                {"id": k.id, "value": k.value, "name": k.name} for k in self.keys.values()
            ],
            "usage_plans": [
                {
                    "name": p.name,
                    "api": p.api,
                    "stage": p.stage,
                    "throttle": throttle(p),
                    "quota": (
                        {"limit": p.quota_limit, "period": p.quota_period}
                        if p.quota_limit is not None
                        else None
                    ),
                    "api_keys": [self.keys[k].id for k in p.api_keys],
                }
                for p in self.plans
            ],
        }


@dataclass
class StaticIdentities:
    """Identities from fixed tables: access key id -> principal, ARN -> policy documents."""

    principals: Mapping[str, Principal]
    documents: Mapping[str, Sequence[str]]

    def principal(self, access_key_id: str) -> Principal | None:
        return self.principals.get(access_key_id)

    def policies(self, principal: Principal) -> Sequence[str]:
        return self.documents.get(principal.arn, ())
