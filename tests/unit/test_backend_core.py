"""The publisher's pure core from captured stream events: values, routing, envelopes."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.attribute_values import dumps, from_attribute, from_image, loads
from backend.changes import Router, decode_record, encode_envelope, table_name_from_arn
from backend.errors import ConfigurationError, RecordError
from backend.routes import load_routes

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
TABLES = {
    "TodosTable": "Todos",
    "BoardsTable": "Boards",
    "ScoresTable": "Scores",
    "DeviceSettingsTable": "DeviceSettings",
}
OWNER = "us-east-1:0b6b3b5e-7c1d-4b8e-9a51-3f0c6f7b2a10"


def records(name: str) -> list[dict]:
    return json.loads((EVENTS / name).read_text())["Records"]


def routed(name: str):
    router = Router(ROUTES, TABLES)
    return [item for i, r in enumerate(records(name)) for item in router.route(i, decode_record(r))]


# ------------------------------------------------------------------------ attribute values
def test_numbers_stay_exact_through_json() -> None:
    image = records("stream_todos.json")[0]["dynamodb"]["NewImage"]
    plain = from_image(image)
    assert plain["price"] == Decimal("0.1") and not isinstance(plain["price"], float)
    assert plain["count"] == 7 and isinstance(plain["count"], int)
    text = dumps(plain)
    assert '"price":0.1' in text
    assert '"big":123456789012345678901234567890.123456789' in text
    assert loads(text)["big"] == Decimal("123456789012345678901234567890.123456789")


def test_every_attribute_type_has_a_plain_form() -> None:
    plain = from_image(records("stream_todos.json")[0]["dynamodb"]["NewImage"])
    assert plain["tags"] == ["home", "shop"]
    assert plain["ratings"] == [Decimal("1.5"), 2]
    assert plain["meta"] == {"nested": [Decimal("3.14159"), None]}
    assert plain["blob"] == "AAF0aWRpbmdz"  # base64, as DynamoDB JSON has it
    assert plain["done"] is False and plain["title"] == "Buy milk ✓"
    assert dumps(plain["title"]) == '"Buy milk ✓"'


@pytest.mark.parametrize("bad", [{"N": "NaN"}, {"N": "abc"}, {"X": "1"}, {"S": "a", "N": "1"}])
def test_malformed_attribute_values_are_record_errors(bad: dict) -> None:
    with pytest.raises(RecordError):
        from_attribute(bad)


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d.adjusted() < 120 and d.adjusted() > -120
    )
)
def test_any_dynamodb_number_round_trips_exactly(number: Decimal) -> None:
    value = from_attribute({"N": str(number)})
    assert Decimal(str(loads(dumps({"n": value}))["n"])) == number


# --------------------------------------------------------------------------- records
def test_stream_records_decode_to_changes() -> None:
    changes = [decode_record(r) for r in records("stream_todos.json")]
    assert [c.op for c in changes] == ["insert", "modify", "remove"]
    insert, modify, remove = changes
    assert insert.table_name == "Todos" and insert.old is None
    assert modify.old is not None and modify.old["done"] is False and modify.new["done"] is True
    assert remove.new is None and remove.old is not None and not remove.expired
    assert insert.at_ms > 1_600_000_000_000 and insert.at_ms % 1000 == 0
    assert insert.sequence_number == records("stream_todos.json")[0]["dynamodb"]["SequenceNumber"]


def test_ttl_expiry_is_a_remove_marked_expired() -> None:
    (change,) = [decode_record(r) for r in records("stream_todos_ttl_expiry.json")]
    assert change.op == "remove" and change.expired


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.pop("eventID"),
        lambda r: r.update(eventName="UPSERT"),
        lambda r: r.update(eventSourceARN="arn:aws:sqs:us-east-1:1:q"),
        lambda r: r["dynamodb"].pop("Keys"),
    ],
)
def test_malformed_records_are_record_errors(mutate) -> None:
    record = records("stream_todos.json")[0]
    mutate(record)
    with pytest.raises(RecordError):
        decode_record(record)


def test_table_name_from_stream_arn() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/My-Table.1/stream/2024-01-01T00:00:00.000"
    assert table_name_from_arn(arn) == "My-Table.1"


# --------------------------------------------------------------------------- routing
def test_todos_route_to_the_owners_channel() -> None:
    items = routed("stream_todos.json")
    assert [i.channel for i in items] == [f"users/{OWNER}/todos"] * 3
    assert [i.index for i in items] == [0, 1, 2]


def test_boards_and_scores_route_to_their_channels() -> None:
    assert [i.channel for i in routed("stream_boards.json")] == ["tenants/acme/board"]
    assert [i.channel for i in routed("stream_scores.json")] == ["public/scores"] * 2


def test_device_settings_route_to_the_things_channel() -> None:
    (item,) = routed("stream_device_settings.json")
    assert item.channel == "things/sensor-1/settings"
    envelope = loads(encode_envelope(item, 1, 1, 128 * 1024).full)
    assert envelope["new"] == {"thing": "sensor-1", "setting": "interval", "seconds": 30}
    assert "old" not in envelope


def test_a_table_without_route_is_a_record_error_and_a_missing_name_a_config_error() -> None:
    router = Router(ROUTES, {**TABLES, "TodosTable": "OtherTodos"})
    with pytest.raises(RecordError, match="no route for table 'Todos'"):
        router.route(0, decode_record(records("stream_todos.json")[0]))
    with pytest.raises(ConfigurationError, match="TIDINGS_TABLE_SCORESTABLE"):
        Router(ROUTES, {"TodosTable": "Todos", "BoardsTable": "Boards"})


def test_an_item_that_moves_is_announced_on_both_channels() -> None:
    record = records("stream_boards.json")[0]
    record["eventName"] = "MODIFY"
    body = record["dynamodb"]
    body["OldImage"] = json.loads(json.dumps(body["NewImage"]))
    body["NewImage"]["tenant"] = {"S": "globex"}
    body["Keys"] = {"id": {"S": "b1"}}  # the tenant is not part of this key here
    channels = [i.channel for i in Router(ROUTES, TABLES).route(0, decode_record(record))]
    assert channels == ["tenants/globex/board", "tenants/acme/board"]


# --------------------------------------------------------------------------- envelopes
def test_envelope_fields_in_contract_order() -> None:
    _, modify, remove = routed("stream_todos.json")
    envelope = json.loads(encode_envelope(modify, 5, 1, 128 * 1024).full)
    assert list(envelope) == [
        "v",
        "channel",
        "seq",
        "epoch",
        "id",
        "op",
        "keys",
        "new",
        "old",
        "at",
    ]
    assert envelope["seq"] == 5 and envelope["epoch"] == 1 and envelope["op"] == "modify"
    assert envelope["id"] == modify.change.event_id
    assert envelope["keys"] == {"owner": OWNER, "id": "t1"}
    assert envelope["old"]["done"] is False and envelope["new"]["done"] is True
    removed = json.loads(encode_envelope(remove, 6, 1, 128 * 1024).full)
    assert removed["new"] is None and removed["old"]["id"] == "t1"


def test_scores_route_sends_only_its_attributes_and_no_old_image() -> None:
    _, modify = routed("stream_scores.json")
    envelope = loads(encode_envelope(modify, 2, 1, 128 * 1024).full)
    assert envelope["new"] == {"game": "chess", "player": "ann", "score": Decimal("25.5")}
    assert "old" not in envelope


def test_ttl_expiry_envelope_says_expired() -> None:
    (item,) = routed("stream_todos_ttl_expiry.json")
    envelope = json.loads(encode_envelope(item, 9, 1, 128 * 1024).full)
    assert envelope["op"] == "remove" and envelope["expired"] is True


def test_envelope_over_the_inline_limit_is_published_as_ref() -> None:
    insert = routed("stream_todos.json")[0]
    full = encode_envelope(insert, 1, 1, 128 * 1024)
    assert not full.ref and full.published == full.full.encode()
    limit = len(full.published) - 1
    small = encode_envelope(insert, 1, 1, limit)
    assert small.ref and len(small.published) <= limit
    published = json.loads(small.published)
    assert published["ref"] is True and "new" not in published and "old" not in published
    assert published["seq"] == 1 and published["keys"] == {"owner": OWNER, "id": "t1"}
    assert json.loads(small.full) == json.loads(full.full)  # the log keeps the images


def test_a_channel_too_long_for_an_iot_topic_is_not_rendered() -> None:
    from backend.routes import MAX_CHANNEL_BYTES, parse_routes

    (route,) = parse_routes(
        "routes:\n  - table: T\n    channels: ['a/{x}/{y}']\n    readers: public\n"
    )
    assert route.render({"x": "k" * 100, "y": "v" * 100}) == ["a/" + "k" * 100 + "/" + "v" * 100]
    assert route.render({"x": "k" * 128, "y": "v" * 128}) == []
    assert len(("tidings/" + "s" * 20 + "/").encode()) + MAX_CHANNEL_BYTES <= 256
