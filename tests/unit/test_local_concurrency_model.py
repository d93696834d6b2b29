"""The local stack's Lambda concurrency model and the template parts it reads (no I/O
beyond reading the template)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local.functions.runtime import ConcurrencyLimit
from infra.local.stack.template_model import Template, TemplateError, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "infra" / "template.yaml")


def test_a_limit_refuses_at_once_beyond_its_size_and_frees_on_release() -> None:
    limit = ConcurrencyLimit(2)
    assert [limit.try_acquire() for _ in range(3)] == [True, True, False]
    assert limit.in_use == 2 and limit.throttles == 1
    limit.release()
    assert limit.try_acquire() and not limit.try_acquire()
    assert ConcurrencyLimit(0).try_acquire() is False  # a reservation of 0 throttles all


def test_the_channels_function_reserves_concurrency_from_a_parameter() -> None:
    functions = TEMPLATE.functions()
    assert functions["ChannelsFunction"].reserved_concurrency == {"Ref": "ChannelsConcurrency"}
    parameters = TEMPLATE.body["Parameters"]
    assert parameters["ChannelsConcurrency"]["Default"] == 20
    assert "publisher" in parameters["ChannelsConcurrency"]["Description"]
    assert int(TEMPLATE.parameter_defaults()["MaxWaitsPerIdentity"]) == 4
    # the others share the unreserved pool, which the cap on the channels function protects
    assert functions["PublisherFunction"].reserved_concurrency is None
    assert functions["LoginFunction"].reserved_concurrency is None


def test_the_channels_role_may_only_put_and_delete_leases() -> None:
    statements = TEMPLATE.role_policies("ChannelsRole")[0]["Statement"]
    on_leases = [
        s for s in statements if s["Resource"] == {"Fn::GetAtt": ["PollLeasesTable", "Arn"]}
    ]
    assert [sorted(s["Action"]) for s in on_leases] == [["dynamodb:DeleteItem", "dynamodb:PutItem"]]
    for statement in statements:
        resources = statement["Resource"]
        resources = resources if isinstance(resources, list) else [resources]
        if statement is not on_leases[0]:
            assert {"Fn::GetAtt": ["PollLeasesTable", "Arn"]} not in resources


def test_integration_failures_answer_503_with_retry_after() -> None:
    responses = TEMPLATE.gateway_responses()
    failure = responses["INTEGRATION_FAILURE"]
    assert failure.status_code == 503
    assert failure.headers["Retry-After"] == "1"
    body = json.loads(failure.body or "")
    assert set(body) == {"error", "message"} and body["error"] == "unavailable"


def test_a_gateway_response_with_a_dynamic_header_is_refused_locally() -> None:
    body = {
        "Resources": {
            "R": {
                "Type": "AWS::ApiGateway::GatewayResponse",
                "Properties": {
                    "ResponseType": "DEFAULT_5XX",
                    "ResponseParameters": {
                        "gatewayresponse.header.X": "method.request.header.X",
                    },
                },
            }
        }
    }
    with pytest.raises(TemplateError, match="static header values"):
        Template(body).gateway_responses()
