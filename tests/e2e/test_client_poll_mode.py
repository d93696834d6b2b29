"""The Python client with ``transport="poll"`` against the whole local stack: no push
connection at all (the MQTT WebSocket is blocked throughout, and awsiotsdk is never
imported), every channel read from the channels API after its cursor. The guarantee tests of
the push transports, run in poll mode for each kind of sign-in (a password on the threaded
and the async client, a device secret, an X.509 certificate): changes once and in order, a
resume with ``after=`` without gap or duplicate, another identity's channel refused at once,
``close()`` leaving no thread. Then short polls ``poll_interval_s`` apart, and 30 s
credentials renewed while polling until the sign-in is refused (``signed_out``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client_sdk import X509, AccessDenied, ClientOptions, Device, Password, SignIn, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.client_kinds import open_client
from tests.support.devices import devices_command
from tests.support.local_stack import add_user, stack_config
from tests.support.recorder import Recorder, assert_exactly_once_in_order
from tests.support.threads import left_running, python_threads

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "poll-mode-password-1"
SIGN_INS = ("password", "password-async", "device", "x509")


def options(stack: LocalStack, **overrides: Any) -> ClientOptions:
    return ClientOptions(
        transport="poll",
        ca_file=stack.ca_file,
        cognito_endpoint=stack.identity_url,
        min_backoff_ms=200,
        max_backoff_ms=2000,
        **overrides,
    )


class Identity:
    """One sign-in of a kind, its own channel and how to write to it."""

    def __init__(self, sign_in: SignIn, channel: str, write: Callable[[str, int, int], None]):
        self.sign_in, self.channel, self._write = sign_in, channel, write

    def write(self, owner: str, count: int, start: int = 0, pause_s: float = 0.0) -> None:
        for n in range(start, start + count):
            self._write(owner, n, count)
            if pause_s:
                time.sleep(pause_s)


def todo_writer(stack: LocalStack) -> Callable[[str, int, int], None]:
    dynamodb = stack.client("dynamodb")

    def write(owner: str, n: int, _count: int) -> None:
        dynamodb.put_item(
            TableName=stack.tables["TodosTable"],
            Item={"owner": {"S": owner}, "id": {"S": f"item{n % 10}"}, "n": {"N": str(n)}},
        )

    return write


def setting_writer(stack: LocalStack) -> Callable[[str, int, int], None]:
    dynamodb = stack.client("dynamodb")

    def write(thing: str, n: int, _count: int) -> None:
        dynamodb.put_item(
            TableName=stack.tables["DeviceSettingsTable"],
            Item={"thing": {"S": thing}, "setting": {"S": f"s{n % 5}"}, "value": {"N": str(n)}},
        )

    return write


@pytest.fixture(scope="module")
def identities(
    shared_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Identity]:
    """One identity of its own per kind of sign-in."""
    from auth.store import UsersStore

    suffix = uuid.uuid4().hex[:6]
    found: dict[str, Identity] = {}
    for kind in ("password", "password-async"):
        name = f"poll-{kind}-{suffix}"
        add_user(shared_stack, name, PASSWORD, {"acme"})
        found[kind] = Identity(
            Password(name, PASSWORD), "users/me/todos", todo_writer(shared_stack)
        )
    store = UsersStore(shared_stack.client("dynamodb"), shared_stack.tables["UsersTable"])
    _, secret = store.add_device(f"poll-device-{suffix}", frozenset({"acme"}))
    found["device"] = Identity(
        Device(f"poll-device-{suffix}", secret), "users/me/todos", todo_writer(shared_stack)
    )
    out = tmp_path_factory.mktemp("poll-devices")
    thing = f"x509-poll-{suffix}"
    added = devices_command(shared_stack, "add", thing, "--out", str(out))
    assert added.returncode == 0, added.stderr
    device = X509.from_device_file(out / f"{thing}.json", region=shared_stack.config.region)
    found["x509"] = Identity(device, "things/me/settings", setting_writer(shared_stack))
    return found


@pytest.fixture
def mqtt_blocked(shared_stack: LocalStack) -> Iterator[None]:
    """No MQTT over WebSockets: a push client could only fall back; poll mode never tries."""
    shared_stack.run_on_gateway(shared_stack.gateway.block_mqtt)
    try:
        yield
    finally:
        shared_stack.run_on_gateway(shared_stack.gateway.unblock_mqtt)


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("sign_in", SIGN_INS)
def test_poll_mode_keeps_the_guarantees(
    shared_stack: LocalStack, identities: dict[str, Identity], sign_in: str, mqtt_blocked: None
) -> None:
    identity = identities[sign_in]
    kind = "async" if sign_in.endswith("async") else "threaded"
    chosen = options(shared_stack, poll_wait_s=5.0, fill_limit=20)
    before = python_threads()
    first = Recorder()
    with open_client(kind, shared_stack.api_url, identity.sign_in, chosen) as client:
        assert client.state == "polling"
        owner = client.identity_id
        identity.write(owner, 25)  # before subscribing: read with after=0, pages of 20
        subscription = client.subscribe(identity.channel, first, after=0)
        assert first.wait_for(25, 60)
        writer = threading.Thread(target=identity.write, args=(owner, 75, 25, 0.02))
        writer.start()
        writer.join()
        assert first.wait_for(100, 60)
        time.sleep(1.0)  # a late duplicate would show up now
        cursor = subscription.cursor
        assert cursor == 100
        stats = client.stats
        assert stats["pushed"] == 0 and stats["polls"] > 0 and stats["filled"] == 100
        assert client.state == "polling"
        other = "users/us-east-1:00000000-0000-4000-8000-00000000dead/todos"
        if sign_in == "x509":
            other = "things/not-this-thing/settings"
        started = time.monotonic()
        with pytest.raises(AccessDenied):
            client.subscribe(other, Recorder())
        assert time.monotonic() - started < 10  # refused at once, not retried
    assert [t.name for t in left_running(before) if not t.name.startswith("asyncio_")] == []
    assert_exactly_once_in_order(first, 100)
    assert first.lost == []

    identity.write(owner, 15, start=100)  # while no client is connected
    resumed = Recorder()
    with open_client(kind, shared_stack.api_url, identity.sign_in, chosen) as client:
        client.subscribe(identity.channel, resumed, after=cursor)
        assert resumed.wait_for(115, 60)
        time.sleep(1.0)
    assert_exactly_once_in_order(resumed, 15, first=101)
    assert resumed.lost == []


def test_short_polls_are_poll_interval_s_apart(
    shared_stack: LocalStack, identities: dict[str, Identity]
) -> None:
    identity = identities["password"]
    chosen = options(shared_stack, poll_wait_s=0, poll_interval_s=2.0)
    recorder = Recorder()
    with Tidings.connect(shared_stack.api_url, identity.sign_in, options=chosen) as client:
        subscription = client.subscribe("tenants/acme/board", recorder.on_change)
        start = subscription.cursor
        dynamodb = shared_stack.client("dynamodb")
        for n in range(3):
            dynamodb.put_item(
                TableName=shared_stack.tables["BoardsTable"],
                Item={"tenant": {"S": "acme"}, "id": {"S": f"poll{n}"}, "n": {"N": str(n)}},
            )
        assert recorder.wait_for(start + 3, 30)  # a short poll every 2 s picks them up
        polls = client.stats["polls"]
        time.sleep(6.0)
        made = client.stats["polls"] - polls
        assert 1 <= made <= 4  # about 3 in 6 s: not back to back
        assert client.state == "polling"


def test_poll_mode_never_imports_the_mqtt_sdk(
    shared_stack: LocalStack, identities: dict[str, Identity]
) -> None:
    identity = identities["password"]
    assert isinstance(identity.sign_in, Password)
    script = """
import json, sys
from client_sdk import ClientOptions, Password, Tidings
api_url, ca_file, cognito, user, password = sys.argv[1:]
options = ClientOptions(transport="poll", ca_file=ca_file, cognito_endpoint=cognito)
with Tidings.connect(api_url, Password(user, password), options=options) as client:
    client.subscribe("users/me/todos", print)
    state = str(client.state)
mqtt = sorted(m for m in sys.modules if m.startswith(("awsiot", "AWSIoT", "awscrt.mqtt")))
print(json.dumps({"state": state, "mqtt_modules": mqtt}))
"""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            shared_stack.api_url,
            str(shared_stack.ca_file),
            str(shared_stack.identity_url),
            identity.sign_in.username,
            PASSWORD,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said == {"state": "polling", "mqtt_modules": []}


def test_credentials_are_renewed_while_polling_until_sign_in_is_refused() -> None:
    from auth.store import UsersStore

    config = stack_config(credential_lifetime_s=30.0, parameters={"TokenDurationSeconds": "60"})
    with LocalStack(config) as running:
        add_user(running, "poller", PASSWORD, set())
        identity = Identity(Password("poller", PASSWORD), "users/me/todos", todo_writer(running))
        states: list[str] = []
        recorder = Recorder()
        chosen = options(running, poll_wait_s=3.0, refresh_margin_s=25.0, on_state=states.append)
        with Tidings.connect(running.api_url, identity.sign_in, options=chosen) as client:
            client.subscribe("users/me/todos", recorder.on_change)
            written = 0
            next_write = time.monotonic()
            while written < 40:  # one write a second: 40 s, with 30 s credentials
                time.sleep(max(0.0, next_write - time.monotonic()))
                next_write += 1.0
                identity.write(client.identity_id, 1, start=written)
                written += 1
            assert recorder.wait_for(written, 60)
            # 30 s credentials renewed with 25 s left: every 5 s or so while polling; the 60 s
            # OpenID token replaced at a renewal once it has less than 25 s left (about 35 s
            # after the first sign-in: waited for, not assumed done when the writes end)
            assert wait_until(lambda: client.stats["credential_refreshes"] >= 4, 60)
            assert wait_until(lambda: client.stats["logins"] >= 2, 60), client.stats
            UsersStore(running.client("dynamodb"), running.tables["UsersTable"]).remove_user(
                "poller"
            )
            # the next sign-in (a token with 25 s of 60 left) is refused: signed out
            assert wait_until(lambda: client.state == "signed_out", 90)
        assert_exactly_once_in_order(recorder, written)
        assert states[:2] == ["connecting", "polling"] and states[-1] == "signed_out"
        assert "live" not in states
