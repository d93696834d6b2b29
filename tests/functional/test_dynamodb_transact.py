"""The publisher's hand-signed ``TransactWriteItems``: same answers and errors as boto3's.

Against moto in server mode, results and ``ClientError`` responses are compared with boto3's
for the same calls. A scripted HTTP server on 127.0.0.1 checks the SigV4 signature with the
local stack's verifier and answers throttling, 5xx and validation errors, to count retries.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from backend.dynamodb_transact import TransactClient
from infra.local.awsauth.credential_store import StoredCredential
from infra.local.awsauth.sigv4 import SignatureError, verify_authorization_header
from tests.support.moto_server import moto_server

REGION = "us-east-1"
KEY, SECRET = "AKIATRANSACT", "transact-secret"


def boto3_dynamodb(url: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=Config(retries={"max_attempts": 1}),
    )


def transact_client(url: str) -> TransactClient:
    return TransactClient(boto3_dynamodb(url), Credentials(KEY, SECRET))


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        boto3_dynamodb(url).create_table(
            TableName="Tx",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield url


def put(pk: str, condition: str | None = None, **extra: Any) -> dict[str, Any]:
    action: dict[str, Any] = {
        "TableName": "Tx",
        "Item": {"pk": {"S": pk}, "n": {"N": "1"}, "b": {"B": b"\x00\x01"}},
    }
    if condition:
        action["ConditionExpression"] = condition
    action.update(extra)
    return {"Put": action}


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    response = dict(caught.value.response)
    response.pop("ResponseMetadata")
    return response


def test_a_transaction_is_written_and_answers_like_boto3(moto_url: str) -> None:
    client = transact_client(moto_url)
    answer = client.transact_write_items(TransactItems=[put("a"), put("b")])
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    item = client.get_item(TableName="Tx", Key={"pk": {"S": "b"}})["Item"]  # boto3's method
    assert item == {"pk": {"S": "b"}, "n": {"N": "1"}, "b": {"B": b"\x00\x01"}}


def test_a_cancelled_transaction_raises_boto3s_error(moto_url: str) -> None:
    mine, theirs = transact_client(moto_url), boto3_dynamodb(moto_url)
    mine.transact_write_items(TransactItems=[put("c")])
    items = [put("c", "attribute_not_exists(pk)", ReturnValuesOnConditionCheckFailure="ALL_OLD")]
    expected = error_of(lambda: theirs.transact_write_items(TransactItems=items))
    got = error_of(lambda: mine.transact_write_items(TransactItems=items))
    assert got["Error"]["Code"] == "TransactionCanceledException"
    assert got == expected
    assert got["CancellationReasons"][0]["Code"] == "ConditionalCheckFailed"
    assert got["CancellationReasons"][0]["Item"]["b"] == {"B": b"\x00\x01"}


def test_a_missing_table_raises_boto3s_error(moto_url: str) -> None:
    mine, theirs = transact_client(moto_url), boto3_dynamodb(moto_url)
    items = [{"Put": {"TableName": "Nope", "Item": {"pk": {"S": "x"}}}}]
    expected = error_of(lambda: theirs.transact_write_items(TransactItems=items))
    assert error_of(lambda: mine.transact_write_items(TransactItems=items)) == expected
    assert expected["Error"]["Code"] == "ResourceNotFoundException"


class Scripted(http.server.BaseHTTPRequestHandler):
    """Checks each request's signature, then gives the next scripted answer."""

    script: list[tuple[int, dict[str, Any]]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            verify_authorization_header(
                "POST",
                self.path,
                "",
                list(self.headers.items()),
                body,
                lookup=lambda key: StoredCredential(KEY, SECRET, "tester") if key == KEY else None,
                region=REGION,
                services=("dynamodb",),
                max_skew_s=300,
            )
            signed = True
        except SignatureError:
            signed = False
        self.seen.append(
            {"target": self.headers["X-Amz-Target"], "body": json.loads(body), "signed": signed}
        )
        status, answer = self.script.pop(0) if self.script else (200, {})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[Scripted]]]:
    Scripted.script, Scripted.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Scripted
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_request_is_signed_and_shaped_as_boto3s(scripted) -> None:
    url, handler = scripted
    transact_client(url).transact_write_items(TransactItems=[put("a")])
    (request,) = handler.seen
    assert request["signed"] is True
    assert request["target"] == "DynamoDB_20120810.TransactWriteItems"
    assert request["body"]["TransactItems"][0]["Put"]["TableName"] == "Tx"


def test_throttling_and_server_errors_are_retried(scripted) -> None:
    url, handler = scripted
    throttled = {
        "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
        "message": "slow",
    }
    handler.script = [(400, throttled), (500, {"__type": "InternalServerError"}), (200, {})]
    client = transact_client(url)
    assert client.transact_write_items(TransactItems=[put("a")])["ResponseMetadata"] == {
        "HTTPStatusCode": 200
    }
    assert len(handler.seen) == 3 and all(r["signed"] for r in handler.seen)


def test_a_validation_error_is_not_retried_and_keeps_its_message(scripted) -> None:
    url, handler = scripted
    handler.script = [
        (400, {"__type": "com.amazon.coral.validate#ValidationException", "message": "bad item"})
    ]
    error = error_of(lambda: transact_client(url).transact_write_items(TransactItems=[put("a")]))
    assert error["Error"] == {"Code": "ValidationException", "Message": "bad item"}
    assert len(handler.seen) == 1


def test_after_the_last_attempt_the_error_is_raised(scripted) -> None:
    url, handler = scripted
    handler.script = [(503, {})] * 3
    error = error_of(lambda: transact_client(url).transact_write_items(TransactItems=[put("a")]))
    assert error["Error"]["Code"] == "HTTP503"
    assert len(handler.seen) == 3
