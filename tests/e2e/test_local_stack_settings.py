"""Template settings change what the local stack does: batch size, retries and the
on-failure destination, and the publisher's IAM policy (each test starts its own stack)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import edited_template, set_mapping_property, stack_config


def _count_invocations(template: Path, records: int) -> int:
    with LocalStack(stack_config(template)) as running:
        dynamodb = running.client("dynamodb")
        # the pump reads from LATEST: write after it started, as a live app would
        for n in range(records):
            dynamodb.put_item(
                TableName=running.tables["ScoresTable"],
                Item={"game": {"S": "g"}, "player": {"S": f"p{n}"}, "score": {"N": str(n)}},
            )
        pump = next(p for p in running.pumps if "ScoresTable" in p.stream_arn)
        deadline = time.time() + 60
        head = running.client("dynamodb")
        while time.time() < deadline:
            seq = head.get_item(
                TableName=running.tables["SequenceTable"], Key={"pk": {"S": "head#public/scores"}}
            ).get("Item")
            if seq and int(seq["head"]["N"]) >= records:
                break
            time.sleep(0.2)
        return pump.invocations


def test_batch_size_from_the_template_changes_the_pump(tmp_path: Path) -> None:
    one = edited_template(
        tmp_path, lambda t: set_mapping_property(t, "ScoresStreamMapping", "BatchSize", "1")
    )
    assert _count_invocations(one, 6) >= 6  # one record per invocation

    def gather(text: str) -> str:
        text = set_mapping_property(text, "ScoresStreamMapping", "BatchSize", "100")
        return set_mapping_property(
            text, "ScoresStreamMapping", "MaximumBatchingWindowInSeconds", "3"
        )

    (tmp_path / "batched").mkdir()
    batched = edited_template(tmp_path / "batched", gather)
    assert _count_invocations(batched, 6) <= 2  # the window gathers the writes into a batch


def test_publisher_without_iot_publish_fails_and_lands_in_the_dlq(tmp_path: Path) -> None:
    def edit(text: str) -> str:
        text = text.replace(
            "                Action: iot:Publish\n",
            "                Action: iot:DescribeEndpoint\n",
            1,
        )
        return set_mapping_property(text, "ScoresStreamMapping", "MaximumRetryAttempts", "1")

    template = edited_template(tmp_path, edit)
    with LocalStack(stack_config(template)) as running:
        running.client("dynamodb").put_item(
            TableName=running.tables["ScoresTable"],
            Item={"game": {"S": "g"}, "player": {"S": "p"}, "score": {"N": "1"}},
        )
        sqs = running.client("sqs")
        deadline = time.time() + 60
        messages: list[dict] = []
        while time.time() < deadline and not messages:
            messages = sqs.receive_message(
                QueueUrl=running.dead_letter_queue_url, WaitTimeSeconds=1
            ).get("Messages", [])
        assert messages, "the failed batch never reached the on-failure destination"
        body = json.loads(messages[0]["Body"])
        assert body["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert "ScoresTable" in json.dumps(body["DDBStreamBatchInfo"])
