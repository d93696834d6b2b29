"""MotoAuth's request → IAM permission mapping (botocore's own requests, as boto3 builds and
signs them), and the moto process's credential channel over a real pipe and real sockets.

The mapping tests take each request from boto3 just before it is sent (``before-send``), so
the headers, paths and bodies are exactly what a client sends; nothing is sent.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.awsauth.credential_store import credential_to_dict
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.motohost.auth import Permission, _request, permissions, service_info

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/orders"


class _Captured(Exception):
    pass


def captured(service: str, call: str, **params: Any) -> dict[str, Any]:
    """The WSGI environ and body of the request boto3 would send for ``call(**params)``."""
    client = boto3.client(
        service,
        region_name=REGION,
        endpoint_url="http://127.0.0.1:1",
        aws_access_key_id="AKIAEXAMPLEEXAMPLE00",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )
    seen: dict[str, Any] = {}

    def grab(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        body = request.body or b""
        if not isinstance(body, bytes):
            body = body.encode() if isinstance(body, str) else body.read()
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "PATH_INFO": parts.path,
            "RAW_URI": parts.path + ("?" + parts.query if parts.query else ""),
            "QUERY_STRING": parts.query,
        }
        for name, value in request.headers.items():
            value = value.decode() if isinstance(value, bytes) else value
            key = name.upper().replace("-", "_")
            environ[key if key in ("CONTENT_TYPE",) else "HTTP_" + key] = value
        seen["environ"], seen["body"] = environ, body
        raise _Captured

    client.meta.events.register(f"before-send.{service}.*", grab)
    with pytest.raises(_Captured):
        getattr(client, call)(**params)
    return seen


def needed(service: str, call: str, **params: Any) -> list[Permission]:
    request = captured(service, call, **params)
    name = "dynamodbstreams" if service == "dynamodbstreams" else service
    return permissions(
        service_info(name),
        _request(request["environ"], request["body"]),
        region=REGION,
        account_id=ACCOUNT,
    )


def test_dynamodb_calls_need_their_action_on_the_table_or_index() -> None:
    assert needed("dynamodb", "scan", TableName="orders") == [
        Permission("dynamodb:Scan", TABLE_ARN)
    ]
    assert needed(
        "dynamodb",
        "query",
        TableName="orders",
        IndexName="byCustomer",
        KeyConditionExpression="c = :c",
        ExpressionAttributeValues={":c": {"S": "x"}},
    ) == [Permission("dynamodb:Query", f"{TABLE_ARN}/index/byCustomer")]
    assert needed("dynamodb", "list_tables") == [Permission("dynamodb:ListTables", "*")]


def test_a_transaction_needs_each_items_action_on_each_table() -> None:
    items = [
        {"Put": {"TableName": "orders", "Item": {"k": {"S": "1"}}}},
        {"Update": {"TableName": "heads", "Key": {"k": {"S": "1"}}, "UpdateExpression": "SET a=:a",
                    "ExpressionAttributeValues": {":a": {"S": "1"}}}},
        {"ConditionCheck": {"TableName": "heads", "Key": {"k": {"S": "2"}},
                            "ConditionExpression": "attribute_exists(k)"}},
        {"Delete": {"TableName": "orders", "Key": {"k": {"S": "3"}}}},
    ]  # fmt: skip
    heads = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/heads"
    assert needed("dynamodb", "transact_write_items", TransactItems=items) == [
        Permission("dynamodb:PutItem", TABLE_ARN),
        Permission("dynamodb:UpdateItem", heads),
        Permission("dynamodb:ConditionCheckItem", heads),
        Permission("dynamodb:DeleteItem", TABLE_ARN),
    ]
    assert needed(
        "dynamodb",
        "batch_get_item",
        RequestItems={
            "orders": {"Keys": [{"k": {"S": "1"}}]},
            "heads": {"Keys": [{"k": {"S": "1"}}]},
        },
    ) == [
        Permission("dynamodb:BatchGetItem", TABLE_ARN),
        Permission("dynamodb:BatchGetItem", heads),
    ]
    assert needed(
        "dynamodb", "execute_statement", Statement="UPDATE \"orders\" SET a = 1 WHERE k = '1'"
    ) == [Permission("dynamodb:PartiQLUpdate", TABLE_ARN)]


def test_stream_calls_need_dynamodb_actions_on_the_stream() -> None:
    stream = f"{TABLE_ARN}/stream/2026-01-01T00:00:00.000"
    assert needed("dynamodbstreams", "describe_stream", StreamArn=stream) == [
        Permission("dynamodb:DescribeStream", stream)
    ]
    assert needed("dynamodbstreams", "get_records", ShardIterator=f"{stream}|1|abc") == [
        Permission("dynamodb:GetRecords", stream)
    ]


def test_sqs_calls_need_their_action_on_the_queue_from_its_url() -> None:
    url = f"http://127.0.0.1:1/{ACCOUNT}/dead-letters"
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:dead-letters"
    assert needed("sqs", "send_message", QueueUrl=url, MessageBody="x") == [
        Permission("sqs:SendMessage", queue)
    ]
    entries = [{"Id": "1", "MessageBody": "x"}]
    assert needed("sqs", "send_message_batch", QueueUrl=url, Entries=entries) == [
        Permission("sqs:SendMessage", queue)
    ]


def test_rest_calls_are_found_from_method_and_path() -> None:
    assert needed("iot", "attach_policy", policyName="tidings-dev-tenant-acme", target="x") == [
        Permission(
            "iot:AttachPolicy", f"arn:aws:iot:{REGION}:{ACCOUNT}:policy/tidings-dev-tenant-acme"
        )
    ]
    assert needed("iot", "list_policies") == [Permission("iot:ListPolicies", "*")]
    assert needed("s3", "get_object", Bucket="b", Key="a/b c.zip") == [
        Permission("s3:GetObject", "arn:aws:s3:::b/a/b c.zip")
    ]
    assert needed("s3", "list_objects_v2", Bucket="b") == [
        Permission("s3:ListBucket", "arn:aws:s3:::b")
    ]
    assert needed("lambda", "invoke", FunctionName="f") == [
        Permission("lambda:InvokeFunction", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f")
    ]
    assert needed("cloudformation", "describe_stacks", StackName="s") == [
        Permission(
            "cloudformation:DescribeStacks", f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/s/*"
        )
    ]


# --------------------------------------------------------------------------- the moto process


@pytest.fixture
def enforcing_moto() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``moto_process --iam`` on a free port, its stdin and stdout ours."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.motohost.process", "0", "--iam", REGION, ACCOUNT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    assert line[0] == "READY", line
    try:
        yield process, int(line[1])
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def send(process: subprocess.Popen[str], change: dict[str, Any]) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(change) + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def dynamodb(port: int, credential: Any) -> Any:
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id=credential.access_key_id,
        aws_secret_access_key=credential.secret_access_key,
        aws_session_token=credential.session_token,
        config=Config(retries={"max_attempts": 1}),
    )


def test_the_moto_process_learns_and_forgets_keys_over_its_stdin(enforcing_moto) -> None:
    process, port = enforcing_moto
    lister = mint_temporary_credential(
        "lister",
        [[{"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "dynamodb:ListTables", "Resource": "*"}]}]],
    )  # fmt: skip
    with pytest.raises(ClientError) as unknown:
        dynamodb(port, lister).list_tables()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert send(process, {"put": credential_to_dict(lister)}) == "ACK 1"
    assert dynamodb(port, lister).list_tables()["TableNames"] == []
    with pytest.raises(ClientError) as denied:
        dynamodb(port, lister).describe_table(TableName="t")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert send(process, {"put": {"access_key_id": "x"}}).startswith("NACK 2 ")
    assert send(process, {"remove": lister.access_key_id}) == "ACK 3"
    with pytest.raises(ClientError) as forgotten:
        dynamodb(port, lister).list_tables()
    assert forgotten.value.response["Error"]["Code"] == "UnrecognizedClientException"
    # unsigned: moto's own endpoints too
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/moto-api/reset")
    assert connection.getresponse().status == 403
    connection.close()
    # the stack going away (its end of the pipe closed) stops moto
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=10) == 0


def test_without_iam_the_moto_process_checks_nothing() -> None:
    """The unit-level moto (no ``--iam``) keeps accepting anything, by design."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.motohost.process", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        anyone = mint_temporary_credential("anyone", [])
        assert dynamodb(port, anyone).list_tables()["TableNames"] == []
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_moto_process_evaluates_dynamodb_leading_keys(enforcing_moto) -> None:
    """A policy limited by ``dynamodb:LeadingKeys`` to the caller's own partition, with the
    batch actions and Scan granted too: batches are checked on every item's partition, a
    Query on an index by the index's partition key, and a Scan (no partition named) passes
    ``ForAllValues`` vacuously, as on AWS."""
    process, port = enforcing_moto
    admin = mint_temporary_credential(
        "admin",
        [[{"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]],
    )  # fmt: skip
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/notes"
    own_partition = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "dynamodb:PutItem",
                    "dynamodb:GetItem",
                    "dynamodb:BatchWriteItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                ],
                "Resource": [table_arn, f"{table_arn}/index/*"],
                "Condition": {
                    "ForAllValues:StringEquals": {
                        "dynamodb:LeadingKeys": ["${cognito-identity.amazonaws.com:sub}"]
                    }
                },
            }
        ],
    }
    alice = mint_temporary_credential(
        "alice", [[own_partition]], variables={"cognito-identity.amazonaws.com:sub": "alice"}
    )
    assert send(process, {"put": credential_to_dict(admin)}) == "ACK 1"
    assert send(process, {"put": credential_to_dict(alice)}) == "ACK 2"
    dynamodb(port, admin).create_table(
        TableName="notes",
        KeySchema=[
            {"AttributeName": "owner", "KeyType": "HASH"},
            {"AttributeName": "id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "owner", "AttributeType": "S"},
            {"AttributeName": "id", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "byId",
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client = dynamodb(port, alice)

    def note(owner: str, item_id: str) -> dict[str, Any]:
        return {"owner": {"S": owner}, "id": {"S": item_id}}

    def refused(call: Any, **params: Any) -> str:
        with pytest.raises(ClientError) as caught:
            call(**params)
        return str(caught.value.response["Error"]["Code"])

    client.put_item(TableName="notes", Item=note("alice", "1"))
    assert refused(client.put_item, TableName="notes", Item=note("bob", "1")) == (
        "AccessDeniedException"
    )
    client.batch_write_item(
        RequestItems={"notes": [{"PutRequest": {"Item": note("alice", str(i))}} for i in (2, 3)]}
    )
    mixed = [{"PutRequest": {"Item": note(o, "9")}} for o in ("alice", "bob")]
    assert refused(client.batch_write_item, RequestItems={"notes": mixed}) == (
        "AccessDeniedException"
    )
    assert "Item" not in dynamodb(port, admin).get_item(TableName="notes", Key=note("alice", "9"))
    got = client.batch_get_item(RequestItems={"notes": {"Keys": [note("alice", "1")]}})
    assert len(got["Responses"]["notes"]) == 1
    keys = [note("alice", "1"), note("bob", "1")]
    assert refused(client.batch_get_item, RequestItems={"notes": {"Keys": keys}}) == (
        "AccessDeniedException"
    )
    # the index's partition key is the one that leads: "alice" is no id here
    by_id = {"IndexName": "byId", "KeyConditionExpression": "id = :v"}
    one, own = {":v": {"S": "1"}}, {":v": {"S": "alice"}}
    denied = refused(client.query, TableName="notes", ExpressionAttributeValues=one, **by_id)
    assert denied == "AccessDeniedException"
    assert client.query(TableName="notes", ExpressionAttributeValues=own, **by_id)["Items"] == []
    # no partition named: ForAllValues holds, the whole table comes back (hence: never
    # grant Scan under LeadingKeys)
    assert len(client.scan(TableName="notes")["Items"]) == 3
