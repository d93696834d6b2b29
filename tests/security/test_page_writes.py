"""A page writes DynamoDB directly with its identity's own temporary credentials, limited to
its identity's own partition (``writers: owner:owner`` in ``infra/routes.yaml``: the
authenticated role's ``dynamodb:LeadingKeys`` = ``${cognito-identity.amazonaws.com:sub}``),
against the whole local stack over real sockets: login over HTTPS, GetCredentialsForIdentity,
then boto3 signing DynamoDB calls with those credentials, and DynamoDB's CORS answers to a
browser.

Writing into another identity's partition, or into another table, is refused as AWS refuses
it (400 ``AccessDeniedException``, AWS's sentence) and writes nothing (checked with the
developer's credentials).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.stack.local_stack import ACCOUNT_ID, LocalStack
from tests.support.local_stack import add_user, credentials_for, login_over_https
from tests.support.openapi import checked

ALICE, BOB = "alice-pagew", "bob-pagew"  # the stack is shared: names of this module's own
REGION = "us-east-1"
NO_RETRY = Config(retries={"max_attempts": 1})
ORIGIN = "http://localhost:5173"


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    add_user(shared_stack, ALICE, f"{ALICE}-secret-1", {"acme"})
    add_user(shared_stack, BOB, f"{BOB}-secret-1", {"globex"})
    return shared_stack


def signed_in(stack: LocalStack, user: str) -> tuple[str, StoredCredential]:
    """Sign in and GetCredentialsForIdentity, as a page does: (identity id, credentials)."""
    answer = login_over_https(stack, user, f"{user}-secret-1")
    return answer["identityId"], credentials_for(stack, answer)


@pytest.fixture(scope="module")
def alice(stack: LocalStack) -> tuple[str, StoredCredential]:
    return signed_in(stack, ALICE)


@pytest.fixture(scope="module")
def bob(stack: LocalStack) -> tuple[str, StoredCredential]:
    return signed_in(stack, BOB)


def dynamodb(stack: LocalStack, credential: StoredCredential) -> Any:
    """A DynamoDB client signing with an identity's temporary credentials."""
    return boto3.client(
        "dynamodb",
        endpoint_url=stack.moto_url,
        region_name=REGION,
        aws_access_key_id=credential.access_key_id,
        aws_secret_access_key=credential.secret_access_key,
        aws_session_token=credential.session_token,
        config=NO_RETRY,
    )


def todos(stack: LocalStack) -> str:
    return str(stack.tables["TodosTable"])


def table_arn(stack: LocalStack, logical: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{stack.tables[logical]}"


def role_session(stack: LocalStack) -> str:
    role = stack.physical_ids["AuthenticatedRole"]
    return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/CognitoIdentityCredentials"


def denied(stack: LocalStack, action: str, logical: str = "TodosTable") -> str:
    return (
        f"User: {role_session(stack)} is not authorized to perform: {action} on resource: "
        f"{table_arn(stack, logical)} because no identity-based policy allows the {action} "
        "action"
    )


def refused(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    """(error code, message, HTTP status) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return str(error["Code"]), str(error.get("Message", "")), int(status)


def todo(owner: str, item_id: str, title: str = "buy milk") -> dict[str, Any]:
    return {"owner": {"S": owner}, "id": {"S": item_id}, "title": {"S": title}}


def stored(stack: LocalStack, owner: str, item_id: str) -> dict[str, Any] | None:
    """The item as the developer's credentials read it (None if absent)."""
    found = stack.client("dynamodb").get_item(
        TableName=todos(stack), Key={"owner": {"S": owner}, "id": {"S": item_id}}
    )
    item = found.get("Item")
    return None if item is None else dict(item)


def channel_changes(
    stack: LocalStack, credential: StoredCredential, channel: str, wait_s: int = 10
) -> list[dict[str, Any]]:
    """The channel's changes after 0 (long-polled), read with the identity's SigV4."""
    path = "/v1/channels/" + "/".join(quote(part, safe="") for part in channel.split("/"))
    url = f"{stack.api_url}{path}/changes?after=0&wait={wait_s}"
    request = AWSRequest(method="GET", url=url)
    SigV4Auth(
        Credentials(
            credential.access_key_id, credential.secret_access_key, credential.session_token
        ),
        "execute-api",
        REGION,
    ).add_auth(request)
    answer = requests.get(url, headers=dict(request.headers), verify=stack.ca_file, timeout=30)
    assert checked(answer).status_code == 200, answer.text
    return list(answer.json()["changes"])


# --------------------------------------------------------------------------- own partition


def test_an_identity_puts_updates_reads_and_deletes_its_own_todos(stack: LocalStack, alice):
    me, credential = alice
    client = dynamodb(stack, credential)
    item_id = f"t-{uuid.uuid4().hex[:8]}"
    client.put_item(TableName=todos(stack), Item=todo(me, item_id))
    assert stored(stack, me, item_id) == todo(me, item_id)
    client.update_item(
        TableName=todos(stack),
        Key={"owner": {"S": me}, "id": {"S": item_id}},
        UpdateExpression="SET title = :t",
        ExpressionAttributeValues={":t": {"S": "buy oat milk"}},
    )
    got = client.get_item(TableName=todos(stack), Key={"owner": {"S": me}, "id": {"S": item_id}})
    assert got["Item"]["title"] == {"S": "buy oat milk"}
    listed = client.query(
        TableName=todos(stack),
        KeyConditionExpression="#o = :me",
        ExpressionAttributeNames={"#o": "owner"},
        ExpressionAttributeValues={":me": {"S": me}},
    )
    assert item_id in {item["id"]["S"] for item in listed["Items"]}
    client.delete_item(TableName=todos(stack), Key={"owner": {"S": me}, "id": {"S": item_id}})
    assert stored(stack, me, item_id) is None


def test_a_page_write_arrives_on_the_identitys_channel(stack: LocalStack, alice):
    me, credential = alice
    item_id = f"c-{uuid.uuid4().hex[:8]}"
    dynamodb(stack, credential).put_item(
        TableName=todos(stack), Item=todo(me, item_id, "from the page")
    )
    channel = f"users/{me}/todos"
    deadline = time.monotonic() + 20
    while True:
        changes = channel_changes(stack, credential, channel)
        mine = [c for c in changes if c.get("keys", {}).get("id") == item_id]
        if mine or time.monotonic() > deadline:
            break
    assert mine, changes
    assert mine[0]["op"] == "insert"
    assert mine[0]["new"]["title"] == "from the page"


# --------------------------------------------------------------------------- others' partitions


def test_putting_an_item_into_another_identitys_partition_is_refused(stack: LocalStack, alice, bob):
    _, credential = alice
    theirs, _ = bob
    item_id = f"x-{uuid.uuid4().hex[:8]}"
    code, message, status = refused(
        dynamodb(stack, credential).put_item, TableName=todos(stack), Item=todo(theirs, item_id)
    )
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == denied(stack, "dynamodb:PutItem")
    assert stored(stack, theirs, item_id) is None


def test_updating_reading_or_deleting_another_identitys_item_is_refused(
    stack: LocalStack, alice, bob
):
    _, credential = alice
    theirs, bobs_credential = bob
    item_id = f"b-{uuid.uuid4().hex[:8]}"
    dynamodb(stack, bobs_credential).put_item(TableName=todos(stack), Item=todo(theirs, item_id))
    before = stored(stack, theirs, item_id)
    assert before == todo(theirs, item_id)
    client = dynamodb(stack, credential)
    key = {"owner": {"S": theirs}, "id": {"S": item_id}}
    attempts = [
        (
            "dynamodb:UpdateItem",
            client.update_item,
            {
                "Key": key,
                "UpdateExpression": "SET title = :t",
                "ExpressionAttributeValues": {":t": {"S": "pwned"}},
            },
        ),
        ("dynamodb:DeleteItem", client.delete_item, {"Key": key}),
        ("dynamodb:GetItem", client.get_item, {"Key": key}),
        (
            "dynamodb:Query",
            client.query,
            {
                "KeyConditionExpression": "#o = :them",
                "ExpressionAttributeNames": {"#o": "owner"},
                "ExpressionAttributeValues": {":them": {"S": theirs}},
            },
        ),
    ]
    for action, call, params in attempts:
        code, message, status = refused(call, TableName=todos(stack), **params)
        assert (code, status, message) == (
            "AccessDeniedException",
            400,
            denied(stack, action),
        ), action
    assert stored(stack, theirs, item_id) == before


def test_a_transaction_or_batch_touching_another_partition_writes_nothing(
    stack: LocalStack, alice, bob
):
    me, credential = alice
    theirs, _ = bob
    client = dynamodb(stack, credential)
    mine_id, their_id = f"m-{uuid.uuid4().hex[:8]}", f"y-{uuid.uuid4().hex[:8]}"
    code, message, _ = refused(
        client.transact_write_items,
        TransactItems=[
            {"Put": {"TableName": todos(stack), "Item": todo(me, mine_id)}},
            {"Put": {"TableName": todos(stack), "Item": todo(theirs, their_id)}},
        ],
    )
    assert (code, message) == ("AccessDeniedException", denied(stack, "dynamodb:PutItem"))
    # BatchWriteItem is not granted at all (AWS's example policy grants item actions only)
    code, message, status = refused(
        client.batch_write_item,
        RequestItems={
            todos(stack): [
                {"PutRequest": {"Item": todo(me, mine_id)}},
                {"PutRequest": {"Item": todo(theirs, their_id)}},
            ]
        },
    )
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == denied(stack, "dynamodb:BatchWriteItem")
    assert stored(stack, me, mine_id) is None
    assert stored(stack, theirs, their_id) is None
    # the same transaction on its own partition only goes through
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": todos(stack), "Item": todo(me, mine_id)}}]
    )
    assert stored(stack, me, mine_id) == todo(me, mine_id)


def test_scanning_the_todos_is_refused(stack: LocalStack, alice):
    _, credential = alice
    code, message, _ = refused(dynamodb(stack, credential).scan, TableName=todos(stack))
    assert (code, message) == ("AccessDeniedException", denied(stack, "dynamodb:Scan"))


@pytest.mark.parametrize(
    ("logical", "item"),
    [
        ("BoardsTable", {"tenant": {"S": "acme"}, "id": {"S": "card-1"}}),
        ("ScoresTable", {"game": {"S": "chess"}, "player": {"S": "alice"}}),
    ],
)
def test_writing_the_other_tables_is_refused(stack: LocalStack, alice, logical, item):
    me, credential = alice
    for candidate in (item, {**item, "owner": {"S": me}}):
        code, message, status = refused(
            dynamodb(stack, credential).put_item,
            TableName=stack.tables[logical],
            Item=candidate,
        )
        assert (code, status) == ("AccessDeniedException", 400)
        assert message == denied(stack, "dynamodb:PutItem", logical)


# --------------------------------------------------------------------------- a browser's CORS


def raw(stack: LocalStack, method: str, body: bytes, headers: dict[str, str]) -> Any:
    host, port = stack.moto_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, "/", body=body, headers=headers)
        answer = connection.getresponse()
        names = [k.lower() for k, _ in answer.getheaders()]
        cors = [n for n in names if n.startswith("access-control-")]
        assert len(cors) == len(set(cors)), names  # a browser refuses a repeated CORS header
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_a_preflight_is_answered_without_a_signature(stack: LocalStack):
    requested = "authorization,content-type,x-amz-date,x-amz-security-token,x-amz-target"
    status, headers, body = raw(
        stack,
        "OPTIONS",
        b"",
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": requested,
        },
    )
    assert status == 200, body
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == requested
    assert int(headers["access-control-max-age"]) > 0


def signed_post(
    stack: LocalStack, credential: StoredCredential, operation: str, document: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    """A DynamoDB call as a page's fetch sends it: SigV4-signed, with an Origin."""
    url = f"{stack.moto_url}/"
    body = json.dumps(document).encode()
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
        },
    )
    SigV4Auth(
        Credentials(
            credential.access_key_id, credential.secret_access_key, credential.session_token
        ),
        "dynamodb",
        REGION,
    ).add_auth(request)
    return raw(stack, "POST", body, {**dict(request.headers), "Origin": ORIGIN})


def test_a_pages_calls_and_refusals_carry_the_cors_headers(stack: LocalStack, alice, bob):
    me, credential = alice
    theirs, _ = bob
    item_id = f"o-{uuid.uuid4().hex[:8]}"
    status, headers, body = signed_post(
        stack, credential, "PutItem", {"TableName": todos(stack), "Item": todo(me, item_id)}
    )
    assert status == 200, body
    assert headers["access-control-allow-origin"] == "*"
    assert "x-amzn-requestid" in headers["access-control-expose-headers"].lower()
    status, headers, body = signed_post(
        stack, credential, "PutItem", {"TableName": todos(stack), "Item": todo(theirs, item_id)}
    )
    assert status == 400
    assert json.loads(body)["__type"].endswith("#AccessDeniedException")
    assert headers["access-control-allow-origin"] == "*"
    assert stored(stack, theirs, item_id) is None
