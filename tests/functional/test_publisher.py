"""The publisher against moto (DynamoDB) and the local IoT gateway (iot-data → real subscriber).

Driven by stream events captured from moto (``tests/events/stream_*.json``) and by the local
stack's stream pump reading moto's streams.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from backend.change_store import ChangeStore
from backend.channels_api import ChannelsApi
from backend.publisher import Publisher
from backend.routes import load_routes
from backend.settings import Settings
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.functions.stream_pump import MappingSettings, StreamPump
from infra.local.iot.gateway import Gateway
from tests.events.capture_stream_events import client as moto_client
from tests.events.capture_stream_events import create_backend_tables, create_example_tables
from tests.support.identities import REGION, Identity, identity_policies, new_publisher
from tests.support.moto_server import moto_server
from tests.support.real_clients import PahoWebSocket

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
ROUTES_FILE = ROOT / "infra" / "routes.yaml"
ROUTES = load_routes(ROUTES_FILE)
OWNER = "us-east-1:0b6b3b5e-7c1d-4b8e-9a51-3f0c6f7b2a10"  # the owner in the captured events
CAPTURED_TABLES = {
    "TodosTable": "Todos",
    "BoardsTable": "Boards",
    "ScoresTable": "Scores",
    "DeviceSettingsTable": "DeviceSettings",
}


# ------------------------------------------------------------------------------ helpers
class Moto:
    """The moto server's endpoint and clients on it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def client(self, service: str, **kwargs: Any) -> Any:
        return moto_client(service, self.endpoint, **kwargs)


@contextmanager
def table_backup_once_per_transaction() -> Iterator[None]:
    """moto with the local stack's TransactWriteItems fix
    (``infra/local/motohost/fixes/transactions.py``): no whole-table copy per action, and
    serialised transactions as DynamoDB isolates them."""
    from infra.local.motohost.fixes.transactions import apply_dynamodb_transaction_fixes

    apply_dynamodb_transaction_fixes()
    yield


@pytest.fixture(scope="module")
def moto() -> Any:
    with table_backup_once_per_transaction(), moto_server() as endpoint:
        yield Moto(endpoint)


@pytest.fixture
def tables(moto: Moto) -> dict[str, str]:
    """Fresh change-log, sequence and users tables for each test."""
    return create_backend_tables(moto.client("dynamodb"), uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def iot(gateway: Gateway) -> Any:
    """A boto3 iot-data client on the gateway, with the publisher role's credentials."""
    role = new_publisher(gateway.credentials)
    return boto3.client(
        "iot-data",
        endpoint_url=gateway.endpoint,
        verify=str(gateway.ca_file),
        region_name=REGION,
        aws_access_key_id=role.access_key,
        aws_secret_access_key=role.secret_key,
        aws_session_token=role.token,
        config=Config(max_pool_connections=32),
    )


class RecordingIot:
    """iot-data that records what was published (and can fail chosen publishes)."""

    def __init__(self, inner: Any, fail: Any = None) -> None:
        self.inner = inner
        self.fail = fail
        self.calls = 0
        self.published: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    reports_sent = True  # as the production client: on_sent once the request has left

    def publish(self, topic: str, qos: int, payload: bytes, on_sent: Any = None) -> None:
        envelope = json.loads(payload)
        with self.lock:
            self.calls += 1
            call = self.calls
        if self.fail is not None and self.fail(call, envelope):
            raise ClientError({"Error": {"Code": "InternalFailure", "Message": "boom"}}, "Publish")
        assert qos == 1
        self.inner.publish(topic=topic, qos=qos, payload=payload)
        with self.lock:
            self.published.append((topic, envelope))
        if on_sent is not None:  # boto3 cannot say earlier: the next one waits for this one
            on_sent()

    def by_topic(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = defaultdict(list)
        for topic, envelope in self.published:
            out[topic].append(envelope)
        return out


def settings_for(tables: dict[str, str], sources: dict[str, str], **extra: Any) -> Settings:
    return Settings(
        stage="dev",
        change_log_table=tables["ChangeLogTable"],
        sequence_table=tables["SequenceTable"],
        users_table=tables["UsersTable"],
        routes_file=str(ROUTES_FILE),
        tables={logical.upper(): name for logical, name in sources.items()},
        **extra,
    )


def make_publisher(moto: Moto, settings: Settings, iot: Any, dynamodb: Any = None):
    executor = ThreadPoolExecutor(16)
    store = ChangeStore(
        dynamodb or moto.client("dynamodb", config=Config(max_pool_connections=32)),
        settings.sequence_table,
        settings.change_log_table,
        settings.retention_s,
        executor=executor,
    )
    return Publisher(settings, ROUTES, store, iot, executor=executor), store


def subscriber(gateway: Gateway, identity_id: str, topic: str) -> PahoWebSocket:
    credential = mint_temporary_credential(
        identity_id,
        identity_policies(),
        variables={"cognito-identity.amazonaws.com:sub": identity_id},
    )
    gateway.credentials.put(credential)
    client = PahoWebSocket(gateway.port, gateway.ca_file, Identity(identity_id, credential))
    client.connect()
    assert client.subscribe(topic)
    return client


def received(client: PahoWebSocket, count: int) -> list[dict]:
    return [json.loads(client.receive()[1]) for _ in range(count)]


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def log_of(store: ChangeStore, channel: str) -> list[dict]:
    entries = store.read(channel, 0, 1000)
    return [json.loads(entry.envelope) for entry in entries]


def api_get(api: ChannelsApi, identity: str, path: str, **query: str) -> tuple[int, dict]:
    response = api.handle(
        {
            "httpMethod": "GET",
            "path": "/v1/channels/" + path,
            "queryStringParameters": query or None,
            "requestContext": {"identity": {"cognitoIdentityId": identity}},
        }
    )
    return response["statusCode"], json.loads(response["body"])


# ------------------------------------------------------------------------------ tests
def test_captured_events_reach_a_real_subscriber_in_order_and_the_log(
    moto: Moto, tables: dict[str, str], gateway: Gateway, iot: Any
) -> None:
    settings = settings_for(tables, CAPTURED_TABLES)
    publisher, store = make_publisher(moto, settings, iot)
    channel = f"users/{OWNER}/todos"
    client = subscriber(gateway, OWNER, f"tidings/dev/{channel}")
    try:
        records = event("stream_todos.json")["Records"]
        assert publisher.handle({"Records": records}) == {"batchItemFailures": []}
        envelopes = received(client, 3)
    finally:
        client.disconnect()
    assert [e["seq"] for e in envelopes] == [1, 2, 3]
    assert [e["op"] for e in envelopes] == ["insert", "modify", "remove"]
    assert [e["id"] for e in envelopes] == [r["eventID"] for r in records]
    assert envelopes[0]["channel"] == channel and envelopes[0]["v"] == 1
    assert envelopes[0]["new"]["big"] == 123456789012345678901234567890.123456789  # parsed
    assert log_of(store, channel) == envelopes
    assert store.head(channel).seq == 3
    # exact number on the wire, not float-rounded
    assert '"big":123456789012345678901234567890.123456789' in store.read(channel, 0, 1)[0].envelope


def test_boards_scores_and_ttl_expiry_are_published(
    moto: Moto, tables: dict[str, str], iot: Any
) -> None:
    spy = RecordingIot(iot)
    publisher, _ = make_publisher(moto, settings_for(tables, CAPTURED_TABLES), spy)
    for name in ("stream_boards.json", "stream_scores.json", "stream_todos_ttl_expiry.json"):
        assert publisher.handle(event(name)) == {"batchItemFailures": []}
    topics = spy.by_topic()
    assert [e["seq"] for e in topics["tidings/dev/tenants/acme/board"]] == [1]
    scores = topics["tidings/dev/public/scores"]
    assert [e["new"]["score"] for e in scores] == [10, 25.5]
    assert all(set(e["new"]) == {"game", "player", "score"} for e in scores)
    (expired,) = topics[f"tidings/dev/users/{OWNER}/todos"]
    assert expired["op"] == "remove" and expired["expired"] is True and expired["seq"] == 1


def test_redelivered_batch_assigns_no_new_seq(moto: Moto, tables: dict[str, str], iot: Any) -> None:
    spy = RecordingIot(iot)
    publisher, store = make_publisher(moto, settings_for(tables, CAPTURED_TABLES), spy)
    channel = f"users/{OWNER}/todos"
    records = event("stream_todos.json")["Records"]
    assert publisher.handle({"Records": records[:2]}) == {"batchItemFailures": []}
    first = list(spy.published)
    # Lambda redelivers the whole batch, then a batch overlapping it with one new record
    assert publisher.handle({"Records": records[:2]}) == {"batchItemFailures": []}
    assert publisher.handle({"Records": records}) == {"batchItemFailures": []}
    assert store.head(channel).seq == 3
    assert [e["seq"] for e in log_of(store, channel)] == [1, 2, 3]
    redelivered = spy.published[len(first) : len(first) + 2]
    assert redelivered == first  # byte-for-byte the same envelopes: same seq, same id
    shown: dict[int, dict] = {}
    for _, envelope in spy.published:  # a client deduplicating on seq
        assert shown.setdefault(envelope["seq"], envelope) == envelope
    assert sorted(shown) == [1, 2, 3]
    assert [shown[s]["id"] for s in (1, 2, 3)] == [r["eventID"] for r in records]


def _batch_over_two_channels(count: int) -> list[dict]:
    """``count`` records alternating between the owner's todos and public scores."""
    base = event("stream_todos.json")["Records"][0]
    score = event("stream_scores.json")["Records"][0]
    records = []
    for index in range(count):
        record = json.loads(json.dumps(base if index % 2 == 0 else score))
        record["eventID"] = f"evt-{index:04d}"
        record["dynamodb"]["SequenceNumber"] = str(1000 + index)
        records.append(record)
    return records


def test_publish_failure_mid_batch_reports_the_first_failed_record_and_retry_fills_it(
    moto: Moto, tables: dict[str, str], iot: Any
) -> None:
    failing = {"armed": True}

    def fail(call: int, envelope: dict) -> bool:
        return failing["armed"] and envelope["id"] == "evt-0004"

    spy = RecordingIot(iot, fail)
    settings = settings_for(tables, CAPTURED_TABLES, publish_window=1)  # one by one
    publisher, store = make_publisher(moto, settings, spy)
    records = _batch_over_two_channels(10)
    answer = publisher.handle({"Records": records})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "1004"}]}
    todos, scores = f"users/{OWNER}/todos", "public/scores"
    sent = spy.by_topic()
    # the failed channel stopped at its failure; the other channel went on
    assert [e["id"] for e in sent["tidings/dev/" + todos]] == ["evt-0000", "evt-0002"]
    assert len(sent["tidings/dev/" + scores]) == 5
    # all ten were numbered and logged atomically with their claims
    assert store.head(todos).seq == 5 and store.head(scores).seq == 5

    failing["armed"] = False  # Lambda retries from the reported record
    assert publisher.handle({"Records": records[4:]}) == {"batchItemFailures": []}
    assert store.head(todos).seq == 5 and store.head(scores).seq == 5
    for channel, parity in ((todos, 0), (scores, 1)):
        seen: dict[int, str] = {}
        for envelope in spy.by_topic()["tidings/dev/" + channel]:
            assert seen.setdefault(envelope["seq"], envelope["id"]) == envelope["id"]
        assert sorted(seen) == [1, 2, 3, 4, 5]  # no gap, no second seq for any event
        assert [seen[s] for s in sorted(seen)] == [f"evt-{i:04d}" for i in range(parity, 10, 2)]


class SlowIot(RecordingIot):
    """Records how many publishes of each topic were in flight at once."""

    def __init__(self, inner: Any, fail: Any = None) -> None:
        super().__init__(inner, fail)
        self.in_flight: dict[str, int] = defaultdict(int)
        self.most: dict[str, int] = defaultdict(int)
        self.started: list[tuple[str, int]] = []

    def publish(self, topic: str, qos: int, payload: bytes, on_sent: Any = None) -> None:
        with self.lock:
            self.in_flight[topic] += 1
            self.most[topic] = max(self.most[topic], self.in_flight[topic])
            self.started.append((topic, json.loads(payload)["seq"]))
        if on_sent is not None:
            on_sent()  # the request left; its answer takes a round trip
        try:
            threading.Event().wait(0.02)  # an iot-data round trip
            super().publish(topic, qos, payload)
        finally:
            with self.lock:
                self.in_flight[topic] -= 1


def test_a_hot_channel_keeps_a_window_of_publishes_in_flight_started_in_seq_order(
    moto: Moto, tables: dict[str, str], iot: Any
) -> None:
    failing = {"armed": True}
    spy = SlowIot(iot, lambda call, envelope: failing["armed"] and envelope["id"] == "evt-0030")
    publisher, store = make_publisher(moto, settings_for(tables, CAPTURED_TABLES), spy)
    records = _batch_over_two_channels(40)  # 20 changes on each of two channels
    answer = publisher.handle({"Records": records})
    assert answer == {"batchItemFailures": [{"itemIdentifier": "1030"}]}
    todos, scores = "tidings/dev/users/" + OWNER + "/todos", "tidings/dev/public/scores"
    assert spy.most[todos] == spy.most[scores] == 8  # the default window, per channel
    for topic in (todos, scores):
        started = [seq for t, seq in spy.started if t == topic]
        assert started == sorted(started)  # started in seq order
    # evt-0030 is todos seq 16: what was started before it may complete, nothing later starts
    todo_seqs = {e["seq"] for e in spy.by_topic()[todos]}
    assert set(range(1, 16)) <= todo_seqs and max(todo_seqs) <= 16 + 7 and 16 not in todo_seqs
    assert {e["seq"] for e in spy.by_topic()[scores]} == set(range(1, 21))
    failing["armed"] = False  # Lambda retries from the reported record
    assert publisher.handle({"Records": records[30:]}) == {"batchItemFailures": []}
    assert {e["seq"] for e in spy.by_topic()[todos]} == set(range(1, 21))
    assert store.head("users/" + OWNER + "/todos").seq == 20


class FlakyDynamoDB:
    """Delegates to moto; chosen TransactWriteItems calls fail before or after committing."""

    def __init__(self, inner: Any, plan: dict[int, str]) -> None:
        self.inner = inner
        self.plan = plan  # call number → "before" | "after"
        self.transactions = 0
        self.lock = threading.Lock()

    def transact_write_items(self, **kwargs: Any) -> Any:
        with self.lock:
            self.transactions += 1
            mode = self.plan.get(self.transactions)
        error = ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "Tx")
        if mode == "before":
            raise error
        answer = self.inner.transact_write_items(**kwargs)
        if mode == "after":  # committed, but the caller never hears so
            raise error
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_store_failure_after_commit_is_retried_without_a_second_seq(
    moto: Moto, tables: dict[str, str], iot: Any
) -> None:
    flaky = FlakyDynamoDB(moto.client("dynamodb"), {1: "before", 2: "after"})
    spy = RecordingIot(iot)
    settings = settings_for(tables, CAPTURED_TABLES, publish_window=1)  # one by one
    publisher, store = make_publisher(moto, settings, spy, flaky)
    records = _batch_over_two_channels(6)
    first = publisher.handle({"Records": records})
    assert first == {"batchItemFailures": [{"itemIdentifier": "1000"}]}
    assert spy.published == []  # nothing published that the caller could not confirm logged
    second = publisher.handle({"Records": records})
    assert second == {"batchItemFailures": [{"itemIdentifier": "1000"}]}
    assert publisher.handle({"Records": records}) == {"batchItemFailures": []}
    assert flaky.transactions == 2  # the third delivery found every claim: nothing re-numbered
    for channel in (f"users/{OWNER}/todos", "public/scores"):
        assert [e["seq"] for e in spy.by_topic()["tidings/dev/" + channel]] == [1, 2, 3]
        logged = log_of(store, channel)
        assert [e["seq"] for e in logged] == [1, 2, 3]
        assert len({e["id"] for e in logged}) == 3


def test_1000_changes_over_10_items_in_3_channels_through_the_stream_pump(
    moto: Moto, tables: dict[str, str], gateway: Gateway, iot: Any
) -> None:
    dynamodb = moto.client("dynamodb")
    suffix = uuid.uuid4().hex[:8]
    sources = create_example_tables(dynamodb, suffix)
    spy = RecordingIot(iot)
    publisher, store = make_publisher(moto, settings_for(tables, sources), spy)
    alice, bob = f"{REGION}:{uuid.uuid4()}", f"{REGION}:{uuid.uuid4()}"
    items = [("Todos", {"owner": alice, "id": f"a{i}"}) for i in range(4)]
    items += [("Todos", {"owner": bob, "id": f"b{i}"}) for i in range(3)]
    items += [("Scores", {"game": "g1", "player": f"p{i}"}) for i in range(3)]
    client = subscriber(gateway, alice, f"tidings/dev/users/{alice}/todos")
    try:
        for version in range(100):
            for table, key in items:
                item = {k: {"S": v} for k, v in key.items()}
                item["n"] = {"N": str(version)}
                item["score"] = {"N": str(version)}
                dynamodb.put_item(TableName=table + suffix, Item=item)
        streams = moto.client("dynamodbstreams")
        for table in ("Todos", "Scores"):
            arn = dynamodb.describe_table(TableName=table + suffix)["Table"]["LatestStreamArn"]
            pump = StreamPump(streams, arn, publisher.handle, MappingSettings(batch_size=100))
            assert pump.drain(timeout_s=120) == (700 if table == "Todos" else 300)
        pushed = received(client, 400)
    finally:
        client.disconnect()
    expected = {f"users/{alice}/todos": 400, f"users/{bob}/todos": 300, "public/scores": 300}
    for channel, count in expected.items():
        logged = log_of(store, channel) if count <= 1000 else []
        assert [e["seq"] for e in logged] == list(range(1, count + 1)), channel
        versions: dict[str, list[int]] = defaultdict(list)
        for envelope in logged:
            key = json.dumps(envelope["keys"], sort_keys=True)
            versions[key].append(envelope["new"]["score"])
        assert all(v == list(range(100)) for v in versions.values()), channel
        published = [e["seq"] for e in spy.by_topic()["tidings/dev/" + channel]]
        assert published == list(range(1, count + 1)), channel  # published in seq order
    assert [e["seq"] for e in pushed] == list(range(1, 401))  # the real subscriber, in order


def test_faults_under_the_stream_pump_leave_every_channel_contiguous(
    moto: Moto, tables: dict[str, str], iot: Any
) -> None:
    dynamodb = moto.client("dynamodb")
    suffix = uuid.uuid4().hex[:8]
    sources = create_example_tables(dynamodb, suffix)
    flaky = FlakyDynamoDB(moto.client("dynamodb"), {2: "after", 5: "before", 9: "after"})
    spy = RecordingIot(iot, lambda call, envelope: call % 13 == 0)
    publisher, store = make_publisher(moto, settings_for(tables, sources), spy, flaky)
    owner = f"{REGION}:{uuid.uuid4()}"
    for version in range(40):
        for key in ("x", "y", "z"):
            dynamodb.put_item(
                TableName="Todos" + suffix,
                Item={"owner": {"S": owner}, "id": {"S": key}, "n": {"N": str(version)}},
            )
    streams = moto.client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName="Todos" + suffix)["Table"]["LatestStreamArn"]
    pump = StreamPump(streams, arn, publisher.handle, MappingSettings(batch_size=25))
    assert pump.drain(timeout_s=120) == 120
    assert pump.invocations > 120 // 25  # failures were retried
    channel = f"users/{owner}/todos"
    logged = log_of(store, channel)
    assert [e["seq"] for e in logged] == list(range(1, 121))
    assert len({e["id"] for e in logged}) == 120
    shown: dict[int, dict] = {}
    for envelope in spy.by_topic()["tidings/dev/" + channel]:
        assert shown.setdefault(envelope["seq"], envelope) == envelope
    assert sorted(shown) == list(range(1, 121))  # every change was pushed, none with 2 seqs


def test_an_item_over_the_inline_limit_arrives_as_ref_and_is_readable_through_the_api(
    moto: Moto, tables: dict[str, str], gateway: Gateway, iot: Any
) -> None:
    settings = settings_for(tables, CAPTURED_TABLES, inline_limit_bytes=4096)
    publisher, store = make_publisher(moto, settings, iot)
    record = event("stream_todos.json")["Records"][0]
    record["dynamodb"]["NewImage"]["notes"] = {"S": "é" * 10_000}
    channel = f"users/{OWNER}/todos"
    client = subscriber(gateway, OWNER, f"tidings/dev/{channel}")
    try:
        assert publisher.handle({"Records": [record]}) == {"batchItemFailures": []}
        _, payload = client.receive()
    finally:
        client.disconnect()
    pushed = json.loads(payload)
    assert len(payload) <= 4096
    assert pushed["ref"] is True and "new" not in pushed and pushed["seq"] == 1
    api = ChannelsApi(ROUTES, store, lambda identity: frozenset())
    status, body = api_get(api, OWNER, f"{channel}/changes", after="0")
    assert status == 200
    (change,) = body["changes"]
    assert change["seq"] == 1 and change["id"] == pushed["id"] and "ref" not in change
    assert change["new"]["notes"] == "é" * 10_000


def test_the_lambda_handler_wires_itself_from_the_environment(
    moto: Moto, tables: dict[str, str], gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend import aws_clients
    from backend import publisher as publisher_module

    role = new_publisher(gateway.credentials)
    env = {
        "TIDINGS_STAGE": "dev",
        "TIDINGS_TABLE_CHANGELOGTABLE": tables["ChangeLogTable"],
        "TIDINGS_TABLE_SEQUENCETABLE": tables["SequenceTable"],
        "TIDINGS_ROUTES_FILE": str(ROUTES_FILE),
        **{f"TIDINGS_TABLE_{k.upper()}": v for k, v in CAPTURED_TABLES.items()},
        "AWS_ENDPOINT_URL_DYNAMODB": moto.endpoint,
        "AWS_ENDPOINT_URL_IOT_DATA_PLANE": gateway.endpoint,
        "AWS_CA_BUNDLE": str(gateway.ca_file),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": role.access_key,
        "AWS_SECRET_ACCESS_KEY": role.secret_key,
        "AWS_SESSION_TOKEN": role.token,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws_clients.clear_caches()
    publisher_module.clear_caches()
    channel = f"users/{OWNER}/todos"
    client = subscriber(gateway, OWNER, f"tidings/dev/{channel}")
    try:
        from backend.publisher_handler import lambda_handler

        answer = lambda_handler(event("stream_todos.json"), None)
        assert answer == {"batchItemFailures": []}
        assert [e["seq"] for e in received(client, 3)] == [1, 2, 3]
    finally:
        client.disconnect()
        aws_clients.clear_caches()
        publisher_module.clear_caches()


def test_the_signed_publish_client_is_verified_by_the_gateway(gateway: Gateway) -> None:
    from botocore.credentials import Credentials

    from backend.errors import PublishError
    from backend.iot_publish import SignedPublishClient

    role = new_publisher(gateway.credentials)
    allowed = SignedPublishClient(
        gateway.endpoint,
        REGION,
        Credentials(role.access_key, role.secret_key, role.token),
        verify=str(gateway.ca_file),
    )
    client = subscriber(gateway, OWNER, f"tidings/dev/users/{OWNER}/todos")
    try:
        allowed.publish(topic=f"tidings/dev/users/{OWNER}/todos", qos=1, payload=b'{"a":1}')
        assert client.receive() == (f"tidings/dev/users/{OWNER}/todos", b'{"a":1}')
    finally:
        client.disconnect()
    wrong = SignedPublishClient(
        gateway.endpoint,
        REGION,
        Credentials(role.access_key, "x" * 40, role.token),
        verify=str(gateway.ca_file),
    )
    with pytest.raises(PublishError, match="HTTP 403"):
        wrong.publish(topic="tidings/dev/public/scores", qos=1, payload=b"{}")
    outside = SignedPublishClient(
        gateway.endpoint,
        REGION,
        Credentials(role.access_key, role.secret_key, role.token),
        verify=str(gateway.ca_file),
    )
    with pytest.raises(PublishError, match="HTTP 403"):
        outside.publish(topic="tidings/prod/public/scores", qos=1, payload=b"{}")


def test_the_signed_publish_client_retries_throttling_and_server_errors() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from botocore.credentials import Credentials

    from backend.errors import PublishError
    from backend.iot_publish import SignedPublishClient

    answers = [429, 200, 503, 503, 503]
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            self.send_response(answers.pop(0))
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = SignedPublishClient(
            f"http://127.0.0.1:{server.server_address[1]}", REGION, Credentials("a", "b")
        )
        client.publish(topic="tidings/dev/public/scores", qos=1, payload=b"{}")
        assert seen == ["/topics/tidings%2Fdev%2Fpublic%2Fscores?qos=1"] * 2
        with pytest.raises(PublishError, match="HTTP 503"):
            client.publish(topic="tidings/dev/public/scores", qos=1, payload=b"{}")
        assert len(seen) == 5
    finally:
        server.shutdown()
