"""The AWS APIs moto serves check SigV4 and IAM as AWS does (issue 7), against the whole local
stack over real sockets with real boto3 signatures.

Before: any request reached moto, signed or not. A Cognito identity's credentials wrote the
users table (a tenant of one's choosing), attached another tenant's IoT policy and scanned the
users table, password hashes included; so did an unsigned request. Now every request needs a
key the stack issued, and that key's IAM policies (the template's roles) must allow the
request's action on its resource; refusals come in each service's own error shape.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import time
from dataclasses import replace
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.stack.local_stack import ACCOUNT_ID, LocalStack
from tests.support.local_stack import add_user, credentials_for, login_over_https

REGION = "us-east-1"
LOGIN_KEY = "cognito-identity.amazonaws.com"
NO_RETRY = Config(retries={"max_attempts": 1})
ALICE, BOB = "alice-iam", "bob-iam"  # the stack is shared: names of this module's own


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    add_user(shared_stack, ALICE, f"{ALICE}-moto-iam-1", {"acme"})
    add_user(shared_stack, BOB, f"{BOB}-moto-iam-1", {"globex"})
    return shared_stack


def identity_credential(stack: LocalStack, user: str) -> tuple[str, StoredCredential]:
    """Sign in and GetCredentialsForIdentity, as a client does; (identity id, credential)."""
    answer = login_over_https(stack, user, f"{user}-moto-iam-1")
    return answer["identityId"], credentials_for(stack, answer)


@pytest.fixture(scope="module")
def alice(stack: LocalStack) -> tuple[str, StoredCredential]:
    return identity_credential(stack, ALICE)


def client(stack: LocalStack, service: str, credential: StoredCredential | None) -> Any:
    """A boto3 client for moto signing with ``credential`` (unsigned for ``None``)."""
    if credential is None:
        return boto3.client(
            service,
            endpoint_url=stack.moto_url,
            region_name=REGION,
            config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
        )
    return boto3.client(
        service,
        endpoint_url=stack.moto_url,
        region_name=REGION,
        aws_access_key_id=credential.access_key_id,
        aws_secret_access_key=credential.secret_access_key,
        aws_session_token=credential.session_token,
        config=NO_RETRY,
    )


def refused(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    """(error code, message, HTTP status) of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    status = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return str(error["Code"]), str(error.get("Message", "")), int(status)


def users_table_arn(stack: LocalStack) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{stack.tables['UsersTable']}"


def denied(action: str, resource: str, who: str) -> str:
    return (
        f"User: {who} is not authorized to perform: {action} on resource: {resource} "
        f"because no identity-based policy allows the {action} action"
    )


def authenticated_role_session(stack: LocalStack) -> str:
    role = stack.physical_ids["AuthenticatedRole"]
    return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/CognitoIdentityCredentials"


def alice_record(stack: LocalStack) -> dict[str, Any]:
    return dict(
        stack.client("dynamodb")
        .get_item(TableName=stack.tables["UsersTable"], Key={"pk": {"S": f"user#{ALICE}"}})
        .get("Item", {})
    )


# --------------------------------------------------------------------------- the attacks


def test_an_unsigned_request_cannot_scan_the_users_table(stack: LocalStack) -> None:
    body = json.dumps({"TableName": stack.tables["UsersTable"]}).encode()
    host, port = stack.moto_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "POST",
        "/",
        body=body,
        headers={
            "X-Amz-Target": "DynamoDB_20120810.Scan",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    assert answer.status == 400, data
    document = json.loads(data)
    assert document == {
        "__type": "com.amazon.coral.service#MissingAuthenticationTokenException",
        "message": "Request is missing Authentication Token",
    }
    assert b"password" not in data and b"Items" not in data
    # the same through boto3, unsigned: the code AWS gives
    code, _, status = refused(
        client(stack, "dynamodb", None).scan, TableName=stack.tables["UsersTable"]
    )
    assert (code, status) == ("MissingAuthenticationTokenException", 400)


def test_an_identity_cannot_give_itself_another_tenant(stack: LocalStack, alice) -> None:
    _, credential = alice
    before = alice_record(stack)
    assert before, "alice's record is where add_user put it"
    forged = {**before, "tenants": {"SS": ["acme", "globex"]}}
    code, message, status = refused(
        client(stack, "dynamodb", credential).put_item,
        TableName=stack.tables["UsersTable"],
        Item=forged,
    )
    assert (code, status) == ("AccessDeniedException", 400)
    assert message == denied(
        "dynamodb:PutItem", users_table_arn(stack), authenticated_role_session(stack)
    )
    assert alice_record(stack) == before


def test_an_identity_cannot_scan_the_users_table(stack: LocalStack, alice) -> None:
    _, credential = alice
    code, message, _ = refused(
        client(stack, "dynamodb", credential).scan, TableName=stack.tables["UsersTable"]
    )
    assert code == "AccessDeniedException"
    assert message == denied(
        "dynamodb:Scan", users_table_arn(stack), authenticated_role_session(stack)
    )


def test_an_identity_cannot_attach_another_tenants_iot_policy(stack: LocalStack, alice) -> None:
    alice_id, credential = alice
    bob_id, _ = identity_credential(stack, BOB)
    developer_iot = stack.client("iot")

    def attached(target: str) -> set[str]:
        found = developer_iot.list_attached_policies(target=target)["policies"]
        return {policy["policyName"] for policy in found}

    bobs, alices = attached(bob_id), attached(alice_id)
    foreign = sorted(bobs - alices)
    assert foreign, (bobs, alices)
    code, message, status = refused(
        client(stack, "iot", credential).attach_policy, policyName=foreign[0], target=alice_id
    )
    assert (code, status) == ("AccessDeniedException", 403)
    policy_arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:policy/{foreign[0]}"
    assert message == denied("iot:AttachPolicy", policy_arn, authenticated_role_session(stack))
    assert attached(alice_id) == alices


# --------------------------------------------------------------------------- signatures


def test_a_wrong_secret_is_refused_in_each_services_shape(stack: LocalStack) -> None:
    wrong = replace(stack.developer, secret_access_key="not-the-secret-" + "x" * 25)
    expected = {
        "dynamodb": ("InvalidSignatureException", 400),
        "sqs": ("SignatureDoesNotMatch", 403),
        "cloudformation": ("SignatureDoesNotMatch", 403),
        "iot": ("InvalidSignatureException", 403),
        "s3": ("SignatureDoesNotMatch", 403),
    }
    calls = {
        "dynamodb": lambda c: c.list_tables(),
        "sqs": lambda c: c.list_queues(),
        "cloudformation": lambda c: c.describe_stacks(),
        "iot": lambda c: c.list_policies(),
        "s3": lambda c: c.list_buckets(),
    }
    for service, (code, status) in expected.items():
        got = refused(lambda service=service: calls[service](client(stack, service, wrong)))
        assert (got[0], got[2]) == (code, status), (service, got)
    # the right secret passes everywhere
    for service, call in calls.items():
        call(client(stack, service, stack.developer))


def test_unknown_keys_missing_tokens_and_expired_credentials_are_refused(
    stack: LocalStack,
) -> None:
    unknown = replace(stack.developer, access_key_id="AKIA" + "Z" * 16)
    assert refused(client(stack, "dynamodb", unknown).list_tables)[0] == (
        "UnrecognizedClientException"
    )
    assert refused(client(stack, "sqs", unknown).list_queues)[0] == "InvalidClientTokenId"
    assert refused(client(stack, "cloudformation", unknown).describe_stacks)[0] == (
        "InvalidClientTokenId"
    )
    assert refused(client(stack, "s3", unknown).list_buckets)[0] == "InvalidAccessKeyId"
    role = stack.role_credentials["ChannelsFunction"]
    without_token = replace(role, session_token=None)
    assert refused(client(stack, "dynamodb", without_token).list_tables)[0] == (
        "UnrecognizedClientException"
    )
    expired = mint_temporary_credential(
        "expired-session", [[{"Version": "2012-10-17", "Statement": []}]], lifetime_s=-1
    )
    stack.credentials.put(expired)
    code, message, _ = refused(client(stack, "dynamodb", expired).list_tables)
    assert (code, message) == (
        "ExpiredTokenException",
        "The security token included in the request is expired",
    )
    # a key the stack forgets is refused from then on
    stack.credentials.remove(expired.access_key_id)
    assert refused(client(stack, "dynamodb", expired).list_tables)[0] == (
        "UnrecognizedClientException"
    )


def test_a_signature_for_another_region_is_refused(stack: LocalStack) -> None:
    other = boto3.client(
        "dynamodb",
        endpoint_url=stack.moto_url,
        region_name="eu-west-1",
        aws_access_key_id=stack.developer.access_key_id,
        aws_secret_access_key=stack.developer.secret_access_key,
        config=NO_RETRY,
    )
    assert refused(other.list_tables)[0] == "InvalidSignatureException"


# --------------------------------------------------------------------------- the template's roles


def test_the_channels_role_reads_the_change_log_but_cannot_write_users(stack: LocalStack) -> None:
    role = stack.role_credentials["ChannelsFunction"]
    dynamodb = client(stack, "dynamodb", role)
    dynamodb.query(
        TableName=stack.tables["ChangeLogTable"],
        KeyConditionExpression="channel = :c",
        ExpressionAttributeValues={":c": {"S": "public/scores"}},
    )
    dynamodb.query(
        TableName=stack.tables["UsersTable"],
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": "user#nobody"}},
    )
    code, message, _ = refused(
        dynamodb.put_item,
        TableName=stack.tables["UsersTable"],
        Item={"pk": {"S": "user#mallory"}},
    )
    assert code == "AccessDeniedException"
    assert message == denied("dynamodb:PutItem", users_table_arn(stack), role.arn or "")
    function = stack.functions["ChannelsFunction"].spec.name
    role_name = stack.physical_ids["ChannelsRole"]
    assert role.arn == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{function}"
    assert refused(dynamodb.scan, TableName=stack.tables["ChangeLogTable"])[0] == (
        "AccessDeniedException"
    )


def test_the_publisher_role_writes_the_change_log_in_a_transaction_only(
    stack: LocalStack,
) -> None:
    role = stack.role_credentials["PublisherFunction"]
    dynamodb = client(stack, "dynamodb", role)
    item = {"channel": {"S": "tests/moto-iam"}, "seq": {"N": "1"}, "epoch": {"N": "1"}}
    dynamodb.transact_write_items(
        TransactItems=[{"Put": {"TableName": stack.tables["ChangeLogTable"], "Item": item}}]
    )
    # a transaction is authorised item by item: one item on a table it may not write fails all
    code, message, _ = refused(
        dynamodb.transact_write_items,
        TransactItems=[
            {"Put": {"TableName": stack.tables["ChangeLogTable"], "Item": item}},
            {"Put": {"TableName": stack.tables["UsersTable"], "Item": {"pk": {"S": "x"}}}},
        ],
    )
    assert code == "AccessDeniedException"
    assert message == denied("dynamodb:PutItem", users_table_arn(stack), role.arn or "")
    # it reads its streams, sends to its dead-letter queue, and nothing more there
    streams = client(stack, "dynamodbstreams", role)
    arn = stack.client("dynamodb").describe_table(TableName=stack.tables["ScoresTable"])["Table"][
        "LatestStreamArn"
    ]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")[
        "ShardIterator"
    ]
    streams.get_records(ShardIterator=iterator)
    sqs = client(stack, "sqs", role)
    queue = stack.dead_letter_queue_url
    assert queue is not None
    sqs.send_message(QueueUrl=queue, MessageBody="{}")
    code, message, status = refused(sqs.receive_message, QueueUrl=queue)
    assert (code, status) == ("AccessDenied", 403)
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue.rsplit('/', 1)[-1]}"
    assert message == denied("sqs:ReceiveMessage", queue_arn, role.arn or "")


def test_the_login_role_creates_only_its_stages_iot_policies(stack: LocalStack) -> None:
    role = stack.role_credentials["LoginFunction"]
    iot = client(stack, "iot", role)
    document = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    )
    iot.create_policy(policyName="tidings-dev-moto-iam-test", policyDocument=document)
    code, message, status = refused(
        iot.create_policy, policyName="someone-elses", policyDocument=document
    )
    assert (code, status) == ("AccessDeniedException", 403)
    policy_arn = f"arn:aws:iot:{REGION}:{ACCOUNT_ID}:policy/someone-elses"
    assert message == denied("iot:CreatePolicy", policy_arn, role.arn or "")


# --------------------------------------------------------------------------- the developer


def test_the_developer_credentials_may_do_everything(stack: LocalStack) -> None:
    developer = stack.developer
    assert developer.access_key_id.startswith("AKIA") and developer.session_token is None
    dynamodb = client(stack, "dynamodb", developer)
    items = dynamodb.scan(TableName=stack.tables["UsersTable"])["Items"]
    assert any(item["pk"]["S"] == f"user#{ALICE}" for item in items)
    client(stack, "sqs", developer).list_queues()
    client(stack, "cloudformation", developer).describe_stacks(StackName="tidings-local")
    client(stack, "iot", developer).list_policies()
    s3 = client(stack, "s3", developer)
    s3.put_object(Bucket="tidings-local-artifacts", Key="notes/a b+c.txt", Body=b"hi")
    body = s3.get_object(Bucket="tidings-local-artifacts", Key="notes/a b+c.txt")["Body"]
    assert body.read() == b"hi"
    presigner = boto3.client(
        "s3",
        endpoint_url=stack.moto_url,
        region_name=REGION,
        aws_access_key_id=developer.access_key_id,
        aws_secret_access_key=developer.secret_access_key,
        config=Config(signature_version="s3v4"),
    )
    url = presigner.generate_presigned_url(
        "get_object", Params={"Bucket": "tidings-local-artifacts", "Key": "notes/a b+c.txt"}
    )
    assert requests.get(url, timeout=10).content == b"hi"
    forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert requests.get(forged, timeout=10).status_code == 403


def test_the_env_file_holds_the_developer_keys_for_its_owner_only(stack: LocalStack) -> None:
    env_file = stack.config.env_file
    mode = stat.S_IMODE(os.stat(env_file).st_mode)
    assert mode == 0o600, oct(mode)
    text = env_file.read_text(encoding="utf-8")
    assert f"export AWS_ACCESS_KEY_ID='{stack.developer.access_key_id}'" in text
    assert f"export AWS_SECRET_ACCESS_KEY='{stack.developer.secret_access_key}'" in text
    settings = stack.settings()
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=settings["AWS_ENDPOINT_URL_DYNAMODB"],
        region_name=settings["AWS_REGION"],
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        config=NO_RETRY,
    )
    assert stack.tables["UsersTable"] in dynamodb.list_tables()["TableNames"]


def test_the_old_shared_local_keys_no_longer_work(stack: LocalStack) -> None:
    local = StoredCredential("local", "local", "nobody")
    started = time.monotonic()
    assert refused(client(stack, "dynamodb", local).list_tables)[0] == (
        "UnrecognizedClientException"
    )
    assert time.monotonic() - started < 5
