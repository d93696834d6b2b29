"""Which stack the acceptance suite runs against, from its options and the environment."""

from __future__ import annotations

import pytest

from tests.acceptance.target import AwsChoice, LocalChoice, TargetError, select_target


def select(stack: str | None = None, region: str | None = None, **environ: str):
    return select_target(stack=stack, region=region, environ=environ)


def test_nothing_chosen_is_the_local_stack() -> None:
    assert select() == LocalChoice()
    assert select(TIDINGS_AWS_TESTS="0") == LocalChoice()
    assert select(TIDINGS_AWS_TESTS="") == LocalChoice()
    # a stack name or region alone in the environment does not reach for AWS
    assert select(TIDINGS_STACK="tidings-prod", AWS_REGION="eu-west-1") == LocalChoice()


def test_stack_option_chooses_aws_with_its_region() -> None:
    assert select("tidings-prod", "eu-west-1") == AwsChoice("tidings-prod", "eu-west-1")


def test_region_option_beats_the_environment_and_the_environment_fills_in() -> None:
    environ = {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert select("s", "eu-west-1", **environ) == AwsChoice("s", "eu-west-1")
    assert select("s", **environ) == AwsChoice("s", "us-west-2")
    assert select("s", AWS_DEFAULT_REGION="ap-south-1") == AwsChoice("s", "ap-south-1")
    assert select("s") == AwsChoice("s", None)  # the AWS configuration's region, later


def test_the_variable_chooses_aws_with_the_stack_from_the_environment() -> None:
    for on in ("1", "true", "YES"):
        chosen = select(TIDINGS_AWS_TESTS=on, TIDINGS_STACK="tidings-ci", AWS_REGION="us-east-1")
        assert chosen == AwsChoice("tidings-ci", "us-east-1")


def test_the_stack_option_beats_the_stack_variable() -> None:
    chosen = select("mine", TIDINGS_AWS_TESTS="1", TIDINGS_STACK="theirs")
    assert chosen == AwsChoice("mine", None)


def test_aws_without_a_stack_name_is_an_error_that_says_how_to_name_one() -> None:
    with pytest.raises(
        TargetError, match=r"no stack is named: pass --stack NAME or set TIDINGS_STACK"
    ):
        select(TIDINGS_AWS_TESTS="1", AWS_REGION="us-east-1")
    with pytest.raises(TargetError, match="no stack is named"):
        select(TIDINGS_AWS_TESTS="1", TIDINGS_STACK="  ")
    with pytest.raises(TargetError, match="no stack is named"):
        select("")


def test_a_region_without_a_stack_is_an_error() -> None:
    with pytest.raises(TargetError, match=r"--region .* pass --stack NAME too"):
        select(None, "eu-west-1")


def test_an_unclear_switch_is_an_error() -> None:
    with pytest.raises(TargetError, match="TIDINGS_AWS_TESTS='maybe'"):
        select(TIDINGS_AWS_TESTS="maybe", TIDINGS_STACK="s")


def test_a_malformed_stack_name_is_an_error() -> None:
    for name in ("1stack", "my_stack", "a" * 129, "stack name"):
        with pytest.raises(TargetError, match="not a CloudFormation stack name"):
            select(name)


def test_endpoint_overrides_from_the_local_environment_file_are_refused_for_aws() -> None:
    with pytest.raises(TargetError, match="AWS_ENDPOINT_URL_DYNAMODB would send"):
        select("s", AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:8446")
    # the local stack ignores them (its clients name their endpoints)
    assert select(AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:8446") == LocalChoice()
