"""Read a SAM template the way ``sam local`` does: functions, their settings and API routes.

Short-form intrinsics (``!Ref``, ``!Sub``, ``!GetAtt``, ...) are loaded as their long forms and
resolved against the parameters' defaults plus overrides and the pseudo parameters. Refs to
resources resolve to their logical id and ``GetAtt`` to ``"<LogicalId>.<Attribute>"``: there is
no deployed stack to ask. SAM ``Globals.Function`` and ``Globals.Api`` are merged in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mnist_lambda.aws_limits import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, EPHEMERAL_STORAGE_MB

IMPLICIT_API = "ServerlessRestApi"
IMPLICIT_STAGE = "Prod"  # the stage SAM gives the implicit API
DEFAULT_HANDLER = "lambda_predict.lambda_handler"
ACCOUNT_ID = "123456789012"

_NO_VALUE = object()


class TemplateError(ValueError):
    """The template cannot be turned into a local stack."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form tags."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path | str) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML (or JSON) template into plain Python data."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.load(fh, Loader=_CfnLoader)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return data


class Resolver:
    """Evaluates intrinsic functions against parameters, pseudo parameters and conditions."""

    def __init__(
        self,
        template: Mapping[str, Any],
        overrides: Mapping[str, str] | None = None,
        *,
        region: str = "us-east-1",
        stack_name: str = "mnist-lambda-local",
    ) -> None:
        self.template = template
        self.params: dict[str, Any] = {}
        self.missing: list[str] = []
        overrides = dict(overrides or {})
        for name, spec in (template.get("Parameters") or {}).items():
            spec = spec or {}
            if name in overrides:
                value: Any = overrides.pop(name)
            elif "Default" in spec:
                value = spec["Default"]
            else:
                self.missing.append(name)
                value = ""
            value = _scalar_str(value)
            ptype = str(spec.get("Type", "String"))
            if ptype == "CommaDelimitedList" or ptype.startswith("List<"):
                value = [v.strip() for v in value.split(",")] if value else []
            self.params[name] = value
        if overrides:
            raise TemplateError(f"unknown template parameters: {', '.join(sorted(overrides))}")
        self.pseudo: dict[str, Any] = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/{stack_name}/x",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        self.resources: Mapping[str, Any] = template.get("Resources") or {}
        self._conditions: Mapping[str, Any] = template.get("Conditions") or {}
        self._condition_values: dict[str, bool] = {}

    def ref(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.resources:
            return name
        raise TemplateError(f"!Ref to unknown name {name!r}")

    def condition(self, name: str) -> bool:
        if name not in self._condition_values:
            if name not in self._conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._condition_values[name] = bool(self.resolve(self._conditions[name]))
        return self._condition_values[name]

    def resolve(self, node: Any) -> Any:
        """Return ``node`` with every intrinsic function evaluated."""
        if isinstance(node, list):
            items = [self.resolve(v) for v in node]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                return self._fn(key[4:], arg)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not _NO_VALUE:
                out[key] = resolved
        return out

    def _fn(self, name: str, arg: Any) -> Any:
        if name == "Sub":
            if isinstance(arg, list):
                text, variables = arg[0], self.resolve(arg[1] if len(arg) > 1 else {})
            else:
                text, variables = arg, {}
            return self._sub(str(self.resolve(text)), variables)
        if name == "GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return ".".join(str(self.resolve(p)) for p in parts)
        if name == "Join":
            sep, items = self.resolve(arg)
            return str(sep).join(_scalar_str(v) for v in items)
        if name == "Select":
            index, items = self.resolve(arg)
            return items[int(index)]
        if name == "Split":
            sep, text = self.resolve(arg)
            return str(text).split(str(sep))
        if name == "If":
            cond, yes, no = arg
            return self.resolve(yes if self.condition(str(cond)) else no)
        if name == "Equals":
            a, b = self.resolve(arg)
            return _scalar_str(a) == _scalar_str(b)
        if name == "Not":
            return not self.resolve(arg)[0]
        if name == "And":
            return all(self.resolve(arg))
        if name == "Or":
            return any(self.resolve(arg))
        if name == "FindInMap":
            mapname, top, second = self.resolve(arg)
            return self.template["Mappings"][mapname][top][second]
        if name == "Base64":
            return base64.b64encode(str(self.resolve(arg)).encode()).decode()
        if name == "ImportValue":
            return f"imported:{self.resolve(arg)}"
        if name == "GetAZs":
            region = self.resolve(arg) or self.pseudo["AWS::Region"]
            return [f"{region}a", f"{region}b"]
        raise TemplateError(f"unsupported intrinsic function Fn::{name}")

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar_str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return name
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else _scalar_str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _scalar_str(value: Any) -> str:
    """CloudFormation's string form of a scalar (YAML ``true`` becomes ``"true"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


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
    policies: tuple[Mapping[str, Any], ...] = ()
    """Inline policy documents of ``Policies`` (SAM policy templates and ARNs are not read)."""
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class Route:
    """One API Gateway (REST API) method: ``method`` on ``path`` of ``stage``, to ``function``."""

    method: str  # upper case, or "ANY"
    path: str  # resource path, e.g. "/predict" or "/items/{id}" or "/{proxy+}"
    function: str
    stage: str
    api: str

    @property
    def _regex(self) -> re.Pattern[str]:
        parts = []
        for segment in self.path.strip("/").split("/") if self.path != "/" else []:
            greedy = re.fullmatch(r"\{(\w+)\+\}", segment)
            single = re.fullmatch(r"\{(\w+)\}", segment)
            if greedy:
                parts.append(f"(?P<{greedy.group(1)}>.+)")
            elif single:
                parts.append(f"(?P<{single.group(1)}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return re.compile("/" + "/".join(parts))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` (without the stage) is this route's resource."""
        found = self._regex.fullmatch(path)
        return None if found is None else found.groupdict()

    @property
    def is_static(self) -> bool:
        return "{" not in self.path


@dataclass(frozen=True)
class Throttle:
    """A stage's ``MethodSettings`` throttle: steady rate (requests/s) and burst (bucket size)."""

    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class StackSpec:
    """Functions and routes found in a template, intrinsics resolved."""

    functions: Mapping[str, FunctionSpec]
    routes: tuple[Route, ...]
    binary_media_types: tuple[str, ...] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    definitions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """API logical id -> its OpenAPI definition (DefinitionBody/DefinitionUri), if it has one."""
    throttling: Mapping[str, Throttle] = field(default_factory=dict)
    """API logical id -> its stage-wide throttle (``ResourcePath: /*``, ``HttpMethod: *``)."""

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.stage for r in self.routes))


def _merge_globals(globals_: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(globals_)
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_globals(merged[key], value)
        else:
            merged[key] = value
    return merged


def _dockerfile_cmd(template_dir: Path, metadata: Mapping[str, Any]) -> str | None:
    """The handler from the image's ``CMD ["module.function"]`` (SAM image functions)."""
    context = metadata.get("DockerContext")
    if not context:
        return None
    dockerfile = template_dir / str(context) / str(metadata.get("Dockerfile", "Dockerfile"))
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except OSError:
        return None
    cmds = re.findall(r'^\s*CMD\s*\[\s*"([^"]+)"', text, flags=re.MULTILINE | re.IGNORECASE)
    return cmds[-1] if cmds else None


def _handler(props: Mapping[str, Any], metadata: Mapping[str, Any], template_dir: Path) -> str:
    if props.get("Handler"):
        return str(props["Handler"])
    command = (props.get("ImageConfig") or {}).get("Command")
    if command:
        return str(command[0])
    return _dockerfile_cmd(template_dir, metadata) or DEFAULT_HANDLER


def api_definition(body: Any, uri: Any, template_dir: Path) -> dict[str, Any] | None:
    """An API's OpenAPI/Swagger document, as API Gateway would get it (intrinsics unresolved).

    ``DefinitionBody`` inline, or ``Fn::Transform: AWS::Include`` with a local ``Location``, or a
    local ``DefinitionUri``, both relative to the template (``sam deploy`` uploads those files).
    An S3 location cannot be read locally: :class:`TemplateError`.
    """
    location = uri
    if isinstance(body, dict):
        transform = body.get("Fn::Transform")
        if transform is None:
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


def load_template_text(path: Path) -> Any:
    """A YAML/JSON file that may use CloudFormation's short-form tags."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_CfnLoader)


def load_stack_spec(
    template_path: Path | str,
    parameter_overrides: Mapping[str, str] | None = None,
    *,
    region: str = "us-east-1",
) -> StackSpec:
    """Read the functions (handler, timeout, memory, environment) and REST API routes."""
    template_path = Path(template_path)
    template = load_template(template_path)
    resolver = Resolver(template, parameter_overrides, region=region)
    warnings = [f"parameter {name} has no default and no override" for name in resolver.missing]
    globals_ = template.get("Globals") or {}
    resources: Mapping[str, Any] = template["Resources"]

    apis: dict[str, dict[str, Any]] = {}
    definitions: dict[str, dict[str, Any]] = {}
    throttling: dict[str, Throttle] = {}
    for logical_id, res in resources.items():
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Api":
            props = _merge_globals(globals_.get("Api") or {}, res.get("Properties") or {})
            body, uri = props.pop("DefinitionBody", None), props.pop("DefinitionUri", None)
            apis[logical_id] = resolver.resolve(props)
            for setting in apis[logical_id].get("MethodSettings") or []:
                stage_wide = (setting.get("ResourcePath", "/*"), setting.get("HttpMethod", "*"))
                if stage_wide == ("/*", "*") and "ThrottlingRateLimit" in setting:
                    throttling[logical_id] = Throttle(
                        float(setting["ThrottlingRateLimit"]),
                        int(setting.get("ThrottlingBurstLimit", 5000)),
                    )
            definition = api_definition(body, uri, template_path.parent)
            if definition is not None:
                definitions[logical_id] = definition

    functions: dict[str, FunctionSpec] = {}
    routes: list[Route] = []
    binary: list[str] = []
    for logical_id, res in resources.items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Serverless::Function":
            continue
        if "Condition" in res and not resolver.condition(str(res["Condition"])):
            continue
        raw = _merge_globals(globals_.get("Function") or {}, res.get("Properties") or {})
        events = raw.pop("Events", None) or {}
        props = resolver.resolve(raw)
        env = ((props.get("Environment") or {}).get("Variables")) or {}
        functions[logical_id] = FunctionSpec(
            logical_id=logical_id,
            handler=_handler(props, res.get("Metadata") or {}, template_path.parent),
            timeout=int(props.get("Timeout", DEFAULT_TIMEOUT_S)),
            memory_size=int(props.get("MemorySize", DEFAULT_MEMORY_MB)),
            environment={str(k): _scalar_str(v) for k, v in env.items()},
            package_type=str(props.get("PackageType", "Zip")),
            ephemeral_storage_mb=int(
                (props.get("EphemeralStorage") or {}).get("Size", EPHEMERAL_STORAGE_MB)
            ),
            policies=tuple(p for p in props.get("Policies") or [] if isinstance(p, dict)),
            reserved_concurrency=(
                int(props["ReservedConcurrentExecutions"])
                if "ReservedConcurrentExecutions" in props
                else None
            ),
        )
        for event_id, event in events.items():
            etype = (event or {}).get("Type")
            if etype != "Api":
                if etype == "HttpApi":
                    warnings.append(f"{logical_id}.{event_id}: HttpApi events are not served")
                continue
            eprops = resolver.resolve(event.get("Properties") or {})
            api_id = str(eprops.get("RestApiId") or IMPLICIT_API)
            api = apis.get(api_id, {})
            stage = str(api.get("StageName") or IMPLICIT_STAGE)
            binary.extend(str(t) for t in api.get("BinaryMediaTypes") or [])
            method = str(eprops.get("Method", "any")).upper()
            path = "/" + str(eprops.get("Path", "/")).strip("/")
            routes.append(
                Route(method=method, path=path, function=logical_id, stage=stage, api=api_id)
            )
    if not routes:
        raise TemplateError(f"{template_path}: no AWS::Serverless::Function has an Api event")
    # static resources win over parameterised ones, as in API Gateway
    routes.sort(key=lambda r: (not r.is_static, -len(r.path)))
    return StackSpec(
        functions=functions,
        routes=tuple(routes),
        binary_media_types=tuple(dict.fromkeys(binary)),
        parameters=dict(resolver.params),
        definitions=definitions,
        throttling=throttling,
        warnings=tuple(warnings),
    )
