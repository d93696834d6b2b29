"""infra/openapi.yaml is a valid OpenAPI 3.0 document and says what the code does: the
functions' error codes, statuses, limits and answers, the template's methods and CORS
preflights, and every route's channels (no I/O: the handlers run with in-memory stores)."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

import auth.errors
import backend.errors
from auth.http import handle_login_event
from auth.login import _FIELDS, MAX_BODY_BYTES
from backend.change_store import Head, LogEntry
from backend.changes import Router, decode_record, encode_envelope
from backend.channels_api import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_S, ChannelsApi
from backend.errors import StoreError
from backend.poll_leases import Refused
from backend.routes import load_routes
from infra.data_files import OPENAPI, ROUTES, TEMPLATE, data_file
from infra.local.apigateway.service import _REFUSAL_CODES
from infra.local.stack.template_model import load_template
from tests.support.openapi import ApiDocument, api_document

ROOT = Path(__file__).resolve().parents[2]
ROUTE_RULES = load_routes(data_file(ROUTES))
ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
HEAD_PATH = f"/v1/channels/users/{ALICE}/todos"
CHANGES_PATH = HEAD_PATH + "/changes"


def raw_document() -> dict[str, Any]:
    return dict(yaml.safe_load(data_file(OPENAPI).read_text(encoding="utf-8")))


def operation(method: str, path: str) -> Mapping[str, Any]:
    _, found = api_document().find(method, path)
    assert found is not None, f"{method} {path}"
    return found.spec


def error_codes(method: str, path: str, status: int) -> set[str]:
    """The ``error`` codes the document allows for ``status`` of one operation."""
    document = api_document()
    response = document.resolve(operation(method, path)["responses"][str(status)])
    schema = document.resolve(response["content"]["application/json"]["schema"])
    codes: set[str] = set()
    for part in [schema, *schema.get("allOf", [])]:
        part = document.resolve(part)
        codes |= set(((part.get("properties") or {}).get("error") or {}).get("enum") or [])
    return codes


def test_the_document_is_valid_openapi_3_0() -> None:
    document = raw_document()
    validate(document)
    assert str(document["openapi"]).startswith("3.0.")


def test_the_signed_routes_use_sigv4_and_login_none() -> None:
    scheme = raw_document()["components"]["securitySchemes"]["sigv4"]
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert scheme == {**scheme, "type": "apiKey", "name": "Authorization", "in": "header"}
    assert operation("GET", HEAD_PATH)["security"] == [{"sigv4": []}]
    assert operation("POST", "/v1/login")["security"] == []


@pytest.mark.parametrize(
    "error",
    [
        cls
        for _, cls in inspect.getmembers(backend.errors, inspect.isclass)
        if issubclass(cls, backend.errors.RequestError)
    ],
)
def test_every_channels_api_error_is_declared(error: type[backend.errors.RequestError]) -> None:
    assert error.CODE in error_codes("GET", HEAD_PATH, error.STATUS)


def login_bad_request_codes() -> set[str]:
    codes = set()
    for module in ("login.py", "http.py"):
        text = (ROOT / "auth" / module).read_text(encoding="utf-8")
        codes |= set(re.findall(r'BadRequest\(\s*"([a-z_]+)"', text))
    assert len(codes) > 10
    return codes


def test_every_login_bad_request_code_is_declared() -> None:
    assert login_bad_request_codes() <= error_codes("POST", "/v1/login", 400)


@pytest.mark.parametrize(
    "error",
    [
        auth.errors.AuthError,
        auth.errors.ConfigurationError,
        auth.errors.InvalidCredentials,
        auth.errors.TooManyAttempts,
        auth.errors.UpstreamError,
    ],
)
def test_every_login_error_status_is_declared(error: type[auth.errors.AuthError]) -> None:
    assert error.code in error_codes("POST", "/v1/login", error.status)


GATEWAY_ERRORS = {
    # the local API gateway's own refusals (infra/local/apigateway/service.py)
    **{status: {code} for status, code in _REFUSAL_CODES.items()},
    404: {"not_found"},
    429: {"too_many_requests"},
    500: {"internal", "internal_server_error"},
    502: {"bad_gateway"},
    503: {"unavailable"},  # the template's INTEGRATION_FAILURE gateway response
}


@pytest.mark.parametrize("path", ["/v1/login", HEAD_PATH])
@pytest.mark.parametrize("status", sorted(GATEWAY_ERRORS))
def test_every_gateway_refusal_is_declared(path: str, status: int) -> None:
    method = "POST" if path == "/v1/login" else "GET"
    assert GATEWAY_ERRORS[status] <= error_codes(method, path, status)


def test_every_signature_refusal_is_declared() -> None:
    text = (ROOT / "infra" / "local" / "awsauth" / "sigv4.py").read_text(encoding="utf-8")
    codes = set(re.findall(r'SignatureError\(\s*"([a-z_]+)"', text))
    assert len(codes) >= 6
    assert codes | {"forbidden"} <= error_codes("GET", HEAD_PATH, 403)


def query_parameter(name: str) -> Mapping[str, Any]:
    (found,) = [p for p in operation("GET", CHANGES_PATH)["parameters"] if p["name"] == name]
    return dict(found["schema"])


def test_the_parameter_limits_are_the_codes() -> None:
    assert query_parameter("limit") == {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_LIMIT,
        "default": DEFAULT_LIMIT,
    }
    assert query_parameter("wait")["maximum"] == MAX_WAIT_S
    assert query_parameter("after")["minimum"] == 0 and query_parameter("epoch")["minimum"] == 1
    schemas = raw_document()["components"]["schemas"]
    kinds = {"password": "PasswordLogin", "id_token": "IdTokenLogin", "device": "DeviceLogin"}
    for method, fields in _FIELDS.items():
        properties = schemas[kinds[method]]["properties"]
        assert properties["method"]["enum"] == [method]
        assert {name: properties[name]["maxLength"] for name, _ in fields} == dict(fields)
    assert f"{MAX_BODY_BYTES // 1024} KiB" in schemas["LoginRequest"]["description"]


def test_every_routes_channel_is_served_by_the_channels_path() -> None:
    for route in ROUTE_RULES:
        for template in route.channels:
            channel = re.sub(r"\{[^}]+\}", "x", template)
            for path in (f"/v1/channels/{channel}", f"/v1/channels/{channel}/changes"):
                assert api_document().find("GET", path)[1] is not None, path


def test_the_template_serves_the_api_from_the_document() -> None:
    template = load_template(data_file(TEMPLATE))
    # the RestApi's Body is the document (AWS::Include), and no method is declared besides it
    assert template.properties("Api")["Body"] == raw_document()
    assert not template.of_type("AWS::ApiGateway::Method")
    text = data_file(TEMPLATE).read_text(encoding="utf-8")
    assert re.search(r"Name: AWS::Include\n\s+Parameters:\n\s+Location: openapi.yaml\n", text)
    served = {
        (m.http_method, m.resource_path, m.authorization, m.function, m.mock is not None)
        for m in template.api_methods()
    }
    assert served == {
        ("POST", "/v1/login", "NONE", "LoginFunction", False),
        ("OPTIONS", "/v1/login", "NONE", None, True),
        ("GET", "/v1/channels/{channel+}", "AWS_IAM", "ChannelsFunction", False),
        ("OPTIONS", "/v1/channels/{channel+}", "NONE", None, True),
    }


def test_the_local_preflights_answer_the_headers_the_document_gives() -> None:
    document = raw_document()
    methods = {
        m.resource_path: m.mock
        for m in load_template(data_file(TEMPLATE)).api_methods()
        if m.mock is not None
    }
    for path, item in document["paths"].items():
        parameters = item["options"]["x-amazon-apigateway-integration"]["responses"]["default"][
            "responseParameters"
        ]
        mock = methods[path]
        assert mock is not None
        for name, value in parameters.items():
            header = name.removeprefix("method.response.header.")
            text = value if isinstance(value, str) else "'*'"  # Fn::Sub AllowedOrigins
            assert mock.headers[header] == text.strip("'"), header


# ------------------------------------------------------------------ the handlers' answers
class MemoryStore:
    def __init__(self, head: int, envelopes: list[str], expires: float = 2e9) -> None:
        self.head_seq = head
        self.envelopes = envelopes
        self.expires = expires

    def head(self, channel: str) -> Head:
        return Head(self.head_seq, 1)

    def read(self, channel: str, after: int, limit: int) -> list[LogEntry]:
        return [
            LogEntry(seq, 1, self.envelopes[seq - 1], int(self.expires))
            for seq in range(after + 1, min(self.head_seq, after + limit) + 1)
        ]


class FailingStore(MemoryStore):
    def head(self, channel: str) -> Head:
        raise StoreError("throttled")


class Full:
    def acquire(self, identity: str, channel: str, wait_s: float) -> Refused:
        return Refused("identity", 3, 4)


def todo_envelopes() -> list[str]:
    """Real envelopes of the todos stream fixture, as the publisher stores them."""
    event = json.loads((ROOT / "tests" / "events" / "stream_todos.json").read_text())
    router = Router(ROUTE_RULES, {route.table: route.table for route in ROUTE_RULES})
    out = []
    for index, record in enumerate(event["Records"]):
        record = {
            **record,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:1:table/TodosTable/stream/x",
        }
        for item in router.route(index, decode_record(record)):
            out.append(encode_envelope(item, len(out) + 1, 1, 128 * 1024).full)
    assert out
    return out


def channel_event(path: str, **query: str) -> dict[str, Any]:
    return {
        "httpMethod": "GET",
        "path": path,
        "pathParameters": {"channel": path.removeprefix("/v1/channels/")},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
        "requestContext": {"identity": {"cognitoIdentityId": ALICE}},
    }


def check(document: ApiDocument, method: str, path: str, answer: Mapping[str, Any]) -> None:
    document.check(method, path, answer["statusCode"], answer["headers"], answer["body"].encode())


CASES = [
    ("head", HEAD_PATH, {}, 200),
    ("changes", CHANGES_PATH, {"after": "0", "limit": "2"}, 200),
    ("caught up", CHANGES_PATH, {"after": "3"}, 200),
    ("me", "/v1/channels/users/me/todos/changes", {"limit": "1"}, 200),
    ("bad parameter", CHANGES_PATH, {"limit": "0"}, 400),
    ("parameter on the head", HEAD_PATH, {"after": "1"}, 400),
    ("someone else's", "/v1/channels/users/us-east-1:other/todos", {}, 403),
    ("beyond the head", CHANGES_PATH, {"after": "9"}, 410),
    ("other epoch", CHANGES_PATH, {"epoch": "7"}, 410),
]


@pytest.mark.parametrize(("name", "path", "query", "status"), CASES, ids=[c[0] for c in CASES])
def test_the_channels_api_answers_match_the_document(
    name: str, path: str, query: dict[str, str], status: int
) -> None:
    envelopes = todo_envelopes()
    api = ChannelsApi(
        ROUTE_RULES,
        MemoryStore(len(envelopes), envelopes),  # type: ignore[arg-type]
        lambda identity: frozenset(),
        allowed_origin="*",
    )
    answer = api.handle(channel_event(path, **query))
    assert answer["statusCode"] == status, answer["body"]
    check(api_document(), "GET", path, answer)


def test_the_channels_api_refusals_under_load_match_the_document() -> None:
    busy = ChannelsApi(
        ROUTE_RULES,
        MemoryStore(0, []),  # type: ignore[arg-type]
        lambda identity: frozenset(),
        leases=Full(),  # type: ignore[arg-type]
        allowed_origin="*",
    )
    answer = busy.handle(channel_event(CHANGES_PATH, wait="5"))
    assert answer["statusCode"] == 429 and answer["headers"]["Retry-After"] == "3"
    check(api_document(), "GET", CHANGES_PATH, answer)
    failing = ChannelsApi(
        ROUTE_RULES,
        FailingStore(0, []),  # type: ignore[arg-type]
        lambda identity: frozenset(),
    )
    answer = failing.handle(channel_event(HEAD_PATH))
    assert answer["statusCode"] == 503
    check(api_document(), "GET", HEAD_PATH, answer)


class Service:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def login(self, body: bytes | str | None, source_ip: str) -> dict[str, Any]:
        from auth.login import parse_login_body

        parse_login_body(body)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return dict(self.outcome)


LOGIN_ANSWER = {
    "identityId": ALICE,
    "token": "eyJ.x.y",
    "expiresAt": "2026-01-01T00:00:00Z",
    "region": "us-east-1",
    "identityPoolId": "us-east-1:pool",
    "iot": {"endpoint": "localhost", "port": 8443, "topicPrefix": "tidings/dev/"},
    "api": {"url": "https://localhost:1/dev"},
    "channels": [f"users/{ALICE}/todos", "public/scores"],
}
GOOD = json.dumps({"method": "password", "username": "alice", "password": "pw"})
LOGIN_CASES = [
    ("signed in", GOOD, LOGIN_ANSWER, 200),
    ("no body", None, LOGIN_ANSWER, 400),
    ("not json", "{nope", LOGIN_ANSWER, 400),
    ("not an object", "[1]", LOGIN_ANSWER, 400),
    ("unknown method", '{"method": "magic"}', LOGIN_ANSWER, 400),
    ("unknown field", '{"method": "id_token", "id_token": "t", "x": 1}', LOGIN_ANSWER, 400),
    ("too long", json.dumps({"method": "device", "thing_name": "t" * 200, "secret": "s"}), {}, 400),
    ("bad username", '{"method": "password", "username": "a b", "password": "p"}', {}, 400),
    ("wrong password", GOOD, auth.errors.InvalidCredentials(), 401),
    ("throttled", GOOD, auth.errors.TooManyAttempts(60), 429),
    ("cognito down", GOOD, auth.errors.UpstreamError("down"), 502),
    ("misconfigured", GOOD, auth.errors.ConfigurationError("no pool"), 500),
    ("crashed", GOOD, ZeroDivisionError(), 500),
]


@pytest.mark.parametrize(
    ("name", "body", "outcome", "status"), LOGIN_CASES, ids=[c[0] for c in LOGIN_CASES]
)
def test_the_login_answers_match_the_document(
    name: str, body: str | None, outcome: Any, status: int
) -> None:
    answer = handle_login_event({"body": body}, Service(outcome), allowed_origin="*")
    assert answer["statusCode"] == status, answer["body"]
    check(api_document(), "POST", "/v1/login", answer)
