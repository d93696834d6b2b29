"""Reading ``infra/template.yaml`` the way CloudFormation does, for the local stack.

The local stack deploys the template to moto's CloudFormation (tables, queues, roles,
functions, mappings, IoT policies, API resources) and then runs, from the same template, what
moto cannot: the functions' code, the stream pump, the API's data plane and the identity pool.
This module loads the YAML (short-form tags included), inlines the files it includes with
``AWS::Include`` (the REST API's OpenAPI ``Body``, ``infra/openapi.yaml``), resolves intrinsic
functions against the deployed stack's physical ids, and gives typed views of the resources
those parts need: the API's methods come from that OpenAPI document, as API Gateway imports
them (or from ``AWS::ApiGateway::Method`` resources, for a template that declares them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.data_files import data_file
from infra.local.apigateway.service import GatewayResponse, MockResponse

__all__ = [
    "ApiMethod",
    "EventSourceMapping",
    "FunctionDef",
    "Resolver",
    "Template",
    "TemplateError",
    "load_template",
]


class TemplateError(ValueError):
    """The template cannot be read or uses something the local stack does not support."""


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(name: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    return construct


for _short, _long in {
    "Ref": "Ref",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Condition": "Condition",
    "FindInMap": "Fn::FindInMap",
}.items():
    _CfnLoader.add_constructor(f"!{_short}", _tag(_long))


@dataclass(frozen=True)
class FunctionDef:
    """An ``AWS::Lambda::Function``."""

    logical_id: str
    handler: str
    role: Any
    environment: Mapping[str, Any]
    timeout_s: float
    memory_mb: int
    reserved_concurrency: Any
    """``ReservedConcurrentExecutions`` as written (a number, or an intrinsic such as
    ``!Ref ChannelsConcurrency`` to resolve); None when the function has no reservation."""


@dataclass(frozen=True)
class EventSourceMapping:
    """An ``AWS::Lambda::EventSourceMapping`` from a DynamoDB stream."""

    logical_id: str
    function: str  # logical id of the function
    table: str  # logical id of the table whose stream it reads
    batch_size: int = 100
    batching_window_s: float = 0.0
    bisect_on_error: bool = False
    maximum_retry_attempts: int = -1
    maximum_record_age_s: int = -1
    report_batch_item_failures: bool = False
    on_failure_destination: Any = None
    starting_position: str = "LATEST"
    parallelization_factor: int = 1


@dataclass(frozen=True)
class ApiMethod:
    """A method of the REST API with its full resource path: an ``AWS::ApiGateway::Method``,
    or an operation of the API's OpenAPI ``Body`` (``logical_id`` is then
    ``<RestApi> <METHOD> <path>``)."""

    logical_id: str
    http_method: str
    resource_path: str
    authorization: str
    function: str | None  # logical id of the proxied function
    mock: MockResponse | None = None
    """A ``MOCK`` integration's static answer (the CORS preflights), its values resolved."""


@dataclass
class Template:
    """A loaded template."""

    body: dict[str, Any]
    path: Path | None = None
    resources: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        resources = self.body.get("Resources")
        if not isinstance(resources, dict) or not resources:
            raise TemplateError("the template has no Resources")
        self.resources = resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Logical id → resource for every resource of ``resource_type``."""
        return {k: v for k, v in self.resources.items() if v.get("Type") == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        """A resource's Properties (empty if it has none)."""
        props = self.resources[logical_id].get("Properties") or {}
        assert isinstance(props, dict)
        return props

    def parameter_defaults(self) -> dict[str, str]:
        """Parameter name → default value (as a string)."""
        out = {}
        for name, spec in (self.body.get("Parameters") or {}).items():
            if "Default" in spec:
                out[name] = str(spec["Default"])
        return out

    def tables(self) -> dict[str, dict[str, Any]]:
        """DynamoDB tables by logical id."""
        return {k: self.properties(k) for k in self.of_type("AWS::DynamoDB::Table")}

    def functions(self) -> dict[str, FunctionDef]:
        """Lambda functions by logical id."""
        out = {}
        for logical_id in self.of_type("AWS::Lambda::Function"):
            props = self.properties(logical_id)
            env = (props.get("Environment") or {}).get("Variables") or {}
            out[logical_id] = FunctionDef(
                logical_id=logical_id,
                handler=str(props.get("Handler", "")),
                role=props.get("Role"),
                environment=env,
                timeout_s=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                reserved_concurrency=props.get("ReservedConcurrentExecutions"),
            )
        return out

    def event_source_mappings(self) -> list[EventSourceMapping]:
        """Stream mappings, with the table and function they connect."""
        out = []
        for logical_id in self.of_type("AWS::Lambda::EventSourceMapping"):
            props = self.properties(logical_id)
            function = _logical_ref(props.get("FunctionName"), logical_id, "FunctionName")
            source = props.get("EventSourceArn")
            if not (
                isinstance(source, dict)
                and "Fn::GetAtt" in source
                and source["Fn::GetAtt"][1] == "StreamArn"
            ):
                raise TemplateError(
                    f"{logical_id}: EventSourceArn must be !GetAtt <Table>.StreamArn"
                )
            destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            out.append(
                EventSourceMapping(
                    logical_id=logical_id,
                    function=function,
                    table=str(source["Fn::GetAtt"][0]),
                    batch_size=int(props.get("BatchSize", 100)),
                    batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    maximum_record_age_s=int(props.get("MaximumRecordAgeInSeconds", -1)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    on_failure_destination=destination,
                    starting_position=str(props.get("StartingPosition", "LATEST")),
                    parallelization_factor=int(props.get("ParallelizationFactor", 1)),
                )
            )
        return out

    def _defaults_resolver(self) -> Resolver:
        """Resolves ``!Ref <Parameter>`` to its default: for values read without a stack."""
        return Resolver(self.parameter_defaults(), {}, {}, {})

    def api_methods(self, resolve: Callable[[Any], Any] | None = None) -> list[ApiMethod]:
        """REST API methods with their paths rebuilt from the resource tree.

        ``resolve`` resolves the ``MOCK`` integrations' header values (default: parameters'
        defaults).
        """
        resolve = resolve or self._defaults_resolver()
        resources = self.of_type("AWS::ApiGateway::Resource")

        def path_of(ref: Any) -> str:
            if isinstance(ref, dict) and "Fn::GetAtt" in ref:
                return ""  # the RestApi's root resource
            logical = _logical_ref(ref, "ApiGateway", "ResourceId")
            props = self.properties(logical)
            if logical not in resources:
                raise TemplateError(f"{logical} is not an AWS::ApiGateway::Resource")
            return path_of(props.get("ParentId")) + "/" + str(props["PathPart"])

        out = []
        for api_id in self.of_type("AWS::ApiGateway::RestApi"):
            body = self.properties(api_id).get("Body")
            if isinstance(body, dict):
                out.extend(_document_methods(api_id, body, resolve, self._stage_variables(api_id)))
        for logical_id in self.of_type("AWS::ApiGateway::Method"):
            props = self.properties(logical_id)
            integration = props.get("Integration") or {}
            function = None
            uri = integration.get("Uri")
            if isinstance(uri, dict) and "Fn::Sub" in uri:
                text = uri["Fn::Sub"] if isinstance(uri["Fn::Sub"], str) else uri["Fn::Sub"][0]
                start = text.find("functions/${")
                if start >= 0:
                    function = text[start + len("functions/${") :].split(".", 1)[0].split("}")[0]
            out.append(
                ApiMethod(
                    logical_id=logical_id,
                    http_method=str(props.get("HttpMethod", "ANY")),
                    resource_path=path_of(props.get("ResourceId")) or "/",
                    authorization=str(props.get("AuthorizationType", "NONE")),
                    function=function,
                    mock=_mock_response(logical_id, props, resolve)
                    if integration.get("Type") == "MOCK"
                    else None,
                )
            )
        return out

    def _stage_variables(self, api_id: str) -> dict[str, Any]:
        """The variables of the API's stage (unresolved); {} if it has no stage."""
        for logical_id in self.of_type("AWS::ApiGateway::Stage"):
            props = self.properties(logical_id)
            if props.get("RestApiId") == {"Ref": api_id}:
                return dict(props.get("Variables") or {})
        return {}

    def gateway_responses(
        self, resolve: Callable[[Any], Any] | None = None
    ) -> dict[str, GatewayResponse]:
        """The API's customised gateway responses by response type (``INTEGRATION_FAILURE``).

        ``resolve`` resolves header values such as ``!Sub "'${AllowedOrigins}'"`` (default:
        parameters' defaults).
        """
        resolve = resolve or self._defaults_resolver()
        out = {}
        for logical_id in self.of_type("AWS::ApiGateway::GatewayResponse"):
            props = self.properties(logical_id)
            parameters = props.get("ResponseParameters") or {}
            headers = _static_headers(logical_id, parameters, "gatewayresponse.header.", resolve)
            templates = props.get("ResponseTemplates") or {}
            status = props.get("StatusCode")
            response_type = str(props.get("ResponseType", ""))
            out[response_type] = GatewayResponse(
                response_type=response_type,
                status_code=int(status) if status is not None else None,
                headers=headers,
                body=templates.get("application/json"),
            )
        return out

    def stage_throttling(self) -> tuple[float, int]:
        """(rate limit, burst limit) from the stage's ``/*`` method settings; (0, 0) if none."""
        for logical_id in self.of_type("AWS::ApiGateway::Stage"):
            for setting in self.properties(logical_id).get("MethodSettings") or []:
                if setting.get("ResourcePath") in ("/*", "*") or setting.get("HttpMethod") == "*":
                    return (
                        float(setting.get("ThrottlingRateLimit", 0)),
                        int(setting.get("ThrottlingBurstLimit", 0)),
                    )
        return 0.0, 0

    def create_table(self, dynamodb: Any, logical_id: str, name: str) -> None:
        """Create table ``logical_id`` as the template declares it, named ``name``.

        Keys, attribute definitions, indexes, billing, stream and TTL come from the template,
        so a test or benchmark table cannot drift from what is deployed.
        """
        props = self.tables()[logical_id]
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        for key in ("GlobalSecondaryIndexes", "StreamSpecification"):
            if key in props:
                request[key] = props[key]
        if "StreamSpecification" in request:
            request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        dynamodb.create_table(**request)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )

    def role_policies(self, logical_id: str) -> list[Any]:
        """The inline policy documents of an ``AWS::IAM::Role`` (unresolved)."""
        props = self.properties(logical_id)
        return [p["PolicyDocument"] for p in props.get("Policies") or []]


def _static_headers(
    logical_id: str, parameters: Mapping[str, Any], prefix: str, resolve: Callable[[Any], Any]
) -> dict[str, str]:
    """Header name → value from ``<prefix><Name>: "'value'"`` mappings (values resolved)."""
    headers = {}
    for name, value in parameters.items():
        try:
            text = str(resolve(value))
        except TemplateError:
            text = str(value)
        quoted = len(text) >= 2 and text[0] == text[-1] == "'"
        if not name.startswith(prefix) or not quoted:
            raise TemplateError(
                f"{logical_id}: the local stack supports only static header values "
                f"({prefix}<Name>: \"'value'\"), not {name}: {value}"
            )
        headers[name[len(prefix) :]] = text[1:-1]
    return headers


def _mock_response(
    logical_id: str, props: Mapping[str, Any], resolve: Callable[[Any], Any]
) -> MockResponse:
    """A ``MOCK`` integration's default integration response, checked as API Gateway checks
    it: every header it sets must be declared in the method response of its status."""
    integration = props.get("Integration") or {}
    defaults = [
        r for r in integration.get("IntegrationResponses") or [] if not r.get("SelectionPattern")
    ]
    if len(defaults) != 1:
        raise TemplateError(
            f"{logical_id}: a MOCK integration needs exactly one integration response without "
            "a SelectionPattern (the local stack answers with it)"
        )
    (chosen,) = defaults
    status = str(chosen.get("StatusCode", ""))
    prefix = "method.response.header."
    headers = _static_headers(logical_id, chosen.get("ResponseParameters") or {}, prefix, resolve)
    declared: set[str] = set()
    for method_response in props.get("MethodResponses") or []:
        if str(method_response.get("StatusCode")) == status:
            declared |= {
                name[len(prefix) :].lower()
                for name in method_response.get("ResponseParameters") or {}
                if name.startswith(prefix)
            }
    undeclared = sorted(name for name in headers if name.lower() not in declared)
    if undeclared or not status.isdigit():
        raise TemplateError(
            f"{logical_id}: its integration response {status or '(no StatusCode)'} sets "
            f"headers its method response does not declare: {', '.join(undeclared)}"
            if undeclared
            else f"{logical_id}: its integration response needs a numeric StatusCode"
        )
    body = (chosen.get("ResponseTemplates") or {}).get("application/json") or ""
    return MockResponse(int(status), headers, str(body))


_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
_FUNCTION_ARN = "functions/${"


def _document_methods(
    api_id: str,
    document: Mapping[str, Any],
    resolve: Callable[[Any], Any],
    stage_variables: Mapping[str, Any] | None = None,
) -> list[ApiMethod]:
    """The methods an OpenAPI ``Body`` gives the API, as API Gateway imports them: the path
    is the resource, ``x-amazon-apigateway-integration`` the integration (``aws_proxy`` to
    the function its ``Fn::Sub`` URI names, directly or through a stage variable the API's
    stage sets with ``!Ref <Function>``, or ``mock``), and a security requirement whose
    scheme has ``x-amazon-apigateway-authtype: awsSigv4`` makes it ``AWS_IAM``."""
    if not isinstance(document.get("paths"), dict):
        raise TemplateError(f"{api_id}: its Body has no OpenAPI paths")
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    sigv4 = {
        name
        for name, scheme in schemes.items()
        if str(scheme.get("x-amazon-apigateway-authtype", "")).lower() == "awssigv4"
    }
    default_security = document.get("security") or []
    variables = stage_variables or {}
    out = []
    for path, item in document["paths"].items():
        for method, operation in (item or {}).items():
            if method not in _HTTP_METHODS:
                continue
            where = f"{api_id} {method.upper()} {path}"
            integration = operation.get("x-amazon-apigateway-integration")
            if not isinstance(integration, dict):
                raise TemplateError(f"{where}: no x-amazon-apigateway-integration")
            security = operation.get("security", default_security)
            signed = any(name in sigv4 for requirement in security for name in requirement)
            kind = str(integration.get("type", "")).lower()
            function = None
            mock = None
            if kind == "aws_proxy":
                function = _integration_function(where, integration.get("uri"), variables)
            elif kind == "mock":
                mock = _document_mock(where, document, operation, integration, resolve)
            else:
                raise TemplateError(f"{where}: the local stack serves aws_proxy and mock only")
            out.append(
                ApiMethod(
                    logical_id=where,
                    http_method=method.upper(),
                    resource_path=path,
                    authorization="AWS_IAM" if signed else "NONE",
                    function=function,
                    mock=mock,
                )
            )
    return out


def _integration_function(where: str, uri: Any, stage_variables: Mapping[str, Any]) -> str:
    """The logical id of the function an ``aws_proxy`` URI names: ``${Function.Arn}``, or
    ``${!stageVariables.<name>}`` where the stage sets ``<name>: !Ref Function``."""
    text = uri.get("Fn::Sub") if isinstance(uri, dict) else None
    if isinstance(text, list):
        text = text[0]
    variable = re.search(r"\$\{!stageVariables\.([A-Za-z0-9_]+)\}", text or "")
    if variable is not None:
        value = stage_variables.get(variable.group(1))
        if value is None:
            raise TemplateError(
                f"{where}: the stage sets no variable {variable.group(1)!r} for its function"
            )
        return _logical_ref(value, where, f"the stage variable {variable.group(1)}")
    start = text.find(_FUNCTION_ARN) if isinstance(text, str) else -1
    if start < 0:
        raise TemplateError(
            f"{where}: the integration's uri must be Fn::Sub "
            '"arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/'
            '${<Function>.Arn}/invocations"'
        )
    assert isinstance(text, str)
    return text[start + len(_FUNCTION_ARN) :].split(".", 1)[0].split("}")[0]


def _document_mock(
    where: str,
    document: Mapping[str, Any],
    operation: Mapping[str, Any],
    integration: Mapping[str, Any],
    resolve: Callable[[Any], Any],
) -> MockResponse:
    """A ``mock`` integration's default response, checked as API Gateway checks it: every
    header it sets is declared in the operation's response of that status."""
    default = (integration.get("responses") or {}).get("default")
    if not isinstance(default, dict):
        raise TemplateError(f"{where}: a mock integration needs a default response")
    status = str(default.get("statusCode", ""))
    prefix = "method.response.header."
    headers = _static_headers(where, default.get("responseParameters") or {}, prefix, resolve)
    response = _local_ref(document, (operation.get("responses") or {}).get(status) or {})
    declared = {name.lower() for name in response.get("headers") or {}}
    undeclared = sorted(name for name in headers if name.lower() not in declared)
    if undeclared or not status.isdigit():
        raise TemplateError(
            f"{where}: its mock response {status or '(no statusCode)'} sets headers its "
            f"operation's responses do not declare: {', '.join(undeclared)}"
            if undeclared
            else f"{where}: its mock response needs a numeric statusCode"
        )
    body = (default.get("responseTemplates") or {}).get("application/json") or ""
    return MockResponse(int(status), headers, str(body))


def _local_ref(document: Mapping[str, Any], value: Mapping[str, Any]) -> Mapping[str, Any]:
    """``value``, or what its ``$ref`` (``#/components/...``) names in ``document``."""
    ref = value.get("$ref")
    if not isinstance(ref, str):
        return value
    target: Any = document
    for part in ref.removeprefix("#/").split("/"):
        target = target.get(part) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise TemplateError(f"the OpenAPI reference {ref} names nothing in the document")
    return target


def _include(value: Any, base: Path) -> Any:
    """``value`` with every ``Fn::Transform`` ``AWS::Include`` of a local file replaced by
    that file's content. The path is relative to the template, as ``aws cloudformation
    package`` takes it; a copy of the template elsewhere (a test's edited copy) that has no
    such file beside it includes the ``infra`` package's file of that name. An ``s3://``
    location is left to CloudFormation."""
    if isinstance(value, list):
        return [_include(item, base) for item in value]
    if not isinstance(value, dict):
        return value
    transform = value.get("Fn::Transform") if len(value) == 1 else None
    if isinstance(transform, dict) and transform.get("Name") == "AWS::Include":
        location = str((transform.get("Parameters") or {}).get("Location", ""))
        if location and "://" not in location:
            path = base / location
            if not path.exists() and (data_file(location)).exists():
                path = data_file(location)
            try:
                included = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)
            except (OSError, yaml.YAMLError) as exc:
                raise TemplateError(f"cannot read {path} (AWS::Include): {exc}") from exc
            return included
    return {key: _include(item, base) for key, item in value.items()}


def _logical_ref(value: Any, where: str, what: str) -> str:
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    raise TemplateError(f"{where}: {what} must be a !Ref or !GetAtt to a resource in the template")


def load_template(path: str | Path) -> Template:
    """Load a CloudFormation YAML template (short-form intrinsic tags supported)."""
    try:
        body = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_CfnLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot read template {path}: {exc}") from exc
    if not isinstance(body, dict):
        raise TemplateError(f"template {path} is not a mapping")
    return Template(_include(body, Path(path).parent), Path(path))


@dataclass
class Resolver:
    """Resolves intrinsic functions against a deployed stack."""

    parameters: Mapping[str, str]
    physical_ids: Mapping[str, str]
    attributes: Mapping[tuple[str, str], str]
    pseudo: Mapping[str, str]

    def __call__(self, value: Any) -> Any:
        """Resolve ``value`` recursively."""
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(str(arg))
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self._getatt(str(logical), str(attr))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                separator, items = arg
                return str(separator).join(str(self(i)) for i in self(items))
            if key == "Fn::Select":
                index, items = arg
                return self(items)[int(self(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self(text)).split(str(separator))
            if key.startswith("Fn::"):
                raise TemplateError(f"the local stack does not support {key} here")
        return {k: self(v) for k, v in value.items()}

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.physical_ids:
            return self.physical_ids[name]
        raise TemplateError(f"!Ref {name}: no such parameter or resource in the stack")

    def _getatt(self, logical: str, attr: str) -> str:
        try:
            return self.attributes[(logical, attr)]
        except KeyError:
            raise TemplateError(
                f"!GetAtt {logical}.{attr} is not known to the local stack"
            ) from None

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, extra = str(arg[0]), {k: str(self(v)) for k, v in arg[1].items()}
        else:
            text, extra = str(arg), {}
        out = []
        i = 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            out.append(text[i:start])
            end = text.index("}", start)
            name = text[start + 2 : end]
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in extra:
                out.append(extra[name])
            elif "." in name and not name.startswith("AWS::"):
                logical, attr = name.split(".", 1)
                out.append(self._getatt(logical, attr))
            else:
                out.append(self._ref(name))
            i = end + 1
        return "".join(out)
