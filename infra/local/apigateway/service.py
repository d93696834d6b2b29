"""A local API Gateway (REST, Lambda proxy integration) for the template's routes.

It does what API Gateway does in front of Tidings' functions: matches the request to a
resource (``{param}`` and greedy ``{param+}``), verifies SigV4 (``execute-api``) on
``AWS_IAM`` methods and checks the caller's IAM policy allows ``execute-api:Invoke``,
applies the stage's throttling, builds the same proxy event (with
``requestContext.identity.cognitoIdentityId`` for Cognito credentials, and ``userArn`` the
caller's ARN: ``arn:aws:sts::<account>:assumed-role/<role>/<session>`` for a role's session,
the devices' included) and turns the function's answer into the HTTP response. Errors of
its own are JSON ``{"error", "message"}`` with API Gateway's ``x-amzn-ErrorType`` header.

A function that raises, times out or answers a malformed proxy response is a 502, as on
AWS. A function that Lambda refuses to run (throttled: its reserved concurrency, or the
account's, is in use) is an integration failure: API Gateway REST answers it with a bare
500 "Internal server error" (Lambda's 429 is never passed on), unless the API customises the
``INTEGRATION_FAILURE`` (or else ``DEFAULT_5XX``) gateway response, which the template does
and this gateway honours (:class:`~infra.local.stack.template_model.GatewayResponse`). Every
error of the gateway's own gets its response type's customisation, or else ``DEFAULT_4XX`` /
``DEFAULT_5XX``'s, as on AWS (the template's add the CORS origin to them).

A method whose integration is ``MOCK`` (the template's CORS preflights, ``OPTIONS``) is
answered by the gateway itself with its static integration response (:class:`MockResponse`):
no function, and no signature unless the method asks for one. A method the resource does not
have (``OPTIONS`` included) gets the same 405 as any other.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.iam_policy import is_allowed
from infra.local.awsauth.sigv4 import SignatureError, verify_authorization_header
from infra.local.functions.runtime import THROTTLED
from infra.local.net.http_server import (
    HTTP_REFUSAL_TYPES,
    HttpRefusal,
    RefusingRequestHandler,
    TlsThreadingHTTPServer,
)
from infra.local.net.service import ServerThread

__all__ = ["ApiGateway", "ApiRoute", "GatewayResponse", "MockResponse", "Throttle"]

log = logging.getLogger("tidings.api")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
Invoker = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class GatewayResponse:
    """An ``AWS::ApiGateway::GatewayResponse``: what API Gateway answers for ``response_type``.

    Only static values are supported locally: header values are quoted literals (``"'1'"``)
    and the ``application/json`` template is sent as it is.
    """

    response_type: str
    status_code: int | None
    headers: Mapping[str, str]
    body: str | None


@dataclass(frozen=True)
class MockResponse:
    """A ``MOCK`` integration's answer (its default integration response), sent as it is."""

    status_code: int
    headers: Mapping[str, str]
    body: str = ""


@dataclass(frozen=True)
class ApiRoute:
    """One method on one resource, as the template declares it: a Lambda proxy integration
    (``invoke``) or a ``MOCK`` one (``mock``)."""

    method: str
    resource: str  # e.g. "/v1/channels/{channel+}"
    authorization: str  # "NONE" | "AWS_IAM"
    invoke: Invoker | None = None
    mock: MockResponse | None = None

    def __post_init__(self) -> None:
        if (self.invoke is None) == (self.mock is None):
            raise ValueError(f"{self.method} {self.resource}: give either invoke or mock")

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameters if ``path`` (percent-decoded segments) fits this resource."""
        return _compile(self.resource)(path)


@functools.lru_cache(maxsize=256)
def _compile(resource: str) -> Callable[[str], dict[str, str] | None]:
    parts = []
    names = []
    for segment in resource.strip("/").split("/"):
        greedy = re.fullmatch(r"\{([A-Za-z0-9_]+)\+\}", segment)
        plain = re.fullmatch(r"\{([A-Za-z0-9_]+)\}", segment)
        if greedy:
            names.append(greedy.group(1))
            parts.append("(.+)")
        elif plain:
            names.append(plain.group(1))
            parts.append("([^/]+)")
        else:
            parts.append(re.escape(segment))
    pattern = re.compile("^/" + "/".join(parts) + "$")

    def match(path: str) -> dict[str, str] | None:
        found = pattern.match(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in zip(names, found.groups(), strict=True)}

    return match


class Throttle:
    """Token bucket: API Gateway stage throttling (rate per second, burst)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """True if a request may pass now."""
        if self.rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class ApiGateway(ServerThread):
    """``start()`` serves HTTPS on 127.0.0.1; ``url`` is the stage's invoke URL."""

    name = "API gateway"

    def __init__(
        self,
        routes: Sequence[ApiRoute],
        credentials: CredentialStore,
        ssl_context: ssl.SSLContext,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        api_id: str = "localapi",
        stage: str = "dev",
        port: int = 0,
        throttle: Throttle | None = None,
        gateway_responses: Mapping[str, GatewayResponse] | None = None,
    ) -> None:
        """``gateway_responses``: the API's customised gateway responses by response type."""
        self.routes = list(routes)
        self.gateway_responses = dict(gateway_responses or {})
        self.credentials = credentials
        self.region = region
        self.account_id = account_id
        self.api_id = api_id
        self.stage = stage
        self.throttle = throttle or Throttle(0, 0)
        self._port = port
        self._ssl_context = ssl_context
        super().__init__()

    def _bind(self) -> TlsThreadingHTTPServer:
        gateway = self

        class Handler(_RequestHandler):
            api = gateway

        # TLS is negotiated in each connection's thread, so a client that connects and never
        # finishes its handshake holds only its own thread, not the accept loop
        return TlsThreadingHTTPServer(("127.0.0.1", self._port), Handler, self._ssl_context)

    @property
    def url(self) -> str:
        """Base URL including the stage, like ``https://<id>.execute-api…/<stage>``."""
        return f"https://localhost:{self.port}/{self.stage}"

    # ---------------------------------------------------------------- request handling
    def handle(
        self,
        method: str,
        raw_target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Answer one request: status, headers, body."""
        raw_path, _, raw_query = raw_target.partition("?")
        prefix = f"/{self.stage}"
        if not (raw_path == prefix or raw_path.startswith(prefix + "/")):
            return self.refusal(
                "MISSING_AUTHENTICATION_TOKEN",
                404,
                "NotFoundException",
                "not_found",
                f"no stage in this path; the API is served under {prefix}/",
            )
        path = raw_path[len(prefix) :] or "/"
        decoded = "/".join(unquote(s) for s in path.split("/"))
        matched = [(r, r.match(path)) for r in self.routes]
        candidates = [(r, p) for r, p in matched if p is not None]
        if not candidates:
            return self.refusal(
                "MISSING_AUTHENTICATION_TOKEN",
                404,
                "NotFoundException",
                "not_found",
                f"no route for {decoded}",
            )
        route_params = next(((r, p) for r, p in candidates if r.method in (method, "ANY")), None)
        if route_params is None:
            return self.refusal(
                "MISSING_AUTHENTICATION_TOKEN",
                405,
                "MethodNotAllowedException",
                "method_not_allowed",
                f"{method} is not allowed on {decoded}",
            )
        route, params = route_params
        if not self.throttle.take():
            return self.refusal(
                "THROTTLED",
                429,
                "TooManyRequestsException",
                "too_many_requests",
                "Too Many Requests: the stage's throttling limit was reached; retry",
                [("Retry-After", "1")],
            )
        credential: StoredCredential | None = None
        if route.authorization == "AWS_IAM":
            try:
                verified = verify_authorization_header(
                    method,
                    raw_path,
                    raw_query,
                    headers,
                    body,
                    lookup=self.credentials.get,
                    region=self.region,
                    services=("execute-api",),
                )
            except SignatureError as exc:
                return self.refusal(
                    "INVALID_SIGNATURE" if exc.code == "signature_mismatch" else None,
                    403,
                    "InvalidSignatureException"
                    if exc.code == "signature_mismatch"
                    else "UnrecognizedClientException",
                    exc.code,
                    exc.message,
                )
            credential = verified.credential
            arn = (
                f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.api_id}/"
                f"{self.stage}/{method}{path}"
            )
            role_policies = credential.policy_sets[:1]
            if not is_allowed(role_policies, "execute-api:Invoke", arn, credential.variables):
                return self.refusal(
                    "ACCESS_DENIED",
                    403,
                    "AccessDeniedException",
                    "forbidden",
                    f"{credential.principal} is not authorized to invoke {method} "
                    f"{decoded} (execute-api:Invoke)",
                )
        if route.mock is not None:
            mock = route.mock
            mock_headers = [("Content-Type", "application/json"), *mock.headers.items()]
            return mock.status_code, mock_headers, mock.body.encode()
        assert route.invoke is not None
        event = self._event(
            method, route, params, path, raw_query, headers, body, source_ip, credential
        )
        try:
            result = route.invoke(event)
        except Exception as exc:
            if getattr(exc, "error_type", None) == THROTTLED:
                log.info("%s %s: the function was throttled: %s", method, decoded, exc)
                # what API Gateway answers when Lambda refuses the invocation
                return self.refusal(
                    "INTEGRATION_FAILURE",
                    500,
                    "InternalServerErrorException",
                    "internal_server_error",
                    "Internal server error",
                )
            log.warning("%s %s: integration failed: %s", method, decoded, exc)
            return self.refusal(
                None,
                502,
                "InternalServerErrorException",
                "bad_gateway",
                "the function failed; see its log for the error",
            )
        proxied = _proxy_response(result)
        if proxied is None:
            return self.refusal(
                None,
                502,
                "InternalServerErrorException",
                "bad_gateway",
                "the function returned a malformed proxy response",
            )
        return proxied

    def refusal(
        self,
        response_type: str | None,
        status: int,
        aws_type: str,
        code: str,
        message: str,
        extra: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """An error of the gateway's own, with the API's customisation of ``response_type``
        or else of ``DEFAULT_4XX`` / ``DEFAULT_5XX`` (status, headers, body), as on AWS."""
        answer_status, headers, body = _error(status, aws_type, code, message, extra)
        default = "DEFAULT_4XX" if status < 500 else "DEFAULT_5XX"
        custom = (
            self.gateway_responses.get(response_type) if response_type else None
        ) or self.gateway_responses.get(default)
        if custom is None:
            return answer_status, headers, body
        replaced = {name.lower() for name in custom.headers}
        headers = [(n, v) for n, v in headers if n.lower() not in replaced]
        headers.extend(custom.headers.items())
        data = custom.body.encode() if custom.body is not None else body
        return custom.status_code or answer_status, headers, data

    def _event(
        self,
        method: str,
        route: ApiRoute,
        params: dict[str, str],
        path: str,
        raw_query: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        credential: StoredCredential | None,
    ) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        query_single: dict[str, str] = {}
        query_multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query_single[name] = value
            query_multi.setdefault(name, []).append(value)
        variables = credential.variables if credential else {}
        identity = {
            "cognitoIdentityId": variables.get("cognito-identity.amazonaws.com:sub"),
            "cognitoIdentityPoolId": variables.get("cognito-identity.amazonaws.com:aud"),
            "cognitoAuthenticationType": "authenticated"
            if variables.get("cognito-identity.amazonaws.com:sub")
            else None,
            "cognitoAuthenticationProvider": variables.get("cognito-identity.amazonaws.com:amr"),
            "accountId": self.account_id if credential else None,
            "caller": credential.principal if credential else None,
            "accessKey": credential.access_key_id if credential else None,
            "sourceIp": source_ip,
            "user": credential.principal if credential else None,
            "userArn": (credential.arn or credential.principal) if credential else None,
            "userAgent": single.get("User-Agent") or single.get("user-agent"),
        }
        is_text = _is_text(body)
        now = time.time()
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": query_single or None,
            "multiValueQueryStringParameters": query_multi or None,
            "pathParameters": params or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route.resource,
                "httpMethod": method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "accountId": self.account_id,
                "apiId": self.api_id,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(now * 1000),
                "domainName": f"localhost:{self.port}",
                "identity": identity,
            },
            "body": (body.decode("utf-8") if is_text else base64.b64encode(body).decode())
            if body
            else None,
            "isBase64Encoded": bool(body) and not is_text,
        }


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _error(
    status: int, aws_type: str, code: str, message: str, extra: Sequence[tuple[str, str]] = ()
) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"error": code, "message": message}).encode()
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", aws_type), *extra]
    return status, headers, body


def _proxy_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """The HTTP answer of a proxy response; None if it is malformed."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return None
    headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, str(v)) for v in values)
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return result["statusCode"], headers, data


_REFUSAL_CODES = {
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "headers_too_large",
}


class _RequestHandler(RefusingRequestHandler):
    api: ApiGateway
    request_timeout_s = 65.0  # an idle kept-alive connection is closed after this
    allowed_methods = "GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def refuse(self, status: int, message: str) -> None:
        """The gateway's own refusals: ``{"error", "message"}`` with ``x-amzn-ErrorType``."""
        if status >= 500:
            answer = self.api.refusal(
                None, 500, "InternalServerErrorException", "internal", message
            )
        else:
            aws_type = HTTP_REFUSAL_TYPES.get(status, "BadRequestException")
            response_type = "REQUEST_TOO_LARGE" if status == 413 else None
            code = _REFUSAL_CODES.get(status, "bad_request")
            answer = self.api.refusal(response_type, status, aws_type, code, message)
        self.close_connection = True
        self._send(*answer)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self) -> None:
        try:
            body_in = self.read_body(MAX_BODY_BYTES)
        except HttpRefusal as exc:
            self.refuse(exc.status, exc.message)
            return
        self._send(
            *self.api.handle(
                self.command,
                self.path,
                list(self.headers.items()),
                body_in,
                self.client_address[0],
            )
        )

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve
