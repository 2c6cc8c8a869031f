"""Read our SAM templates the way ``sam local`` does: functions, their settings and API routes.

Only the intrinsics our templates use are resolved (``Ref``, ``Fn::Sub``, ``Fn::GetAtt``,
``Fn::If``/``Equals``/``Not``, ``AWS::NoValue``); any other is a :class:`TemplateError`. A
resource's ``Ref`` is its logical id, its ``GetAtt`` ``"<LogicalId>.<Attribute>"`` (no stack).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnist_lambda.aws_limits import (
    API_GATEWAY_BURST_LIMIT,
    DEFAULT_ARCHITECTURE,
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    EPHEMERAL_STORAGE_MB,
)
from mnist_lambda.template import FUNCTION_ID
from mnist_lambda.template import template_path as project_template

IMPLICIT_API = "ServerlessRestApi"
SERVERLESS_API = "AWS::Serverless::Api"
AUTH_NONE, AUTH_IAM, AUTH_API_KEY = "NONE", "AWS_IAM", "API_KEY"
IMPLICIT_STAGE = "Prod"  # the stage SAM gives the implicit API
DEFAULT_HANDLER = "lambda_predict.lambda_handler"
ACCOUNT_ID = "123456789012"

_NO_VALUE = object()


class TemplateError(ValueError):
    """The template cannot be turned into a local stack."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that loads CloudFormation's short-form tags (``!Ref x``) as their long forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template_text(path: Path | str) -> Any:
    """A YAML/JSON file that may use CloudFormation's short-form tags."""
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)


def load_template(path: Path | str) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template into plain data, intrinsics in their long forms."""
    data = load_template_text(path)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


def _scalar_str(value: Any) -> str:
    """CloudFormation's string form of a scalar (YAML ``true`` becomes ``"true"``)."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


class _Resolver:
    """Evaluates the supported intrinsics against parameters, pseudo parameters, conditions."""

    def __init__(
        self, template: Mapping[str, Any], overrides: Mapping[str, str] | None, region: str
    ) -> None:
        overrides = dict(overrides or {})
        self.params: dict[str, str] = {}
        self.missing: list[str] = []  # parameters with neither a default nor an override
        for name, spec in (template.get("Parameters") or {}).items():
            if spec.get("Type", "String") not in ("String", "Number"):
                raise TemplateError(f"parameter {name}: type {spec['Type']} is not supported")
            if name not in overrides and "Default" not in spec:
                self.missing.append(name)
            self.params[name] = _scalar_str(overrides.pop(name, spec.get("Default")))
        if overrides:
            raise TemplateError(f"unknown template parameters: {', '.join(sorted(overrides))}")
        self.names: dict[str, Any] = {  # a resource's Ref is its logical id
            **{logical_id: logical_id for logical_id in template["Resources"]},
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": "mnist-lambda-local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": _NO_VALUE,
            **self.params,
        }
        self.resources: Mapping[str, Any] = template["Resources"]
        self.conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self.functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self.ref,
            "Condition": self.condition,
            "Fn::Sub": self.sub,
            "Fn::GetAtt": lambda arg: self.getatt(".".join(arg) if isinstance(arg, list) else arg),
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: operator.eq(*map(_scalar_str, self.resolve(arg))),
            "Fn::Not": lambda arg: not self.resolve(arg)[0],
        }

    def ref(self, name: Any) -> Any:
        api, _, attribute = str(name).partition(".")
        if attribute == "Stage" and self.resources.get(api, {}).get("Type") == SERVERLESS_API:
            stage = (self.resources[api].get("Properties") or {}).get("StageName")
            return _scalar_str(self.resolve(stage)) if stage is not None else IMPLICIT_STAGE
        if name not in self.names:
            raise TemplateError(f"Ref to unknown name {name!r}")
        return self.names[name]

    def getatt(self, name: str) -> str:
        if name.split(".", 1)[0] not in self.resources:
            raise TemplateError(f"Fn::GetAtt of unknown resource {name!r}")
        return name

    def condition(self, name: Any) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self.resolve(self.conditions[name]))

    def sub(self, text: Any) -> str:
        if not isinstance(text, str):
            raise TemplateError("Fn::Sub with a variable map is not supported")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            return self.getatt(name) if "." in name else _scalar_str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic evaluated and ``AWS::NoValue`` dropped."""
        if isinstance(node, list):
            return [v for v in map(self.resolve, node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        key = next(iter(node)) if len(node) == 1 else ""
        if key in self.functions:
            return self.functions[key](node[key])
        if key.startswith("Fn::"):
            raise TemplateError(f"unsupported intrinsic function {key}")
        resolved = ((k, self.resolve(v)) for k, v in node.items())
        return {k: v for k, v in resolved if v is not _NO_VALUE}


@dataclass(frozen=True)
class FunctionSpec:
    """What the emulator needs to run one ``AWS::Serverless::Function``."""

    logical_id: str
    handler: str
    timeout: int = DEFAULT_TIMEOUT_S
    memory_size: int = DEFAULT_MEMORY_MB
    environment: Mapping[str, str] = field(default_factory=dict)
    package_type: str = "Zip"
    ephemeral_storage_mb: int = EPHEMERAL_STORAGE_MB
    policies: tuple[Mapping[str, Any], ...] = ()  # inline documents (not policy templates, ARNs)
    reserved_concurrency: int | None = None
    snap_start: bool = False  # SnapStart ApplyOn PublishedVersions
    architecture: str = DEFAULT_ARCHITECTURE  # the first of its Architectures


@dataclass(frozen=True)
class Route:
    """One API Gateway (REST API) method: ``method`` on ``path`` of ``stage``, to ``function``."""

    method: str  # upper case, or "ANY"
    path: str  # resource path, e.g. "/predict" or "/items/{id}" or "/{proxy+}"
    function: str
    stage: str
    api: str
    auth: str = AUTH_NONE  # AUTH_NONE, AUTH_IAM (SigV4) or AUTH_API_KEY (x-api-key)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` (without the stage) is this route's resource."""
        pattern = re.escape(self.path)
        pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", pattern)
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
        return found.groupdict() if (found := re.fullmatch(pattern, path)) else None

    @property
    def is_static(self) -> bool:
        return "{" not in self.path


@dataclass(frozen=True)
class Throttle:
    """A stage's ``MethodSettings`` throttle: steady rate (requests/s) and burst (bucket size)."""

    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class UsagePlan:
    """An ``AWS::ApiGateway::UsagePlan`` on one API stage: its per-key throttle and quota, and
    the ``AWS::ApiGateway::ApiKey`` logical ids that its ``UsagePlanKey`` resources bind."""

    name: str
    api: str
    stage: str
    throttle: Throttle | None = None
    quota_limit: int | None = None
    quota_period: str | None = None  # DAY, WEEK or MONTH
    api_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackSpec:
    """Functions and routes found in a template, intrinsics resolved."""

    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    binary_media_types: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    # API logical id -> its OpenAPI definition (if any), its stage-wide throttle (if any)
    definitions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    throttling: Mapping[str, Throttle] = field(default_factory=dict)
    usage_plans: tuple[UsagePlan, ...] = ()

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.stage for r in self.routes))


def _merge(globals_: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: mappings merge key by key, anything else is replaced."""
    merged = dict(globals_)
    for key, value in props.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def _handler(props: Mapping[str, Any], metadata: Mapping[str, Any], template_dir: Path) -> str:
    """``Handler``, else an image's ``ImageConfig.Command`` or its Dockerfile's last ``CMD``."""
    handler = props.get("Handler") or ((props.get("ImageConfig") or {}).get("Command") or [0])[0]
    if handler:
        return str(handler)
    context = metadata.get("DockerContext")
    dockerfile = template_dir / str(context) / str(metadata.get("Dockerfile", "Dockerfile"))
    text = dockerfile.read_text(encoding="utf-8") if context and dockerfile.is_file() else ""
    cmds = re.findall(r'^\s*CMD\s*\[\s*"([^"]+)"', text, flags=re.MULTILINE | re.IGNORECASE)
    return cmds[-1] if cmds else DEFAULT_HANDLER


def api_definition(body: Any, uri: Any, template_dir: Path) -> dict[str, Any] | None:
    """An API's OpenAPI document: inline, or the local file of an AWS::Include or DefinitionUri."""
    location = uri
    if isinstance(body, dict):
        if (transform := body.get("Fn::Transform")) is None:
            return body
        if not isinstance(transform, dict) or transform.get("Name") != "AWS::Include":
            raise TemplateError(f"DefinitionBody: unsupported transform {transform!r}")
        location = (transform.get("Parameters") or {}).get("Location")
    elif body is not None:
        raise TemplateError("DefinitionBody must be a mapping")
    if location is None:
        return None
    if not isinstance(location, str) or location.startswith("s3://"):
        raise TemplateError(f"API definition {location!r} is not a local file")
    path = template_dir / location
    try:
        definition = load_template_text(path)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"API definition {path} cannot be read: {exc}") from exc
    if not isinstance(definition, dict) or not isinstance(definition.get("paths"), dict):
        raise TemplateError(f"{path}: not an OpenAPI/Swagger document (no paths)")
    return definition


def load_stack_spec(
    template_path: Path | str,
    parameter_overrides: Mapping[str, str] | None = None,
    *,
    region: str = "us-east-1",
) -> StackSpec:
    """Read the functions (handler, timeout, memory, environment, ...) and REST API routes."""
    template_path = Path(template_path)
    template = load_template(template_path)
    resolver = _Resolver(template, parameter_overrides, region)
    warnings = [f"parameter {name} has no default and no override" for name in resolver.missing]
    globals_ = template.get("Globals") or {}
    resources = {
        logical_id: res
        for logical_id, res in template["Resources"].items()
        if "Condition" not in res or resolver.condition(res["Condition"])
    }
    apis = {
        logical_id: _read_api(res, globals_.get("Api") or {}, resolver, template_path.parent)
        for logical_id, res in resources.items()
        if res.get("Type") == SERVERLESS_API
    }
    functions: dict[str, FunctionSpec] = {}
    routes: list[Route] = []
    for logical_id, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        raw = _merge(globals_.get("Function") or {}, res.get("Properties") or {})
        events = raw.pop("Events", None) or {}
        props, metadata = resolver.resolve(raw), res.get("Metadata") or {}
        functions[logical_id] = _function_spec(logical_id, props, metadata, template_path.parent)
        for event_id, event in events.items():
            if event.get("Type") != "Api":
                warnings.append(f"{logical_id}.{event_id}: {event.get('Type')} events not served")
                continue
            eprops = resolver.resolve(event.get("Properties") or {})
            routes.append(_route(logical_id, eprops, apis, resolver))
    if not routes:
        raise TemplateError(f"{template_path}: no AWS::Serverless::Function has an Api event")
    binary = [t for r in routes for t in apis.get(r.api, _NO_API).binary_media_types]
    routes.sort(key=lambda r: (not r.is_static, -len(r.path)))  # static first, as API Gateway
    return StackSpec(
        functions,
        tuple(routes),
        tuple(dict.fromkeys(binary)),
        tuple(warnings),
        definitions={k: a.definition for k, a in apis.items() if a.definition is not None},
        throttling={k: a.throttle for k, a in apis.items() if a.throttle is not None},
        usage_plans=_usage_plans(resources, resolver),
    )


@dataclass(frozen=True)
class _Api:
    """One ``AWS::Serverless::Api``: what its routes and the front take from it."""

    stage: str = IMPLICIT_STAGE
    binary_media_types: tuple[str, ...] = ()
    definition: dict[str, Any] | None = None  # its OpenAPI document
    throttle: Throttle | None = None  # its stage-wide MethodSettings throttle


_NO_API = _Api()  # the implicit API, or one the template does not declare


def _read_api(
    res: Mapping[str, Any], globals_: Mapping[str, Any], resolver: _Resolver, template_dir: Path
) -> _Api:
    props = _merge(globals_, res.get("Properties") or {})
    body, uri = props.pop("DefinitionBody", None), props.pop("DefinitionUri", None)
    api = resolver.resolve(props)
    throttle = None
    for s in api.get("MethodSettings") or []:
        stage_wide = (s.get("ResourcePath", "/*"), s.get("HttpMethod", "*")) == ("/*", "*")
        if stage_wide and "ThrottlingRateLimit" in s:
            burst = int(s.get("ThrottlingBurstLimit", API_GATEWAY_BURST_LIMIT))
            throttle = Throttle(float(s["ThrottlingRateLimit"]), burst)
    definition = api_definition(body, uri, template_dir)
    return _Api(
        stage=str(api.get("StageName") or IMPLICIT_STAGE),
        binary_media_types=tuple(str(t) for t in api.get("BinaryMediaTypes") or []),
        definition=definition,
        throttle=throttle,
    )


_ANY_METHOD = "x-amazon-apigateway-any-method"
_OPENAPI_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", _ANY_METHOD}


def method_auth(
    definition: Mapping[str, Any] | None,
    path: str,
    method: str,
    resolve: Callable[[Any], Any] = lambda node: node,
) -> str:
    """The auth API Gateway applies to ``method`` on ``path`` of an OpenAPI document: the
    operation's ``security`` (else the document's, each through ``resolve``: its intrinsics,
    e.g. an ``Fn::If`` on a template condition) read through its security schemes."""
    if definition is None:
        return AUTH_NONE
    item = (definition.get("paths") or {}).get(path) or {}
    key = _ANY_METHOD if method == "ANY" else method.lower()
    operation = item.get(key) if key in _OPENAPI_METHODS else None
    requirements = resolve((operation or {}).get("security", definition.get("security"))) or []
    schemes = {
        **(definition.get("securityDefinitions") or {}),  # Swagger 2
        **((definition.get("components") or {}).get("securitySchemes") or {}),  # OpenAPI 3
    }
    found = set()
    for requirement in requirements:
        for name in requirement:
            scheme = schemes.get(name)
            if scheme is None:
                raise TemplateError(f"{method} {path}: security scheme {name!r} is not defined")
            if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4":
                found.add(AUTH_IAM)
            elif scheme.get("type") == "apiKey" and str(scheme.get("name")).lower() == "x-api-key":
                found.add(AUTH_API_KEY)
            else:
                raise TemplateError(f"{method} {path}: security scheme {name!r} is not supported")
    if len(found) > 1:
        raise TemplateError(f"{method} {path}: both SigV4 and an API key is not supported")
    return found.pop() if found else AUTH_NONE


def _usage_plans(resources: Mapping[str, Any], resolver: _Resolver) -> tuple[UsagePlan, ...]:
    """The usage plans of the (condition-filtered) resources, with the API keys bound to each."""
    keys: dict[str, list[str]] = {}
    for res in resources.values():
        if res.get("Type") == "AWS::ApiGateway::UsagePlanKey":
            props = resolver.resolve(res.get("Properties") or {})
            keys.setdefault(str(props["UsagePlanId"]), []).append(str(props["KeyId"]))
    plans = []
    for logical_id, res in resources.items():
        if res.get("Type") != "AWS::ApiGateway::UsagePlan":
            continue
        props = resolver.resolve(res.get("Properties") or {})
        throttle, quota = props.get("Throttle"), props.get("Quota") or {}
        for stage in props.get("ApiStages") or []:
            plans.append(
                UsagePlan(
                    name=logical_id,
                    api=str(stage["ApiId"]),
                    stage=str(stage["Stage"]),
                    throttle=Throttle(
                        float(throttle.get("RateLimit", 0)),
                        int(throttle.get("BurstLimit", API_GATEWAY_BURST_LIMIT)),
                    )
                    if throttle
                    else None,
                    quota_limit=int(quota["Limit"]) if "Limit" in quota else None,
                    quota_period=str(quota["Period"]) if "Period" in quota else None,
                    api_keys=tuple(keys.get(logical_id, ())),
                )
            )
    return tuple(plans)


def _function_spec(
    logical_id: str, props: Mapping[str, Any], metadata: Mapping[str, Any], template_dir: Path
) -> FunctionSpec:
    """A function's settings from its resolved properties (Globals merged)."""
    env = (props.get("Environment") or {}).get("Variables") or {}
    reserved = props.get("ReservedConcurrentExecutions")
    storage = (props.get("EphemeralStorage") or {}).get("Size", EPHEMERAL_STORAGE_MB)
    arches = props.get("Architectures")
    architecture = arches[0] if isinstance(arches, list) and arches else DEFAULT_ARCHITECTURE
    return FunctionSpec(
        logical_id=logical_id,
        handler=_handler(props, metadata, template_dir),
        timeout=int(props.get("Timeout", DEFAULT_TIMEOUT_S)),
        memory_size=int(props.get("MemorySize", DEFAULT_MEMORY_MB)),
        environment={str(k): _scalar_str(v) for k, v in env.items()},
        package_type=str(props.get("PackageType", "Zip")),
        ephemeral_storage_mb=int(storage),
        policies=tuple(p for p in props.get("Policies") or [] if isinstance(p, dict)),
        reserved_concurrency=None if reserved is None else int(reserved),
        snap_start=(props.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions",
        architecture=str(architecture),
    )


def _route(
    function: str, event: Mapping[str, Any], apis: Mapping[str, _Api], resolver: _Resolver
) -> Route:
    """The route of one ``Api`` event (resolved properties) of ``function``."""
    api_id = str(event.get("RestApiId") or IMPLICIT_API)
    method, path = (
        str(event.get("Method", "any")).upper(),
        "/" + str(event.get("Path", "/")).strip("/"),
    )
    api = apis.get(api_id, _NO_API)
    auth = method_auth(api.definition, path, method, resolver.resolve)
    return Route(method, path, function, api.stage, api_id, auth)


@dataclass(frozen=True)
class FunctionSettings:
    """One function's configuration as the template sets it, and its API stage's throttle."""

    function: FunctionSpec
    max_object_bytes: int  # the function's MAX_OBJECT_BYTES (the template's MaxObjectBytes)
    throttle: Throttle | None


def function_settings(
    template_path: Path | str | None = None,
    overrides: Mapping[str, str] | None = None,
    *,
    function: str = FUNCTION_ID,
) -> FunctionSettings:
    """``function``'s settings in ``template_path`` (default: the project's template)."""
    if template_path is None:
        template_path = project_template()
    spec = load_stack_spec(template_path, overrides)
    if (fn := spec.functions.get(function)) is None or "MAX_OBJECT_BYTES" not in fn.environment:
        raise TemplateError(f"{template_path}: no {function} with a MAX_OBJECT_BYTES variable")
    api = next((r.api for r in spec.routes if r.function == function), "")
    return FunctionSettings(fn, int(fn.environment["MAX_OBJECT_BYTES"]), spec.throttling.get(api))
