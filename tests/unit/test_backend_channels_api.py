"""The channels API's request parsing and answers, with an in-memory change store (no I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.change_store import Head, LogEntry
from backend.channels_api import ChannelsApi, is_role_session, parse_request, resolve_me
from backend.errors import BadRequest, Forbidden
from backend.routes import load_routes

ROOT = Path(__file__).resolve().parents[2]
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
ALICE = "us-east-1:11111111-1111-4111-8111-111111111111"
CHANNEL = f"users/{ALICE}/todos"


def fixture() -> dict:
    return json.loads((ROOT / "tests" / "events" / "api_channel_changes.json").read_text())


class MemoryStore:
    def __init__(self, head: int, expires: float = 2e9) -> None:
        self.head_seq = head
        self.expires = expires
        self.heads_read = 0

    def head(self, channel: str) -> Head:
        self.heads_read += 1
        return Head(self.head_seq, 1)

    def read(self, channel: str, after: int, limit: int) -> list[LogEntry]:
        last = min(self.head_seq, after + limit)
        return [
            LogEntry(seq, 1, f'{{"seq":{seq},"n":0.10000000000000000555}}', int(self.expires))
            for seq in range(after + 1, last + 1)
        ]


def test_api_gateway_proxy_event_parses() -> None:
    request = parse_request(fixture(), ROUTES)
    assert request.kind == "changes" and request.channel == CHANNEL
    assert request.identity_id == ALICE
    assert (request.after, request.limit, request.wait_s, request.epoch) == (41, 50, 2.5, None)


def test_path_without_path_parameters_is_decoded_once() -> None:
    event = fixture()
    del event["pathParameters"]
    assert parse_request(event, ROUTES).channel == CHANNEL
    event["path"] = "/v1/channels/" + CHANNEL.replace("/", "%2F").replace(":", "%3A")
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    request = parse_request(event, ROUTES)  # ``path`` is still encoded: decoded here, once
    assert request.kind == "head" and request.channel == CHANNEL
    assert (request.after, request.limit, request.wait_s) == (0, 100, 0.0)


def test_path_parameters_are_not_decoded_a_second_time() -> None:
    # API Gateway has decoded pathParameters once: a client's %252F arrives as %2F, which is
    # text in a segment, never a slash
    event = fixture()
    event["pathParameters"] = {"channel": CHANNEL.replace("/todos", "%2Ftodos")}
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    with pytest.raises(BadRequest, match="invalid segment") as refused:
        parse_request(event, ROUTES)
    assert "%2Ftodos" in refused.value.message
    api = ChannelsApi(ROUTES, MemoryStore(head=1), lambda i: frozenset())  # type: ignore[arg-type]
    answer = api.handle(event)
    assert answer["statusCode"] == 400
    assert set(json.loads(answer["body"])) == {"error", "message"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("after", "\u00b2"),  # superscript two: str.isdigit() says yes, int() says no
        ("limit", "\u00b9"),
        ("after", "\u0663"),  # Arabic-Indic three: int() would take it
        ("epoch", "\u0663"),
        ("limit", "\uff15"),  # fullwidth five
        ("after", "1\u00b2"),
        ("wait", "\u0663"),  # float() takes it
        ("wait", "\u00b2"),
        ("wait", "1_0"),  # float() takes it
        ("wait", "1e1"),
        ("wait", " 2"),
        ("wait", "inf"),
        ("wait", "nan"),
        ("after", " 1"),
        ("after", "+1"),
    ],
)
def test_non_ascii_or_unusual_numbers_are_400_not_500(name: str, value: str) -> None:
    api = ChannelsApi(ROUTES, MemoryStore(head=45), lambda i: frozenset())  # type: ignore[arg-type]
    event = fixture()
    event["queryStringParameters"] = {name: value}
    event["multiValueQueryStringParameters"] = {name: [value]}
    answer = api.handle(event)
    assert answer["statusCode"] == 400, answer["body"]
    body = json.loads(answer["body"])
    assert body["error"] == "bad_request" and name in body["message"]
    assert set(body) == {"error", "message"}


def test_repeated_parameters_and_missing_identity_are_refused() -> None:
    event = fixture()
    event["multiValueQueryStringParameters"]["after"] = ["1", "2"]
    with pytest.raises(BadRequest, match="after"):
        parse_request(event, ROUTES)
    event = fixture()
    event["requestContext"]["identity"]["cognitoIdentityId"] = None
    with pytest.raises(Forbidden):
        parse_request(event, ROUTES)


def test_changes_answer_embeds_stored_envelopes_verbatim() -> None:
    api = ChannelsApi(ROUTES, MemoryStore(head=45), lambda i: frozenset())  # type: ignore[arg-type]
    event = fixture()
    event["queryStringParameters"] = {"after": "41", "limit": "2"}
    answer = api.handle(event)
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert [c["seq"] for c in body["changes"]] == [42, 43]
    assert body == {**body, "head": 45, "epoch": 1, "next": 43, "more": True}
    assert '"n":0.10000000000000000555}' in answer["body"]  # verbatim, not float-rounded


def test_expired_first_entry_is_410_with_head_and_epoch() -> None:
    store = MemoryStore(head=45, expires=1.0)
    api = ChannelsApi(ROUTES, store, lambda i: frozenset())  # type: ignore[arg-type]
    answer = api.handle(fixture())
    assert answer["statusCode"] == 410
    body = json.loads(answer["body"])
    assert body["error"] == "cursor_expired" and body["head"] == 45 and body["epoch"] == 1


def test_long_poll_uses_the_injected_clock_and_gives_up_after_wait() -> None:
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    store = MemoryStore(head=41)
    api = ChannelsApi(ROUTES, store, lambda i: frozenset(), clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    answer = api.handle(fixture())  # wait=2.5 s, after=41 == head
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["changes"] == []
    assert sum(slept) == pytest.approx(2.5) and store.heads_read == len(slept) + 1


def test_an_unexpected_error_is_a_500_without_details() -> None:
    class Broken(MemoryStore):
        def head(self, channel: str) -> Head:
            raise ZeroDivisionError("secret detail")

    api = ChannelsApi(ROUTES, Broken(0), lambda i: frozenset())  # type: ignore[arg-type]
    answer = api.handle(fixture())
    assert answer["statusCode"] == 500
    assert "secret" not in answer["body"] and json.loads(answer["body"])["error"] == "internal"


# ------------------------------------------------------------------------------ devices
# A device calls with the credentials the AWS IoT credentials provider gave it: a session of
# the template's DeviceRole, named by its certificate id (the event's userArn, as AWS sends it).
DEVICE_ROLE_ARN = "arn:aws:iam::123456789012:role/tidings-prod-DeviceRole-1A2B3C4D5E6F"
THING_CHANNEL = "things/sensor-1/settings"


def device_event(channel: str = THING_CHANNEL, suffix: str = "/changes") -> dict:
    event = json.loads((ROOT / "tests" / "events" / "api_device_settings.json").read_text())
    event["pathParameters"] = {"channel": channel + suffix}
    if not suffix:
        event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    return event


def device_api(store: MemoryStore | None = None) -> ChannelsApi:
    def no_tenant_lookups(identity: str) -> frozenset[str]:
        raise AssertionError("a device's tenants are never looked up")

    return ChannelsApi(
        ROUTES,
        store or MemoryStore(head=2),  # type: ignore[arg-type]
        no_tenant_lookups,
        device_role_arn=DEVICE_ROLE_ARN,
    )


def test_a_device_role_session_reads_the_channel_of_the_thing_its_path_names() -> None:
    event = device_event()
    request = parse_request(event, ROUTES, device_role_arn=DEVICE_ROLE_ARN)
    assert request.device and request.thing == "sensor-1"
    assert request.identity_id == event["requestContext"]["identity"]["userArn"]  # its slots
    answer = device_api().handle(event)
    assert answer["statusCode"] == 200, answer["body"]
    assert [c["seq"] for c in json.loads(answer["body"])["changes"]] == [1, 2]
    head = device_api().handle(device_event(suffix=""))
    assert json.loads(head["body"]) == {"channel": THING_CHANNEL, "head": 2, "epoch": 1}


@pytest.mark.parametrize("channel", ["public/scores", f"users/{ALICE}/todos", "tenants/acme/board"])
def test_a_device_reads_no_channel_that_is_not_a_things(channel: str) -> None:
    """IAM lets a device call its own thing's paths only; were it let through anyway, the
    function would not widen that: a thing is no identity, member or signed-in user."""
    answer = device_api().handle(device_event(channel))
    assert answer["statusCode"] == 403, answer["body"]
    assert json.loads(answer["body"])["error"] == "forbidden"


def test_the_thing_comes_from_the_path_and_iam_keeps_a_device_to_its_own() -> None:
    # the function cannot tell one thing's session from another's (the session is named by
    # the certificate): the role's policy (${credentials-iot:ThingName} in the execute-api
    # resource) refuses another thing's path before the function runs
    request = parse_request(
        device_event("things/sensor-2/settings"), ROUTES, device_role_arn=DEVICE_ROLE_ARN
    )
    assert request.device and request.thing == "sensor-2"


@pytest.mark.parametrize(
    "user_arn",
    [
        None,
        "arn:aws:sts::123456789012:assumed-role/tidings-authenticated/CognitoIdentityCredentials",
        "arn:aws:sts::999999999999:assumed-role/tidings-prod-DeviceRole-1A2B3C4D5E6F/cert",
        "arn:aws-cn:sts::123456789012:assumed-role/tidings-prod-DeviceRole-1A2B3C4D5E6F/cert",
        "arn:aws:sts::123456789012:assumed-role/tidings-prod-DeviceRole-1A2B3C4D5E6F",
        "arn:aws:iam::123456789012:role/tidings-prod-DeviceRole-1A2B3C4D5E6F",
        "arn:aws:iam::123456789012:user/tidings-prod-DeviceRole-1A2B3C4D5E6F",
        "tidings-prod-DeviceRole-1A2B3C4D5E6F/cert",
    ],
)
def test_a_caller_that_is_neither_an_identity_nor_a_device_session_is_refused(
    user_arn: str | None,
) -> None:
    event = device_event()
    event["requestContext"]["identity"]["userArn"] = user_arn
    with pytest.raises(Forbidden, match="devices"):
        parse_request(event, ROUTES, device_role_arn=DEVICE_ROLE_ARN)
    assert device_api().handle(event)["statusCode"] == 403


def test_without_a_device_role_no_caller_is_a_device() -> None:
    api = ChannelsApi(ROUTES, MemoryStore(head=2), lambda i: frozenset())  # type: ignore[arg-type]
    assert api.handle(device_event())["statusCode"] == 403


def test_a_cognito_identity_is_read_as_before_when_a_device_role_is_set() -> None:
    request = parse_request(fixture(), ROUTES, device_role_arn=DEVICE_ROLE_ARN)
    assert not request.device and request.thing is None and request.identity_id == ALICE


@pytest.mark.parametrize(
    ("user_arn", "role_arn", "expected"),
    [
        (
            "arn:aws:sts::123456789012:assumed-role/Device/c1",
            "arn:aws:iam::123456789012:role/Device",
            True,
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/Device/c1",
            "arn:aws:iam::123456789012:role/a/b/Device",
            True,
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/Device/c1",
            "arn:aws:iam::123456789012:role/Devices",
            False,
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/Devices/c1",
            "arn:aws:iam::123456789012:role/Device",
            False,
        ),
        ("arn:aws:sts::123456789012:assumed-role/Device/c1", "", False),
        ("arn:aws:sts::123456789012:assumed-role/Device/c1", None, False),
        (
            "arn:aws:sts::123456789012:assumed-role/Device/c1/x",
            "arn:aws:iam::123456789012:role/Device",
            False,
        ),
    ],
)
def test_is_role_session(user_arn: str, role_arn: str | None, expected: bool) -> None:
    assert is_role_session(user_arn, role_arn) is expected


def me_event(path: str) -> dict:
    event = fixture()
    del event["pathParameters"]
    event["path"] = "/v1/channels/" + path
    event["queryStringParameters"] = None
    event["multiValueQueryStringParameters"] = None
    return event


def test_me_is_the_callers_own_identity_in_an_owner_channel() -> None:
    request = parse_request(me_event("users/me/todos"), ROUTES)
    assert request.kind == "head" and request.channel == CHANNEL
    request = parse_request(me_event("users/me/todos/changes"), ROUTES)
    assert request.kind == "changes" and request.channel == CHANNEL


@pytest.mark.parametrize(
    ("channel", "kept"),
    [
        ("public/scores", "public/scores"),  # no owner segment
        ("tenants/me/board", "tenants/me/board"),  # a tenant named me, not the caller
        (f"users/{ALICE}/todos", CHANNEL),  # already resolved
    ],
)
def test_me_is_resolved_only_in_the_owner_segment(channel: str, kept: str) -> None:
    assert resolve_me(ROUTES, channel, ALICE) == kept
