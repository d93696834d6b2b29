"""The channels API under random input: never a 5xx, every refusal a well-formed error.

The real :class:`ChannelsApi` (change store, tenants and poll leases in moto's DynamoDB over
a real socket) fed API Gateway proxy events whose method, path, path parameters, query
string, headers and caller identity hypothesis chooses. Paths are drawn from raw text,
near-valid channels with tricks (``..``, ``%2F``, ``%252F``, superscript digits, line breaks)
and valid channels; ``wait`` stays short so a poll ends quickly.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.change_store import ChangeStore
from backend.channels_api import ChannelsApi
from backend.poll_leases import PollLeases
from backend.routes import load_routes
from backend.tenants import UsersTableTenants
from infra.local.stack.template_model import load_template
from tests.events.capture_stream_events import client as moto_client
from tests.events.capture_stream_events import create_backend_tables
from tests.support.fuzz import examples
from tests.support.local_stack import TEMPLATE
from tests.support.moto_server import ROUTES_FILE, moto_server

ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
VALID = [f"users/{ALICE}/todos", "public/scores", "tenants/acme/board", "tenants/other/board"]
TRICKS = ["..", "%2F", "%252F", "%2e%2e", "²", "٣", "\n", " ", "", "//", "*", "#", "+", "%"]

segments = st.one_of(
    st.sampled_from(["users", ALICE, "todos", "public", "scores", "tenants", "acme", "board"]),
    st.sampled_from(TRICKS),
    st.text(max_size=12),
)
paths = st.one_of(
    st.sampled_from(VALID),
    st.sampled_from(VALID).map(lambda p: p + "/changes"),
    st.lists(segments, min_size=0, max_size=10).map("/".join),
    st.text(max_size=60),
)
numbers = st.one_of(
    st.integers(-5, 2**70).map(str),
    st.sampled_from(["", "0", "1", "²", "¹", "٣", "1e3", "0x10", "1_0", " 2", "nan", "inf"]),
    st.text(max_size=8),
)
queries = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "after": numbers,
            "limit": numbers,
            "wait": st.sampled_from(["0", "0.05", "-1", "21", "nan", "²", "0.0"]),
            "epoch": numbers,
            "extra": st.text(max_size=5),
        },
    ),
    st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
)


@pytest.fixture(scope="module")
def api() -> Any:
    with moto_server() as endpoint:
        dynamodb = moto_client("dynamodb", endpoint)
        tables = create_backend_tables(dynamodb, "fuzz")
        load_template(TEMPLATE).create_table(dynamodb, "PollLeasesTable", "PollLeasesFuzz")
        dynamodb.put_item(
            TableName=tables["UsersTable"],
            Item={
                "pk": {"S": f"identity#{ALICE}"},
                "identityId": {"S": ALICE},
                "tenants": {"L": [{"S": "acme"}]},
            },
        )
        store = ChangeStore(dynamodb, tables["SequenceTable"], tables["ChangeLogTable"], 3600)
        yield ChannelsApi(
            load_routes(ROUTES_FILE),
            store,
            UsersTableTenants(dynamodb, tables["UsersTable"]),
            poll_interval_s=0.02,
            leases=PollLeases(dynamodb, "PollLeasesFuzz", 4),
        )


@settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "GET", "GET", "POST", "DELETE", "get", ""]),
    path=paths,
    use_path_parameters=st.booleans(),
    query=queries,
    headers=st.none() | st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
    identity=st.sampled_from([ALICE, None, "", "us-east-1:someone-else", "x" * 300]),
)
def test_no_input_gives_a_server_error(
    api: ChannelsApi,
    method: str,
    path: str,
    use_path_parameters: bool,
    query: dict[str, str] | None,
    headers: dict[str, str] | None,
    identity: str | None,
) -> None:
    event: dict[str, Any] = {
        "resource": "/v1/channels/{channel+}",
        "httpMethod": method,
        "path": "/v1/channels/" + path,
        "pathParameters": {"channel": path} if use_path_parameters else None,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
        "headers": headers,
        "requestContext": {"identity": {"cognitoIdentityId": identity}},
    }
    response = api.handle(event)
    status = response["statusCode"]
    body = json.loads(response["body"])
    assert status in (200, 400, 403, 404, 405, 410, 429), (status, body)
    if status != 200:
        assert {"error", "message"} <= set(body), body
        assert isinstance(body["message"], str) and body["message"]
    if status == 429:
        assert int(response["headers"]["Retry-After"]) >= 1
