"""One differential test per moto patch of ``infra/local/motohost/fixes/`` that had none:
the routing (``infra.local.motohost.fixes.routing``), iot-cognito
(``infra.local.motohost.fixes.iot_cognito``) and stream
(``infra.local.motohost.fixes.stream_writes``) patches.

Each test shows the behaviour with the patch next to moto's own: either two moto servers
receive the same calls, the local stack's moto process (``infra.local.motohost.process``, every
fix applied) and moto as released (``python -m moto.server``, no fix), or the patched
function is compared with moto's original, called directly.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.moto_server import free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
IDENTITY_ID = "eu-west-1:0b6b3b5e-7c1d-4b8e-9a51-3f0c6f7b2a10"  # issued by the local service


class Motos:
    """Two moto servers: the local stack's (patched) and moto as released."""

    def __init__(self, patched: str, plain: str, notifications: socket.socket) -> None:
        self.patched = patched
        self.plain = plain
        self.notifications = notifications

    def client(self, service: str, url: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"max_attempts": 1}),
        )


@pytest.fixture(scope="module")
def motos() -> Iterator[Motos]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    notifications = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    notifications.bind(("127.0.0.1", 0))
    notifications.settimeout(10)
    patched = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.motohost.process",
            "0",
            str(notifications.getsockname()[1]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    try:
        assert patched.stdout is not None
        line = patched.stdout.readline().strip()
        assert line.startswith("READY "), line
        plain_url = f"http://127.0.0.1:{port}"
        wait_until_serving(plain_url)
        yield Motos(f"http://127.0.0.1:{line.split()[1]}", plain_url, notifications)
    finally:
        for process in (patched, plain):
            process.terminate()
            process.wait(timeout=10)
        notifications.close()


def wait_until_serving(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ------------------------------------------------------------------------------ stream
def mapped_table(motos: Motos, url: str) -> tuple[str, str]:
    """A table with a stream, and a Lambda function mapped to it in moto; (table, stream)."""
    dynamodb, lam, iam = (motos.client(s, url) for s in ("dynamodb", "lambda", "iam"))
    table = f"mapped-{uuid.uuid4().hex[:8]}"
    stream = dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    role = iam.create_role(RoleName=table, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    lam.create_function(
        FunctionName=table,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    lam.create_event_source_mapping(
        EventSourceArn=stream, FunctionName=table, StartingPosition="TRIM_HORIZON"
    )
    return table, stream


def records(motos: Motos, url: str, stream: str) -> list[dict[str, Any]]:
    streams = motos.client("dynamodbstreams", url)
    (shard,) = streams.describe_stream(StreamArn=stream)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(
        StreamArn=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return list(streams.get_records(ShardIterator=iterator)["Records"])


def test_stream_patch_keeps_a_mapped_tables_records_for_the_pump_and_notifies_it(
    motos: Motos,
) -> None:
    """``apply_stream_fix``: moto only appends stream records, and says which table has new ones.

    moto as released runs every mapped function itself on each stream write (through
    Docker) and, when that returns, empties the stream: the local stack's pump would read
    nothing. Patched, the record stays in the stream, and the moto process sends the table's
    name to the pump's notification port.
    """
    answers = {}
    for url in (motos.patched, motos.plain):
        table, stream = mapped_table(motos, url)
        motos.client("dynamodb", url).put_item(TableName=table, Item={"pk": {"S": "k"}})
        answers[url] = (table, records(motos, url, stream))
    table, patched = answers[motos.patched]
    assert [(r["eventName"], r["dynamodb"]["Keys"]) for r in patched] == [
        ("INSERT", {"pk": {"S": "k"}})
    ]
    assert motos.notifications.recvfrom(1024)[0].decode() == table
    _, plain = answers[motos.plain]
    assert plain == []  # moto delivered the record to its own Lambda and dropped it


# ------------------------------------------------------------------------------ iot-cognito
def test_iot_cognito_patch_attaches_a_policy_to_an_identity_moto_did_not_issue(
    motos: Motos,
) -> None:
    """``apply_iot_cognito_targets_fix``: IoT ``AttachPolicy`` takes any Cognito identity id.

    The local identity service issues the identity ids; moto as released only knows the ids
    its own cognito-identity issued and answers ``ResourceNotFoundException``, so the login
    could not attach an identity's IoT policy.
    """
    document = '{"Version": "2012-10-17", "Statement": []}'
    outcomes = {}
    for url in (motos.patched, motos.plain):
        iot = motos.client("iot", url)
        iot.create_policy(policyName="tidings-dev-identity", policyDocument=document)
        try:
            iot.attach_policy(policyName="tidings-dev-identity", target=IDENTITY_ID)
        except ClientError as exc:
            outcomes[url] = exc.response["Error"]["Code"]
        else:
            attached = iot.list_attached_policies(target=IDENTITY_ID)["policies"]
            outcomes[url] = [p["policyName"] for p in attached]
    assert outcomes[motos.patched] == ["tidings-dev-identity"]
    assert outcomes[motos.plain] == "ResourceNotFoundException"


def test_iot_cognito_patch_leaves_other_targets_to_moto(motos: Motos) -> None:
    """``apply_iot_cognito_targets_fix``: a target that is not an identity id is moto's to judge."""
    codes = []
    for url in (motos.patched, motos.plain):
        iot = motos.client("iot", url)
        iot.create_policy(policyName="p-other", policyDocument='{"Version": "2012-10-17"}')
        target = f"arn:aws:iot:{REGION}:123456789012:cert/{'0' * 64}"
        with pytest.raises(ClientError) as refused:
            iot.attach_policy(policyName="p-other", target=target)
        codes.append(refused.value.response["Error"]["Code"])
    assert codes == ["ResourceNotFoundException"] * 2


def test_iot_cognito_patch_lets_a_certificate_be_deleted_beside_an_identity(
    motos: Motos,
) -> None:
    """``apply_iot_cognito_targets_fix``: with a policy attached to an identity, deleting an
    inactive certificate works (moto asked the identity for its certificate id: a 500)."""
    iot = motos.client("iot", motos.patched)
    iot.create_policy(policyName="p-identity", policyDocument='{"Version": "2012-10-17"}')
    iot.attach_policy(policyName="p-identity", target=IDENTITY_ID)
    created = iot.create_keys_and_certificate(setAsActive=False)
    iot.delete_certificate(certificateId=created["certificateId"])
    with pytest.raises(ClientError) as gone:
        iot.describe_certificate(certificateId=created["certificateId"])
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    attached = iot.list_attached_policies(target=IDENTITY_ID)["policies"]
    assert "p-identity" in [p["policyName"] for p in attached]  # the identity keeps its own


# ------------------------------------------------------------------------------ routing
HOSTS = [
    "dynamodb.{region}.amazonaws.com",
    "streams.dynamodb.{region}.amazonaws.com",
    "sqs.{region}.amazonaws.com",
    "iot.{region}.amazonaws.com",
    "data-ats.iot.{region}.amazonaws.com",
    "cloudformation.{region}.amazonaws.com",
    "lambda.{region}.amazonaws.com",
    "{region}.example.invalid",
    "127.0.0.1:{port}",
]


def test_routing_patch_answers_as_moto_and_looks_each_host_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``apply_routing_fix``: the service of a host name is looked up once, then remembered.

    moto as released lists its service modules and tries its URL patterns on every request,
    under one lock that every request waits for; patched, the same host gets the same
    answer without a second lookup.
    """
    from moto import backends
    from moto.moto_server import werkzeug_app

    from infra.local.motohost.fixes.routing import apply_routing_fix

    apply_routing_fix()
    dispatcher: Any = werkzeug_app.DomainDispatcherApplication
    app = dispatcher(werkzeug_app.create_backend_app)
    original = dispatcher._tidings_original_get_backend_for_host
    lookups: list[str] = []
    list_modules = backends.list_of_moto_modules

    def counted() -> Any:
        lookups.append("lookup")
        return list_modules()

    monkeypatch.setattr(backends, "list_of_moto_modules", counted)
    region = f"zz-{uuid.uuid4().hex[:8]}-1"  # hosts no earlier test has looked up
    hosts = [h.format(region=region, port=free_port()) for h in HOSTS]
    patched_answers = [[app.get_backend_for_host(h) for h in hosts] for _ in range(3)]
    patched_lookups = len(lookups)
    lookups.clear()
    moto_answers = [[original(app, h) for h in hosts] for _ in range(3)]
    assert patched_answers == moto_answers
    assert moto_answers[0][:7] == [
        "dynamodb",
        "dynamodbstreams",
        "sqs",
        "iot",
        "iotdata",
        "cloudformation",
        "awslambda",
    ]
    assert moto_answers[0][7:] == [None, None]
    assert len(lookups) == 3 * len(hosts)  # moto: every call looks up again
    assert patched_lookups == len(hosts)  # patched: once per host
