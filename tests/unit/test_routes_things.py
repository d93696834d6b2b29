"""``readers: thing:<placeholder>``: parsed and refused like owner/tenant, and decided by
:func:`backend.access.may_read` for a thing principal (:meth:`Principal.of_thing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth.policies import readable_channels
from backend.access import Principal, may_read
from backend.routes import Readers, RouteError, load_routes, parse_routes

ROOT = Path(__file__).resolve().parents[2]
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
ALICE = Principal("us-east-1:aaaaaaaa-0000-4000-8000-000000000001", frozenset({"acme"}))
THING1 = Principal.of_thing("thing1")
THING2 = Principal.of_thing("thing2")


def route(readers: str, channel: str = "things/{thing}/settings") -> str:
    return (
        "routes:\n"
        "  - table: DeviceSettingsTable\n"
        f'    channels: ["{channel}"]\n'
        f"    readers: {readers}\n"
    )


def test_the_example_routes_send_device_settings_to_their_thing() -> None:
    (settings,) = [r for r in ROUTES if r.table == "DeviceSettingsTable"]
    assert settings.channels == ("things/{thing}/settings",)
    assert settings.readers == Readers("thing", "thing")
    assert str(settings.readers) == "thing:thing"
    assert settings.writers is None
    assert settings.render({"thing": "thing1", "setting": "volume", "value": 3}) == [
        "things/thing1/settings"
    ]


def test_thing_readers_are_parsed() -> None:
    (parsed,) = parse_routes(route('"thing:thing"'))
    assert parsed.readers == Readers("thing", "thing")


def test_thing_readers_must_name_a_placeholder_of_every_channel() -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(route('"thing:device"'), "routes.yaml")
    assert str(refused.value) == (
        "routes.yaml:2: readers 'thing:device' names {device}, "
        "which channel 'things/{thing}/settings' does not contain"
    )


@pytest.mark.parametrize("value", ['"things:thing"', '"device:thing"', '"thing"', "5"])
def test_unknown_reader_kinds_are_refused_naming_thing_too(value: str) -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(route(value), "routes.yaml")
    assert str(refused.value) == (
        "routes.yaml:2: 'readers' must be 'public', 'owner:<placeholder>', "
        "'tenant:<placeholder>' or 'thing:<placeholder>'"
    )


def test_a_thing_principal_has_a_name_and_no_identity() -> None:
    assert (THING1.identity_id, THING1.tenants, THING1.thing) == ("", frozenset(), "thing1")
    assert Principal("id").thing is None
    with pytest.raises(ValueError, match="thing name"):
        Principal.of_thing("")


@pytest.mark.parametrize(
    ("principal", "channel", "expected"),
    [
        (THING1, "things/thing1/settings", True),
        (THING1, "things/thing2/settings", False),
        (THING2, "things/thing2/settings", True),
        (THING1, "things/thing1/settings/x", False),
        (THING1, "things/thing1", False),
        # a thing reads its own channels only: no identity's, tenant's or public one
        (THING1, "public/scores", False),
        (THING1, "tenants/acme/board", False),
        (THING1, f"users/{ALICE.identity_id}/todos", False),
        # and no identity reads a thing's channel, whatever its id or tenants
        (ALICE, "things/thing1/settings", False),
        (Principal("thing1", frozenset({"thing1"})), "things/thing1/settings", False),
        (ALICE, "public/scores", True),
    ],
)
def test_may_read_thing_channels(principal: Principal, channel: str, expected: bool) -> None:
    assert may_read(ROUTES, principal, channel) is expected


def test_an_empty_identity_id_reads_no_owners_channel() -> None:
    # a thing principal's identity id is "", which no channel segment can be
    assert not may_read(ROUTES, THING1, "users//todos")


def test_readable_channels_of_a_thing_and_of_an_identity() -> None:
    assert readable_channels(ROUTES, THING1) == ["things/thing1/settings"]
    assert not any(c.startswith("things/") for c in readable_channels(ROUTES, ALICE))
    assert all(may_read(ROUTES, THING1, c) for c in readable_channels(ROUTES, THING1))
