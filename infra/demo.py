"""``tidings demo``: the local gateway and real clients in a short scripted session.

It starts the local AWS IoT gateway, signs two identities in (temporary credentials with the
role and IoT policies Tidings attaches), connects each with the AWS IoT Device SDK (MQTT 5
over a SigV4-signed WebSocket), publishes through boto3's ``iot-data`` client as the
publisher Lambda does, and shows every update arriving with its latency, and user B refused
user A's channel. Exits 0 only if every expected update arrived and every refusal happened.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from infra.local.broker import BrokerConfig
from infra.local.credential_store import CredentialStore, StoredCredential
from infra.local.gateway import GatewayConfig
from infra.local.runner import GatewayThread
from infra.local.temporary_credentials import mint_temporary_credential

__all__ = ["run_demo"]

REGION = "us-east-1"
STAGE = "dev"
ACCOUNT = "123456789012"
_SUB = "${cognito-identity.amazonaws.com:sub}"
_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"


def _identity_policy() -> dict[str, Any]:
    arn = f"arn:aws:iot:{REGION}:{ACCOUNT}"
    prefix = f"tidings/{STAGE}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": [f"{arn}:client/{_SUB}", f"{arn}:client/{_SUB}-*"],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": [
                    f"{arn}:topicfilter/{prefix}/users/{_SUB}/*",
                    f"{arn}:topicfilter/{prefix}/public/*",
                ],
            },
            {
                "Effect": "Allow",
                "Action": "iot:Receive",
                "Resource": [
                    f"{arn}:topic/{prefix}/users/{_SUB}/*",
                    f"{arn}:topic/{prefix}/public/*",
                ],
            },
        ],
    }


def _sign_in(store: CredentialStore, name: str) -> StoredCredential:
    identity_id = f"{REGION}:{uuid.uuid5(uuid.NAMESPACE_URL, 'tidings-demo/' + name)}"
    policy = _identity_policy()
    credential = mint_temporary_credential(
        identity_id,
        [[policy], [policy]],
        variables={"cognito-identity.amazonaws.com:sub": identity_id},
    )
    store.put(credential)
    return credential


class _Subscriber:
    def __init__(self, name: str, credential: StoredCredential, port: int, ca_file: Path) -> None:
        from awscrt import auth, mqtt5
        from awsiot import mqtt5_client_builder

        self.name = name
        self.credential = credential
        self.inbox: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        connected = threading.Event()
        self.failure: Any = None

        def on_publish(data: Any) -> None:
            packet = data.publish_packet
            self.inbox.put((packet.topic, bytes(packet.payload), time.time()))

        def on_failure(data: Any) -> None:
            self.failure = data
            connected.set()

        self._mqtt5 = mqtt5
        self.client = mqtt5_client_builder.websockets_with_default_aws_signing(
            region=REGION,
            credentials_provider=auth.AwsCredentialsProvider.new_static(
                credential.access_key_id, credential.secret_access_key, credential.session_token
            ),
            endpoint="localhost",
            port=port,
            ca_filepath=str(ca_file),
            client_id=f"{credential.principal}-demo",
            on_publish_received=on_publish,
            on_lifecycle_connection_success=lambda _d: connected.set(),
            on_lifecycle_connection_failure=on_failure,
            enable_metrics_collection=False,
        )
        self.client.start()
        if not connected.wait(15) or self.failure is not None:
            raise RuntimeError(f"{name} could not connect: {self.failure!r}")

    def subscribe(self, topic: str) -> bool:
        mqtt5 = self._mqtt5
        suback = self.client.subscribe(
            mqtt5.SubscribePacket(
                subscriptions=[mqtt5.Subscription(topic, mqtt5.QoS.AT_LEAST_ONCE)]
            )
        ).result(15)
        return all(int(code) < 0x80 for code in suback.reason_codes)

    def stop(self) -> None:
        self.client.stop()


def run_demo(state_dir: Path) -> int:
    """Run the scripted session; returns the process exit code."""
    import boto3

    store = CredentialStore()
    config = GatewayConfig(port=0, state_dir=state_dir, broker=BrokerConfig(region=REGION))
    failures: list[str] = []
    with GatewayThread(config, store) as gateway:
        print(f"Local AWS IoT gateway: wss://localhost:{gateway.port}/mqtt  (CA {gateway.ca_file})")
        alice_cred = _sign_in(store, "alice")
        bob_cred = _sign_in(store, "bob")
        publisher = mint_temporary_credential(
            "tidings-publisher",
            [
                [
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "iot:Publish",
                                "Resource": f"{_ARN}:topic/tidings/{STAGE}/*",
                            }
                        ],
                    }
                ]
            ],
        )
        store.put(publisher)
        print(f"alice signed in as {alice_cred.principal}")
        print(f"bob   signed in as {bob_cred.principal}")
        alice = _Subscriber("alice", alice_cred, gateway.port, gateway.ca_file)
        bob = _Subscriber("bob", bob_cred, gateway.port, gateway.ca_file)
        try:
            alice_topic = f"tidings/{STAGE}/users/{alice_cred.principal}/todos"
            public_topic = f"tidings/{STAGE}/public/scores"
            for who, topic in ((alice, alice_topic), (alice, public_topic), (bob, public_topic)):
                ok = who.subscribe(topic)
                print(f"{who.name:5} SUBSCRIBE {topic}: {'granted' if ok else 'REFUSED'}")
                if not ok:
                    failures.append(f"{who.name} was refused {topic}")
            refused = not bob.subscribe(alice_topic)
            print(
                f"bob   SUBSCRIBE {alice_topic}: "
                f"{'refused (not authorized), as it must be' if refused else 'GRANTED (wrong!)'}"
            )
            if not refused:
                failures.append("bob was allowed to subscribe to alice's channel")
            iot_data = boto3.client(
                "iot-data",
                endpoint_url=gateway.endpoint,
                verify=str(gateway.ca_file),
                region_name=REGION,
                aws_access_key_id=publisher.access_key_id,
                aws_secret_access_key=publisher.secret_access_key,
                aws_session_token=publisher.session_token,
            )
            plan = [
                (alice_topic, {"op": "insert", "new": {"id": "t1", "title": "buy milk"}}, [alice]),
                (alice_topic, {"op": "modify", "new": {"id": "t1", "done": True}}, [alice]),
                (
                    public_topic,
                    {"op": "insert", "new": {"game": "g1", "player": "bob", "score": 42}},
                    [alice, bob],
                ),
            ]
            for topic, body, receivers in plan:
                sent = time.time()
                iot_data.publish(topic=topic, qos=1, payload=json.dumps(body).encode())
                for receiver in receivers:
                    try:
                        got_topic, payload, at = receiver.inbox.get(timeout=10)
                    except queue.Empty:
                        failures.append(f"{receiver.name} never got {topic}")
                        print(f"  {receiver.name:5} MISSED {topic}")
                        continue
                    ok = got_topic == topic and json.loads(payload) == body
                    print(
                        f"  {receiver.name:5} <- {got_topic}  {payload.decode()}  "
                        f"({(at - sent) * 1000:.1f} ms)"
                    )
                    if not ok:
                        failures.append(f"{receiver.name} got the wrong message on {topic}")
            time.sleep(0.3)
            if not bob.inbox.empty():
                failures.append("bob received something he may not read")
        finally:
            alice.stop()
            bob.stop()
    if failures:
        print("DEMO FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("Demo OK: every update arrived once, and bob was refused alice's channel.")
    return 0
