"""SigV4 and IAM in front of moto: the AWS APIs moto serves refuse what AWS would refuse.

moto accepts any request, signed or not, with any key. :class:`MotoAuth` is WSGI middleware
that the moto process puts in front of everything it serves (the fast lane and moto's own
road alike), and that answers each request the way AWS's front door does:

1. **Which service** the request is for, decided as moto routes it: the ``X-Amz-Target`` of
   the DynamoDB, DynamoDB Streams and SQS JSON protocols, else moto's own inference
   (``DomainDispatcherApplication.infer_service_region_host``: the signed credential scope,
   the form body's ``Action``, the path). botocore's model of that service gives its protocol
   (how to answer an error), its signing name (the credential scope it must be signed for)
   and its operations.
2. **Who signed it**: the ``Authorization: AWS4-HMAC-SHA256`` header, or a presigned query
   (``X-Amz-Algorithm``), verified by :mod:`infra.local.awsauth.sigv4` against a
   :class:`~infra.local.awsauth.credential_store.CredentialStore` for the stack's region and the
   service's signing name, within 15 minutes of the server's clock (AWS's window).
   Unsigned, unknown key, wrong token, wrong signature, expired credentials: refused.
3. **What it asks for**: the operation mapped to its IAM action(s) and resource ARN(s)
   (:func:`permissions`): ``dynamodb:<Operation>`` on the table (or its index, or its stream;
   a transaction needs the item action on every table it names, a batch the batch action
   on each table), ``sqs:<Action>`` on the queue ARN from its URL (batch calls need the
   single action, as on AWS), S3's actions on the bucket or object ARN, IoT's on the policy,
   thing, certificate, thing group or rule ARN, CloudFormation's on the stack ARN, Lambda's
   on the function ARN; any other operation ``<signing name>:<Operation>`` on ``*``. REST
   operations are found from method and path with the service's botocore model.
4. **Whether it may**: every one of those permissions allowed by the credential's policy sets
   with :func:`infra.local.awsauth.iam_policy.is_allowed`, the evaluator the gateways use. The
   first one refused is answered with AWS's AccessDenied message ("User: <arn> is not
   authorized to perform: <action> on resource: <arn> because no identity-based policy
   allows the <action> action"). DynamoDB item permissions are evaluated with the condition
   keys AWS sets for them (``dynamodb:LeadingKeys``, ``dynamodb:Select``,
   ``dynamodb:ReturnValues``: :mod:`infra.local.motohost.dynamodb_conditions`), and the
   credential's policy variables (``${cognito-identity.amazonaws.com:sub}``).

DynamoDB answers browsers (CORS, :mod:`infra.local.motohost.dynamodb_cors`): its preflights
are answered here without a signature, and its answers (refusals too) name the origin.

Refusals take the shape of the service's protocol, so that botocore raises the
``ClientError`` code AWS would give (see :func:`refusal`): the JSON protocol (DynamoDB,
Streams) answers 400 with ``{"__type": "com.amazon.coral.service#<Code>Exception", ...}``;
SQS's JSON protocol is query-compatible and adds ``x-amzn-query-error: <QueryCode>;Sender``
(botocore takes the code from that header); the query protocol (CloudFormation, IAM)
answers 403 ``<ErrorResponse>`` XML; REST-JSON (IoT, Lambda) 403 with ``x-amzn-ErrorType``;
S3 ``<Error>`` XML with S3's own codes (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``,
``AccessDenied``...).

Decisions are cached per (access key, action, resource, condition keys) until the store
changes; the SigV4 signing key is cached per (secret, date, region, service) in
:mod:`infra.local.awsauth.sigv4`, as the SDKs do. moto's own endpoints (``/moto-api``,
instance metadata) are not AWS APIs: they need a signature whose policies allow
``moto:<path>`` (the developer's ``*`` does).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.iam_policy import Decision, evaluate
from infra.local.awsauth.sigv4 import SignatureError, verify_authorization_header, verify_presigned
from infra.local.motohost.dynamodb_conditions import (
    KeySchemas,
    batch_condition_keys,
    condition_keys,
)
from infra.local.motohost.dynamodb_cors import preflight, response_headers

__all__ = [
    "PARSED_JSON",
    "RAW_HEADERS",
    "MotoAuth",
    "Permission",
    "Refusal",
    "ServiceInfo",
    "permissions",
    "refusal",
    "service_info",
]

_log = logging.getLogger("tidings.moto.auth")

PARSED_JSON = "tidings.parsed_json"
"""environ key: the JSON body MotoAuth parsed (the fast lane does not parse it again)."""
RAW_HEADERS = "tidings.raw_headers"
"""environ key: the request's headers as received, ``[(name, value), ...]``."""

MAX_SKEW_S = 900.0
_TARGET_SERVICES = {
    "DynamoDB_20120810": "dynamodb",
    "DynamoDBStreams_20120810": "dynamodbstreams",
    "AmazonSQS": "sqs",
}
_BACKEND_TO_MODEL = {"awslambda": "lambda", "dynamodb_v20111205": "dynamodb"}
_MOTO = "moto"
_CORAL = "com.amazon.coral.service#"
_DECISION_CACHE_SIZE = 8192


# --- what a request is --------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceInfo:
    """What botocore's model says about the service a request is for."""

    name: str
    """botocore's service name (``dynamodb``, ``dynamodbstreams``, ``sqs``, ``s3``...), or
    ``moto`` for moto's own endpoints."""
    protocol: str
    """``json``, ``query``, ``rest-json``, ``rest-xml`` or ``moto``."""
    signing_name: str
    query_compatible: bool = False
    xml_namespace: str = ""
    target_prefix: str = ""
    model: Any = None


@dataclass(frozen=True)
class Permission:
    """One IAM action on one resource that a request needs, with the request's condition
    keys for that action (``dynamodb:LeadingKeys``...; see
    :mod:`~infra.local.motohost.dynamodb_conditions`)."""

    action: str
    resource: str
    context: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _with_context(permission: Permission, context: Mapping[str, Sequence[str]]) -> Permission:
    if not context:
        return permission
    frozen = tuple(sorted((key, tuple(values)) for key, values in context.items()))
    return Permission(permission.action, permission.resource, frozen)


_services: dict[str, ServiceInfo] = {}
_services_lock = threading.Lock()


def service_info(name: str) -> ServiceInfo:
    """The :class:`ServiceInfo` of botocore service ``name`` (cached)."""
    found = _services.get(name)
    if found is not None:
        return found
    if name == _MOTO:
        found = ServiceInfo(_MOTO, "moto", _MOTO)
    else:
        import botocore.session

        model = botocore.session.get_session().get_service_model(name)
        metadata = model.metadata
        namespace = metadata.get("xmlNamespace") or (
            f"https://{metadata.get('endpointPrefix', name)}.amazonaws.com/doc/"
            f"{metadata.get('apiVersion', '')}/"
        )
        if isinstance(namespace, dict):
            namespace = str(namespace.get("uri", ""))
        found = ServiceInfo(
            name=name,
            protocol=str(metadata.get("protocol", "json")),
            signing_name=str(model.signing_name or name),
            query_compatible="awsQueryCompatible" in metadata,
            xml_namespace=str(namespace),
            target_prefix=str(metadata.get("targetPrefix", "")),
            model=model,
        )
    with _services_lock:
        _services[name] = found
    return found


@dataclass
class _Request:
    """The parts of a request that the checks read."""

    method: str
    path: str
    raw_path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    environ: dict[str, Any]

    def header(self, name: str) -> str | None:
        key = "HTTP_" + name.upper().replace("-", "_")
        value = self.environ.get(key)
        return None if value is None else str(value)


# --- the middleware -----------------------------------------------------------------------


class Refusal(Exception):
    """A request AWS would refuse: ``kind`` is a :class:`~infra.local.awsauth.sigv4.SignatureError`
    code, ``missing`` (no signature at all), or ``access_denied``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


Response = tuple[int, list[tuple[str, str]], bytes]


class MotoAuth:
    """WSGI middleware: verifies and authorises every request before ``app`` sees it."""

    def __init__(
        self,
        app: Callable[..., Iterable[bytes]],
        credentials: CredentialStore,
        *,
        region: str,
        account_id: str,
        dispatcher: Any = None,
        max_skew_s: float = MAX_SKEW_S,
        key_schemas: KeySchemas | None = None,
    ) -> None:
        """``dispatcher`` is moto's ``DomainDispatcherApplication`` (its inference decides
        the service of requests that carry no known ``X-Amz-Target``); ``credentials`` the
        keys the stack issued, with their policies; ``key_schemas`` the tables' key schemas
        (for DynamoDB's condition keys; without it those keys are absent)."""
        self.app = app
        self.credentials = credentials
        self.region = region
        self.account_id = account_id
        self.dispatcher = dispatcher
        self.max_skew_s = max_skew_s
        self.key_schemas = key_schemas
        self._decisions: dict[Any, str | None] = {}
        credentials.add_listener(self._forget)

    def _forget(self, _key: str, _credential: StoredCredential | None) -> None:
        self._decisions = {}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Pass an allowed request on to the app; answer any other as AWS would.

        A CORS preflight for a JSON-protocol call (DynamoDB's) is answered here, unsigned, and
        DynamoDB's answers to a request with an ``Origin`` carry the CORS headers
        (:mod:`.dynamodb_cors`)."""
        answer = preflight(environ)
        if answer is None:
            stream = environ.get("wsgi.input")
            if isinstance(stream, io.BytesIO):
                body = stream.getvalue()
            else:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = stream.read(length) if (stream is not None and length > 0) else b""
                environ["wsgi.input"] = io.BytesIO(body)
            answer = self.check(environ, body)
            cors = response_headers(environ)
            if answer is None:
                if not cors:
                    return self.app(environ, start_response)

                def start_with_cors(status: str, headers: list[Any], *args: Any) -> Any:
                    # moto's own road adds flask-cors headers of its own: ours replace them
                    kept = [h for h in headers if not h[0].lower().startswith("access-control-")]
                    return start_response(status, [*kept, *cors], *args)

                return self.app(environ, start_with_cors)
            answer[1].extend(cors)
        status, headers, content = answer
        headers.append(("Content-Length", str(len(content))))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [content]

    def check(self, environ: dict[str, Any], body: bytes) -> Response | None:
        """``None`` if the request may go on, else the refusal to send."""
        request = _request(environ, body)
        try:
            service = self._service(request)
        except Exception as exc:  # moto's inference fails on some garbage: so would moto
            _log.debug("no service for %s %s: %r", request.method, request.path, exc)
            return _plain(400, "bad_request", "The request names no AWS service this serves.")
        try:
            credential = self._verify(request, service)
            needed = permissions(
                service,
                request,
                region=self.region,
                account_id=self.account_id,
                key_schemas=self.key_schemas,
            )
            for permission in needed:
                self._authorize(credential, permission)
        except Refusal as refused:
            return refusal(service, refused.kind, refused.message)
        return None

    # --- steps ----------------------------------------------------------------------------

    def _service(self, request: _Request) -> ServiceInfo:
        path = request.path
        if path.startswith(("/moto-api", "/latest/")) or path == "/favicon.ico":
            return service_info(_MOTO)
        target = request.header("X-Amz-Target") or ""
        name = _TARGET_SERVICES.get(target.partition(".")[0])
        if name is None:
            name = self._inferred(request)
        return service_info(name)

    def _inferred(self, request: _Request) -> str:
        """The service moto's dispatcher sends the request to (it routes by the signed
        credential scope, else by the form body's Action, else by the path)."""
        if self.dispatcher is None:
            return "s3"
        environ = dict(request.environ)
        environ["wsgi.input"] = io.BytesIO(request.body)
        host = self.dispatcher.infer_service_region_host(environ, request.path)
        backend = self.dispatcher.get_backend_for_host(host) if host else None
        backend = str(backend or "s3")
        if backend in ("moto_api", "instance_metadata"):
            return _MOTO
        return _BACKEND_TO_MODEL.get(backend, backend)

    def _verify(self, request: _Request, service: ServiceInfo) -> StoredCredential:
        authorization = request.header("Authorization")
        try:
            if authorization is not None:
                verified = verify_authorization_header(
                    request.method,
                    request.raw_path,
                    request.query,
                    request.headers,
                    request.body,
                    lookup=self.credentials.get,
                    region=self.region,
                    services=(service.signing_name,),
                    max_skew_s=self.max_skew_s,
                    s3_rules=service.name == "s3",
                )
            elif "X-Amz-Algorithm=" in request.query or "x-amz-algorithm=" in request.query:
                verified = verify_presigned(
                    request.method,
                    request.raw_path,
                    request.query,
                    request.headers,
                    lookup=self.credentials.get,
                    region=self.region,
                    services=(service.signing_name,),
                    max_skew_s=self.max_skew_s,
                    s3_rules=service.name == "s3",
                )
            else:
                raise Refusal("missing", "The request is not signed.")
        except SignatureError as exc:
            raise Refusal(exc.code, exc.message) from None
        return verified.credential

    def _authorize(self, credential: StoredCredential, permission: Permission) -> None:
        key = (credential.access_key_id, permission.action, permission.resource, permission.context)
        decisions = self._decisions
        if key in decisions:
            reason = decisions[key]
        else:
            reason = _denial_reason(credential, permission)
            if len(decisions) >= _DECISION_CACHE_SIZE:
                decisions = self._decisions = {}
            decisions[key] = reason
        if reason is not None:
            who = credential.arn or credential.principal
            raise Refusal(
                "access_denied",
                f"User: {who} is not authorized to perform: {permission.action} on resource: "
                f"{permission.resource} {reason}",
            )


def _denial_reason(credential: StoredCredential, permission: Permission) -> str | None:
    """``None`` if every policy set allows; else the end of AWS's AccessDenied sentence."""
    sets = credential.policy_sets
    if not sets:
        return f"because no identity-based policy allows the {permission.action} action"
    context = {key: list(values) for key, values in permission.context}
    for index, documents in enumerate(sets):
        decision = evaluate(
            documents, permission.action, permission.resource, credential.variables, context
        )
        kind = "identity-based" if index == 0 else "session"
        if decision is Decision.EXPLICIT_DENY:
            return f"with an explicit deny in an {kind} policy"
        if decision is Decision.IMPLICIT_DENY:
            return f"because no {kind} policy allows the {permission.action} action"
    return None


def _request(environ: dict[str, Any], body: bytes) -> _Request:
    raw_uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    raw_path = raw_uri.partition("?")[0] if raw_uri else quote(environ.get("PATH_INFO", "/"))
    headers = environ.get(RAW_HEADERS)
    if headers is None:
        headers = _headers_from_environ(environ)
    return _Request(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=str(environ.get("PATH_INFO") or "/"),
        raw_path=raw_path or "/",
        query=str(environ.get("QUERY_STRING", "")),
        headers=list(headers),
        body=body,
        environ=environ,
    )


def _headers_from_environ(environ: Mapping[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (key[5:].replace("_", "-").lower(), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            headers.append((name, str(environ[key])))
    return headers


# --- IAM actions and resources --------------------------------------------------------------


def permissions(
    service: ServiceInfo,
    request: Any,
    *,
    region: str,
    account_id: str,
    key_schemas: KeySchemas | None = None,
) -> list[Permission]:
    """The IAM permissions ``request`` needs (every one must be allowed).

    A DynamoDB permission carries the request's DynamoDB condition keys for it
    (:mod:`~infra.local.motohost.dynamodb_conditions`); ``dynamodb:LeadingKeys`` needs the
    tables' key schemas from ``key_schemas`` (without it, the key is absent)."""
    arns = _Arns(region, account_id)
    if service.protocol == "moto":
        return [Permission(f"moto:{request.path.strip('/') or 'index'}", "*")]
    operation, params = _operation(service, request)
    if operation is None:
        return [Permission(f"{service.signing_name}:*", "*")]
    if service.name == "dynamodb":
        return _dynamodb(operation, params, arns, key_schemas or _no_keys)
    mapper = _MAPPERS.get(service.name)
    if mapper is not None:
        return mapper(operation, params, arns)
    return [Permission(f"{service.signing_name}:{operation}", "*")]


def _operation(service: ServiceInfo, request: Any) -> tuple[str | None, dict[str, Any]]:
    """The operation's name and its parameters (JSON body, form + query, or REST path)."""
    if service.protocol == "json":
        target = request.header("X-Amz-Target") or ""
        prefix, _, operation = target.partition(".")
        if prefix != service.target_prefix or not operation:
            return None, {}
        document = request.environ.get(PARSED_JSON)
        if document is None:
            try:
                document = json.loads(request.body or b"{}")
            except (ValueError, RecursionError):
                document = {}
            if isinstance(document, dict):
                request.environ[PARSED_JSON] = document
        return operation, document if isinstance(document, dict) else {}
    if service.protocol == "query":
        params = dict(parse_qsl(request.query, keep_blank_values=True))
        content_type = request.header("Content-Type") or request.environ.get("CONTENT_TYPE", "")
        if "x-www-form-urlencoded" in str(content_type) and request.body:
            params.update(parse_qsl(request.body.decode("utf-8", "replace"), True))
        action = params.get("Action")
        return (action or None), params
    return _rest_operation(service, request)


_rest_routes: dict[str, list[tuple[str, list[str], tuple[str, ...], str]]] = {}


def _rest_operation(service: ServiceInfo, request: Any) -> tuple[str | None, dict[str, Any]]:
    """The REST operation whose method, path template and literal query keys fit best."""
    routes = _rest_routes.get(service.name)
    if routes is None:
        routes = []
        for name in service.model.operation_names:
            http = service.model.operation_model(name).http
            uri = str(http.get("requestUri", "/"))
            path, _, literal_query = uri.partition("?")
            # S3's models name the operation in an ``x-id`` that botocore does not send
            literal = tuple(
                key
                for key in (p.partition("=")[0] for p in literal_query.split("&") if p)
                if key != "x-id"
            )
            segments = [s for s in path.split("/") if s]
            routes.append((str(http.get("method", "GET")).upper(), segments, literal, name))
        _rest_routes[service.name] = routes
    query = dict(parse_qsl(request.query, keep_blank_values=True))
    segments = [unquote(s) for s in request.raw_path.split("/") if s]
    best: tuple[tuple[int, int], str, dict[str, Any]] | None = None
    for method, template, literal, name in routes:
        if method != request.method or not all(key in query for key in literal):
            continue
        if "x-id" in query and query["x-id"] != name:
            continue
        bound = _match(template, segments)
        if bound is None:
            continue
        score = (len(literal), sum(1 for part in template if not part.startswith("{")))
        if best is None or score > best[0]:
            best = (score, name, bound)
    if best is None:
        return None, {}
    return best[1], {**query, **best[2]}


def _match(template: Sequence[str], segments: Sequence[str]) -> dict[str, str] | None:
    bound: dict[str, str] = {}
    for index, part in enumerate(template):
        if part.startswith("{") and part.endswith("+}"):
            rest = segments[index:]
            if not rest:
                return None
            bound[part[1:-2]] = "/".join(rest)
            return bound
        if index >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            bound[part[1:-1]] = segments[index]
        elif part != segments[index]:
            return None
    return bound if len(template) == len(segments) else None


@dataclass(frozen=True)
class _Arns:
    region: str
    account_id: str

    def dynamodb_table(self, name: Any) -> str:
        text = str(name)
        if text.startswith("arn:"):
            return text
        return f"arn:aws:dynamodb:{self.region}:{self.account_id}:table/{text}"

    def of(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"


Mapper = Callable[[str, dict[str, Any], _Arns], list[Permission]]

_TRANSACT_WRITE = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_PARTIQL_TABLE = {
    "SELECT": re.compile(r"\bFROM\s+(\"[^\"]+\"|[A-Za-z0-9_.-]+)", re.I),
    "DELETE": re.compile(r"\bFROM\s+(\"[^\"]+\"|[A-Za-z0-9_.-]+)", re.I),
    "INSERT": re.compile(r"\bINTO\s+(\"[^\"]+\"|[A-Za-z0-9_.-]+)", re.I),
    "UPDATE": re.compile(r"^\s*UPDATE\s+(\"[^\"]+\"|[A-Za-z0-9_.-]+)", re.I),
}


def _partiql(statement: str) -> tuple[str, str | None]:
    """PartiQL's IAM verb (``Select``, ``Insert``, ``Update``, ``Delete``) and table name."""
    words = statement.split(None, 1)
    verb = words[0].upper() if words else "SELECT"
    if verb == "EXISTS":  # ExecuteTransaction's condition check reads
        verb = "SELECT"
    pattern = _PARTIQL_TABLE.get(verb)
    if pattern is None:
        return "Select", None
    found = pattern.search(statement)
    name = found.group(1).strip('"').split(".", 1)[0] if found else None
    return verb.capitalize(), name


def _no_keys(_table: str, _index: str | None) -> None:
    return None


def _dynamodb(
    operation: str, params: dict[str, Any], arns: _Arns, key_schemas: KeySchemas = _no_keys
) -> list[Permission]:
    """DynamoDB: the table (or index) each part of the call touches, with the part's
    condition keys when ``key_schemas`` knows the table."""

    def table(name: Any) -> str:
        return arns.dynamodb_table(name)

    if operation == "TransactWriteItems":
        needed = []
        for item in params.get("TransactItems") or []:
            for kind, action in _TRANSACT_WRITE.items():
                if isinstance(item, dict) and isinstance(item.get(kind), dict):
                    part = item[kind]
                    needed.append(
                        _with_context(
                            Permission(f"dynamodb:{action}", table(part.get("TableName"))),
                            condition_keys(kind, part, key_schemas),
                        )
                    )
        return needed or [Permission("dynamodb:TransactWriteItems", "*")]
    if operation == "TransactGetItems":
        needed = [
            _with_context(
                Permission("dynamodb:GetItem", table(item["Get"].get("TableName"))),
                condition_keys("Get", item["Get"], key_schemas),
            )
            for item in params.get("TransactItems") or []
            if isinstance(item, dict) and isinstance(item.get("Get"), dict)
        ]
        return needed or [Permission("dynamodb:TransactGetItems", "*")]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        items = params.get("RequestItems")
        tables = list(items) if isinstance(items, dict) else []
        return [
            _with_context(
                Permission(f"dynamodb:{operation}", table(t)),
                batch_condition_keys(operation, str(t), items[t], key_schemas)
                if isinstance(items, dict)
                else {},
            )
            for t in tables
        ] or [Permission(f"dynamodb:{operation}", "*")]
    if operation in ("ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"):
        statements = (
            [params]
            if operation == "ExecuteStatement"
            else [s for s in params.get("Statements") or params.get("TransactStatements") or []]
        )
        needed = []
        for statement in statements:
            text = str(statement.get("Statement", "")) if isinstance(statement, dict) else ""
            verb, name = _partiql(text)
            resource = table(name) if name else "*"
            needed.append(Permission(f"dynamodb:PartiQL{verb}", resource))
        return needed or [Permission(f"dynamodb:{operation}", "*")]
    action = f"dynamodb:{operation}"
    name = params.get("TableName")
    if name is None:
        name = params.get("ResourceArn") or params.get("TableArn")
    if name is None:
        return [Permission(action, "*")]
    resource = table(name)
    if operation in ("Query", "Scan") and params.get("IndexName"):
        resource = f"{resource}/index/{params['IndexName']}"
    return [
        _with_context(Permission(action, resource), condition_keys(operation, params, key_schemas))
    ]


def _dynamodb_streams(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """DynamoDB Streams: IAM's ``dynamodb:`` actions on the stream ARN."""
    arn = params.get("StreamArn")
    if arn is None and isinstance(params.get("ShardIterator"), str):
        arn = params["ShardIterator"].split("|", 1)[0]  # an iterator names its stream
    return [Permission(f"dynamodb:{operation}", str(arn) if arn else "*")]


_SQS_BATCH = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """SQS: the queue ARN, from the queue URL (``…/<account>/<name>``) or the queue name."""
    action = f"sqs:{_SQS_BATCH.get(operation, operation)}"
    url = params.get("QueueUrl")
    if isinstance(url, str) and url:
        parts = [p for p in url.split("?")[0].split("/") if p]
        if len(parts) >= 2:
            return [Permission(action, f"arn:aws:sqs:{arns.region}:{parts[-2]}:{parts[-1]}")]
    name = params.get("QueueName")
    if isinstance(name, str) and name:
        owner = params.get("QueueOwnerAWSAccountId") or arns.account_id
        return [Permission(action, f"arn:aws:sqs:{arns.region}:{owner}:{name}")]
    return [Permission(action, "*")]


_S3_ACTIONS = {
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "ListBuckets": "ListAllMyBuckets",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "CopyObject": "PutObject",
    "DeleteObjects": "DeleteObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "ListObjectVersions": "ListBucketVersions",
    "GetObjectAcl": "GetObjectAcl",
    "DeleteBucketPolicy": "DeleteBucketPolicy",
}


def _s3(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """S3: the object ARN for object calls, the bucket ARN for bucket calls."""
    action = f"s3:{_S3_ACTIONS.get(operation, operation)}"
    bucket = params.get("Bucket")
    if not bucket:
        return [Permission(action, "*")]
    key = params.get("Key")
    resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    return [Permission(action, resource)]


_IOT_RESOURCES = (
    ("policyName", "policy/{}"),
    ("thingName", "thing/{}"),
    ("certificateId", "cert/{}"),
    ("thingGroupName", "thinggroup/{}"),
    ("ruleName", "rule/{}"),
    ("roleAlias", "rolealias/{}"),
)


def _iot(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """The IoT control plane: the policy, thing, certificate, group or rule the path names."""
    for name, pattern in _IOT_RESOURCES:
        value = params.get(name)
        if isinstance(value, str) and value:
            return [Permission(f"iot:{operation}", arns.of("iot", pattern.format(value)))]
    return [Permission(f"iot:{operation}", "*")]


def _cloudformation(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """CloudFormation: the stack ARN (any stack id of that name)."""
    name = params.get("StackName")
    if isinstance(name, str) and name:
        resource = name if name.startswith("arn:") else arns.of("cloudformation", f"stack/{name}/*")
        return [Permission(f"cloudformation:{operation}", resource)]
    return [Permission(f"cloudformation:{operation}", "*")]


_LAMBDA_ACTIONS = {"Invoke": "InvokeFunction"}
_LAMBDA_SUFFIX = re.compile(r"[0-9]{8}$")


def _lambda(operation: str, params: dict[str, Any], arns: _Arns) -> list[Permission]:
    """Lambda: the function ARN."""
    action = f"lambda:{_LAMBDA_ACTIONS.get(operation, _LAMBDA_SUFFIX.sub('', operation))}"
    name = params.get("FunctionName")
    if isinstance(name, str) and name:
        resource = name if name.startswith("arn:") else arns.of("lambda", f"function:{name}")
        return [Permission(action, resource)]
    return [Permission(action, "*")]


_MAPPERS: dict[str, Mapper] = {
    "dynamodb": _dynamodb,
    "dynamodbstreams": _dynamodb_streams,
    "sqs": _sqs,
    "s3": _s3,
    "iot": _iot,
    "cloudformation": _cloudformation,
    "lambda": _lambda,
}


# --- refusals, in each protocol's shape -------------------------------------------------------

# kind → (JSON/REST-JSON code, query code, S3 code, S3 status, AWS's message or None: ours)
_CODES: dict[str, tuple[str, str, str, int, str | None]] = {
    "missing": (
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "AccessDenied",
        403,
        "Request is missing Authentication Token",
    ),
    "malformed": ("IncompleteSignatureException", "IncompleteSignature", "AccessDenied", 403, None),
    "unknown_key": (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        403,
        "The security token included in the request is invalid.",
    ),
    "invalid_token": (
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidToken",
        400,
        "The security token included in the request is invalid.",
    ),
    "signature_mismatch": (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method. "
        "Consult the service documentation for details.",
    ),
    "wrong_region": (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        400,
        None,
    ),
    "wrong_service": (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthorizationHeaderMalformed",
        400,
        None,
    ),
    "request_expired": (
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AccessDenied",
        403,
        None,
    ),
    "expired_credentials": (
        "ExpiredTokenException",
        "ExpiredToken",
        "ExpiredToken",
        400,
        "The security token included in the request is expired",
    ),
    "access_denied": ("AccessDeniedException", "AccessDenied", "AccessDenied", 403, None),
}
_S3_MESSAGES = {
    "missing": "Access Denied",
    "unknown_key": "The AWS Access Key Id you provided does not exist in our records.",
    "invalid_token": "The provided token is malformed or otherwise invalid.",
    "signature_mismatch": (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    ),
    "expired_credentials": "The provided token has expired.",
}


def refusal(service: ServiceInfo, kind: str, message: str) -> Response:
    """AWS's answer to a refused request, in the shape of ``service``'s protocol."""
    json_code, query_code, s3_code, s3_status, fixed = _CODES.get(kind, _CODES["malformed"])
    text = fixed or message
    request_id = str(uuid.uuid4())
    if service.protocol == "rest-xml":
        s3_text = _S3_MESSAGES.get(kind, message)
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            f"<Code>{escape(s3_code)}</Code><Message>{escape(s3_text)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        )
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        return s3_status, headers, body.encode("utf-8")
    if service.protocol == "query":
        status = 400 if kind in ("malformed",) else 403
        body = (
            f'<ErrorResponse xmlns="{escape(service.xml_namespace)}"><Error><Type>Sender</Type>'
            f"<Code>{escape(query_code)}</Code><Message>{escape(text)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return (
            status,
            [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)],
            (body.encode("utf-8")),
        )
    if service.protocol == "rest-json":
        key = "Message" if kind == "access_denied" else "message"
        headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", f"{json_code}:"),
            ("x-amzn-RequestId", request_id),
        ]
        return 403, headers, json.dumps({key: text}).encode("utf-8")
    if service.protocol == "moto":
        return _plain(403, query_code, text)
    # JSON protocol: DynamoDB and Streams answer 400; a query-compatible service (SQS)
    # also names the query protocol's code, which botocore reports
    key = "Message" if kind == "access_denied" else "message"
    headers = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("x-amzn-RequestId", request_id),
    ]
    status = 400
    if service.query_compatible:
        headers.append(("x-amzn-query-error", f"{query_code};Sender"))
        status = 400 if kind == "malformed" else 403
    body_json = json.dumps({"__type": _CORAL + json_code, key: text})
    return status, headers, body_json.encode("utf-8")


def _plain(status: int, code: str, message: str) -> Response:
    body = json.dumps({"error": code, "message": message}).encode("utf-8")
    return status, [("Content-Type", "application/json")], body


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden"}
