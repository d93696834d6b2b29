"""A local stack started in this process, in another region than us-east-1.

- The stack's region and account reach everything it builds: the on-failure destination's
  queue URL (moto names queues ``https://sqs.<region>.amazonaws.com/...``) and the functions'
  ``context.invoked_function_arn``.
- ``LocalStack.start`` leaves the calling process's heap alone (no ``gc.freeze`` in pytest, a
  notebook, the demo); the moto process it owns freezes its own, once.
- With another moto than the one its fixes are written for, the stack refuses to start.
"""

from __future__ import annotations

import gc
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local.functions.runtime import FunctionPool, FunctionSpec
from infra.local.motohost import fixes as moto_fixes
from infra.local.motohost.fixes import MOTO_VERSION, MotoVersionError
from infra.local.stack.local_stack import ACCOUNT_ID, LocalStack
from tests.support.local_stack import edited_template, set_mapping_property, stack_config

REGION = "eu-west-1"


class Started:
    """The running stack and the caller's freeze counts around its start."""

    def __init__(self, stack: LocalStack, before: int, after: int) -> None:
        self.stack = stack
        self.freeze_count_before = before
        self.freeze_count_after = after


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """eu-west-1; the publisher may not publish, and gives up after one retry (→ the DLQ)."""

    def edit(text: str) -> str:
        text = text.replace(
            "                Action: iot:Publish\n",
            "                Action: iot:DescribeEndpoint\n",
            1,
        )
        return set_mapping_property(text, "ScoresStreamMapping", "MaximumRetryAttempts", "1")

    template = edited_template(tmp_path_factory.mktemp("template"), edit)
    stack = LocalStack(stack_config(template, region=REGION))
    before = gc.get_freeze_count()
    stack.start()
    try:
        yield Started(stack, before, gc.get_freeze_count())
    finally:
        stack.stop()


def test_starting_a_stack_leaves_the_callers_heap_unfrozen(started: Started) -> None:
    assert started.freeze_count_after == started.freeze_count_before


def test_the_moto_process_froze_its_heap_once_at_start(started: Started) -> None:
    moto = started.stack._moto
    at_start = moto.frozen_objects  # what moto answered the stack's request, at start
    assert at_start is not None and at_start > 10_000  # the deployed stack's models, resources
    users = started.stack.client("dynamodb")
    for n in range(200):  # a second freeze would add these items to the permanent generation
        users.put_item(
            TableName=started.stack.tables["UsersTable"],
            Item={"pk": {"S": f"user#{n}"}, "identityId": {"S": f"{REGION}:{n}"}},
        )
    # asked again, moto answers without freezing again: objects leave the permanent
    # generation only when freed, so it cannot have grown
    assert moto.freeze_heap() <= at_start


def test_a_failed_batch_reaches_the_dlq_of_the_stacks_region(started: Started) -> None:
    stack = started.stack
    url = stack.dead_letter_queue_url
    assert url is not None
    parts = urllib.parse.urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == stack.moto_url, url
    assert parts.path.startswith(f"/{ACCOUNT_ID}/")
    assert stack.settings()["TIDINGS_DLQ_URL"] == url
    stack.client("dynamodb").put_item(
        TableName=stack.tables["ScoresTable"],
        Item={"game": {"S": "g"}, "player": {"S": "p"}, "score": {"N": "1"}},
    )
    # read it from the host the URL names, as any SQS client given the URL would
    sqs = boto3.client(
        "sqs",
        endpoint_url=f"{parts.scheme}://{parts.netloc}",
        region_name=REGION,
        aws_access_key_id=stack.settings()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=stack.settings()["AWS_SECRET_ACCESS_KEY"],
    )
    deadline = time.time() + 60
    messages: list[dict[str, Any]] = []
    while time.time() < deadline and not messages:
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert messages, "the failed batch never reached the on-failure destination"
    body = json.loads(messages[0]["Body"])
    assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert f":{REGION}:" in body["DDBStreamBatchInfo"]["streamArn"]


def test_a_function_knows_its_arn_in_the_stacks_region_and_account(started: Started) -> None:
    stack = started.stack
    publisher = stack.functions["PublisherFunction"]
    deployed = stack.client("lambda").get_function(FunctionName=publisher.spec.name)
    expected = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{publisher.spec.name}"
    assert deployed["Configuration"]["FunctionArn"] == expected
    # the echo handler, in a worker with exactly the environment the stack gives the publisher
    echo = FunctionPool(
        FunctionSpec(name=publisher.spec.name, handler="tests.support.echo_handler.handler"),
        publisher.env,
    )
    try:
        answer = echo.invoke({"queryStringParameters": None})
    finally:
        echo.close()
    assert json.loads(answer["body"])["arn"] == expected


def test_another_moto_release_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(moto_fixes, "_installed_moto_version", lambda: "5.3.0")
    stack = LocalStack(stack_config(state_dir=tmp_path / "state"))
    try:
        with pytest.raises(MotoVersionError) as refused:
            stack.start()
    finally:
        stack.stop()
    message = str(refused.value)
    assert "\n" not in message
    assert f"moto {MOTO_VERSION}" in message and "moto 5.3.0 is installed" in message
    assert stack._moto is None  # no moto process was started
    assert not (tmp_path / "state").exists()  # nor anything else
