"""The Python client as an X.509 device against the whole local stack: ``tidings devices add``
makes the thing and its certificate, ``X509.from_device_file`` reads what it wrote, and the
client connects over MQTT over mutual TLS as the thing (awsiotsdk's MQTT 5 and
AWSIoTPythonSDK), with no ``/v1/login``. It receives its thing's DynamoDB changes once and in
order through connection cuts, catches up through the channels API with credentials from the
AWS IoT credentials provider, is refused another thing's channel, polls the API when the mTLS
port cannot be reached, and is refused outright once its certificate is deactivated."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from client_sdk import X509, AccessDenied, ClientOptions, SignInFailed, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.client_kinds import open_client
from tests.support.devices import devices_command
from tests.support.recorder import Recorder, assert_exactly_once_in_order
from tests.support.threads import left_running, python_threads

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
TRANSPORTS = ("mqtt5", "v1")


@pytest.fixture(scope="module")
def devices(shared_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, X509]:
    """The module's own things (unique names: one connection per thing at a time)."""
    out = tmp_path_factory.mktemp("x509-devices")
    suffix = uuid.uuid4().hex[:6]
    found = {}
    for role in (*TRANSPORTS, "async", "legacy", "poll", "other", "revoked"):
        name = f"x509-{role}-{suffix}"
        added = devices_command(shared_stack, "add", name, "--out", str(out))
        assert added.returncode == 0, added.stderr
        found[role] = X509.from_device_file(out / f"{name}.json", region=shared_stack.config.region)
    return found


def options(stack: LocalStack, **overrides: Any) -> ClientOptions:
    return ClientOptions(
        ca_file=stack.ca_file, min_backoff_ms=200, max_backoff_ms=2000, **overrides
    )


def write_settings(
    stack: LocalStack, thing: str, count: int, start: int = 0, pause_s: float = 0.0
) -> None:
    dynamodb = stack.client("dynamodb")
    for n in range(start, start + count):
        dynamodb.put_item(
            TableName=stack.tables["DeviceSettingsTable"],
            Item={"thing": {"S": thing}, "setting": {"S": f"s{n % 5}"}, "value": {"N": str(n)}},
        )
        if pause_s:
            time.sleep(pause_s)


def wait_state(client: Tidings, states: tuple[str, ...], timeout: float) -> bool:
    deadline = time.time() + timeout
    while client.state not in states and time.time() < deadline:
        time.sleep(0.1)
    return client.state in states


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_device_receives_its_thing_once_and_in_order_through_cuts(
    shared_stack: LocalStack, devices: dict[str, X509], transport: str
) -> None:
    device = devices[transport]
    thing = device.thing_name
    write_settings(shared_stack, thing, 5)  # before connecting: read with after=0
    recorder = Recorder()
    before = python_threads()
    with Tidings.connect(
        shared_stack.api_url, device, options=options(shared_stack, transport=transport)
    ) as client:
        assert client.state in ("live", "catching_up") and client.identity_id == thing
        sub = client.subscribe(
            "things/me/settings", recorder.on_change, after=0, on_continuity_lost=recorder.on_lost
        )
        assert sub.channel == f"things/{thing}/settings"
        assert recorder.wait_for(5, 30)  # catch-up through the API, signed as the device

        writer = threading.Thread(
            target=write_settings, args=(shared_stack, thing, 150, 5), kwargs={"pause_s": 0.02}
        )
        writer.start()
        cuts = 0
        while cuts < 3:
            time.sleep(0.7)
            cuts += shared_stack.run_on_gateway(shared_stack.gateway.drop_clients, thing) > 0
        writer.join()
        assert recorder.wait_for(155, 90)
        time.sleep(1.0)  # a late duplicate would show up now
        assert wait_state(client, ("live",), 30)
        stats = client.stats
        assert stats["reconnects"] >= 3 and stats["pushed"] > 0
        assert stats["logins"] == 0 and stats["credential_refreshes"] >= 1

        other = devices["other"].thing_name
        with pytest.raises(AccessDenied):
            client.subscribe(f"things/{other}/settings", recorder.on_change)
    # close() joined every thread the client started (asyncio_N: the in-process stack's)
    assert [name for name in left_running(before) if not name.startswith("asyncio_")] == []
    assert_exactly_once_in_order(recorder, 155)
    assert recorder.lost == []
    assert recorder.changes[-1]["new"] == {"thing": thing, "setting": "s4", "value": 154}


def test_the_async_client_as_a_device(shared_stack: LocalStack, devices: dict[str, X509]) -> None:
    device = devices["async"]
    thing = device.thing_name
    write_settings(shared_stack, thing, 3)
    recorder = Recorder()
    with open_client("async", shared_stack.api_url, device, options(shared_stack)) as client:
        client.subscribe("things/me/settings", recorder, after=0)
        assert recorder.wait_for(3, 30)
        assert shared_stack.run_on_gateway(shared_stack.gateway.drop_clients, thing) == 1
        write_settings(shared_stack, thing, 20, start=3)
        assert recorder.wait_for(23, 60)
        time.sleep(0.5)
    assert_exactly_once_in_order(recorder, 23)


def test_the_0x_form_signs_in_as_a_device(
    shared_stack: LocalStack, devices: dict[str, X509]
) -> None:
    device = devices["legacy"]
    with (
        pytest.warns(DeprecationWarning, match="deprecated"),
        Tidings.connect(
            shared_stack.api_url,
            method="x509",
            cert_file=device.cert_file,
            key_file=device.key_file,
            thing_name=device.thing_name,
            endpoint=device.endpoint,
            port=device.port,
            role_alias=device.role_alias,
            credentials_endpoint=device.credentials_endpoint,
            region=device.region,
            ca_file=shared_stack.ca_file,  # options, as in 0.x
            max_connection_age_s=1.0,
        ) as client,
    ):
        assert client.identity_id == device.thing_name
        assert client.state in ("live", "catching_up")
        time.sleep(3.0)  # mutual TLS has no 24 h limit: no renewal to race for the client id
        assert client.state == "live" and client.stats["renewals"] == 0
        assert client.stats["reconnects"] == 0


def test_an_unreachable_mtls_port_falls_back_to_polling_the_api(
    shared_stack: LocalStack, devices: dict[str, X509]
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    info = devices["poll"]
    device = X509(
        info.cert_file,
        info.key_file,
        info.thing_name,
        endpoint=info.endpoint,
        port=closed_port,
        role_alias=info.role_alias,
        credentials_endpoint=info.credentials_endpoint,
        region=info.region,
        ca_file=info.ca_file,
    )
    recorder = Recorder()
    chosen = options(shared_stack, fallback_after_s=1.0, poll_wait_s=2.0, connect_timeout_s=20.0)
    with Tidings.connect(shared_stack.api_url, device, options=chosen) as client:
        assert client.state == "polling"
        client.subscribe("things/me/settings", recorder.on_change, after=0)
        write_settings(shared_stack, device.thing_name, 12)
        assert recorder.wait_for(12, 60)
        assert client.state == "polling" and client.stats["polls"] > 0
    assert_exactly_once_in_order(recorder, 12)


def test_a_deactivated_certificate_cannot_connect(
    shared_stack: LocalStack, devices: dict[str, X509]
) -> None:
    device = devices["revoked"]
    deactivated = devices_command(shared_stack, "deactivate", device.thing_name)
    assert deactivated.returncode == 0, deactivated.stderr
    before = python_threads()
    with pytest.raises(SignInFailed, match="credentials provider refused"):
        Tidings.connect(shared_stack.api_url, device, options=options(shared_stack))
    assert left_running(before) == []
