"""An X.509 device end to end on the local stack, as on AWS: ``tidings devices add`` makes the
thing and its certificate; the device connects with MQTT over mutual TLS (awsiotsdk), receives
its own thing's channel when a DynamoDB item changes, is refused another thing's channel; it
gets credentials from the AWS IoT credentials provider (curl with its certificate) and reads
its channel's changes from the HTTP API with them (SigV4), and not another thing's; after
``tidings devices deactivate`` its connection is closed and a new one refused."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from tests.support.devices import devices_command as tidings
from tests.support.openapi import checked

ROOT = Path(__file__).resolve().parents[2]


def add_device(stack: Any, name: str, out: Path) -> dict[str, Any]:
    added = tidings(stack, "add", name, "--out", str(out))
    assert added.returncode == 0, added.stderr
    return dict(json.loads((out / f"{name}.json").read_text(encoding="utf-8")))


class Device:
    """awsiotsdk's MQTT 5 client over mutual TLS, with what it received and why it stopped."""

    def __init__(self, stack: Any, name: str, files: Path) -> None:
        from awsiot import mqtt5_client_builder

        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.arrived = threading.Event()
        self.connected: Future[bool] = Future()
        self.stopped = threading.Event()
        self.client = mqtt5_client_builder.mtls_from_path(
            endpoint="localhost",
            port=stack.mqtt_port,
            cert_filepath=str(files / f"{name}.cert.pem"),
            pri_key_filepath=str(files / f"{name}.private.key"),
            ca_filepath=str(files / "root-ca.pem"),
            client_id=name,
            on_publish_received=self._received,
            on_lifecycle_connection_success=lambda _: self._settle(True),
            on_lifecycle_connection_failure=lambda _: self._settle(False),
            on_lifecycle_disconnection=lambda _: self.stopped.set(),
        )

    def _settle(self, ok: bool) -> None:
        if not self.connected.done():
            self.connected.set_result(ok)

    def _received(self, data: Any) -> None:
        packet = data.publish_packet
        self.messages.append((packet.topic, json.loads(bytes(packet.payload))))
        self.arrived.set()

    def subscribe(self, topic: str) -> int:
        from awscrt import mqtt5

        answer = self.client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]
            )
        ).result(20)
        return int(answer.reason_codes[0])


@pytest.fixture(scope="module")
def devices(shared_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("devices")
    suffix = uuid.uuid4().hex[:6]
    names = {"a": f"pump-{suffix}", "b": f"fan-{suffix}"}
    return {key: (name, add_device(shared_stack, name, out), out) for key, name in names.items()}


def test_a_device_over_mutual_tls_receives_its_thing_and_reads_the_api(
    shared_stack: Any, devices: dict[str, Any]
) -> None:
    import requests
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    name, info, files = devices["a"]
    other = devices["b"][0]
    device = Device(shared_stack, name, files)
    device.client.start()
    try:
        assert device.connected.result(20) is True
        prefix = "tidings/dev/"
        assert device.subscribe(f"{prefix}things/{name}/settings") < 0x80
        assert device.subscribe(f"{prefix}things/{other}/settings") == 0x87  # not authorized
        shared_stack.client("dynamodb").put_item(
            TableName=shared_stack.tables["DeviceSettingsTable"],
            Item={"thing": {"S": name}, "setting": {"S": "rate"}, "value": {"N": "5"}},
        )
        assert device.arrived.wait(30)
        topic, change = device.messages[0]
        assert topic == f"{prefix}things/{name}/settings"
        assert change["seq"] == 1 and change["new"]["value"] == 5

        # the credentials provider, with the device's certificate (curl, as on a device)
        fetched = subprocess.run(
            [
                "curl",
                "--silent",
                "--show-error",
                "--cert",
                str(files / f"{name}.cert.pem"),
                "--key",
                str(files / f"{name}.private.key"),
                "--cacert",
                str(files / "root-ca.pem"),
                "-H",
                f"x-amzn-iot-thingname: {name}",
                f"https://{info['credentialsEndpoint']}/role-aliases/{info['roleAlias']}/credentials",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert fetched.returncode == 0, fetched.stderr
        raw = json.loads(fetched.stdout)["credentials"]
        credentials = Credentials(raw["accessKeyId"], raw["secretAccessKey"], raw["sessionToken"])

        def get(channel: str) -> requests.Response:
            url = f"{shared_stack.api_url}/v1/channels/{channel}/changes?after=0"
            request = AWSRequest(method="GET", url=url)
            SigV4Auth(credentials, "execute-api", shared_stack.config.region).add_auth(request)
            return checked(  # the answer as infra/openapi.yaml describes it
                requests.get(
                    url, headers=dict(request.headers), verify=shared_stack.ca_file, timeout=30
                )
            )

        mine = get(f"things/{name}/settings")
        assert mine.status_code == 200, mine.text
        assert [c["seq"] for c in mine.json()["changes"]] == [1]
        theirs = get(f"things/{other}/settings")
        assert theirs.status_code == 403, theirs.text
        assert set(theirs.json()) >= {"message"}
    finally:
        device.client.stop()


def test_a_deactivated_device_is_cut_off_and_refused(
    shared_stack: Any, devices: dict[str, Any]
) -> None:
    name, _info, files = devices["b"]
    device = Device(shared_stack, name, files)
    device.client.start()
    try:
        assert device.connected.result(20) is True
        deactivated = tidings(shared_stack, "deactivate", name)
        assert deactivated.returncode == 0, deactivated.stderr
        assert device.stopped.wait(20)  # the live connection is closed
    finally:
        device.client.stop()
    again = Device(shared_stack, name, files)
    again.client.start()
    try:
        assert again.connected.result(30) is False  # and a new one is refused
    finally:
        again.client.stop()
