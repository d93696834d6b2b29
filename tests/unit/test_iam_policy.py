"""IAM / AWS IoT policy evaluation: a table of (policy, action, resource, variables) -> decision."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.awsauth import iam_policy
from infra.local.awsauth.iam_policy import (
    Decision,
    PolicyError,
    evaluate,
    is_allowed,
    validate_policy,
)

ALLOW, DENY, NONE = Decision.ALLOW, Decision.EXPLICIT_DENY, Decision.IMPLICIT_DENY
ARN = "arn:aws:iot:us-east-1:123456789012"
SUB_KEY = "cognito-identity.amazonaws.com:sub"
SUB = "us-east-1:0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
OTHER = "us-east-1:99999999-aaaa-bbbb-cccc-000000000000"
VARS = {SUB_KEY: SUB}


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17") -> dict[str, Any]:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    return document


def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


# The IoT policy Tidings attaches to each Cognito identity.
IOT_POLICY = doc(
    allow("iot:Connect", f"{ARN}:client/${{{SUB_KEY}}}"),
    allow(
        "iot:Subscribe",
        [
            f"{ARN}:topicfilter/tidings/dev/users/${{{SUB_KEY}}}/*",
            f"{ARN}:topicfilter/tidings/dev/public/*",
        ],
    ),
    allow(
        "iot:Receive",
        [f"{ARN}:topic/tidings/dev/users/${{{SUB_KEY}}}/*", f"{ARN}:topic/tidings/dev/public/*"],
    ),
)
# The authenticated role's IAM policy: the actions, scoped to the stage's topics.
ROLE_POLICY = doc(
    allow(["iot:Connect"], f"{ARN}:client/*"),
    allow(["iot:Subscribe"], f"{ARN}:topicfilter/tidings/dev/*"),
    allow(["iot:Receive"], f"{ARN}:topic/tidings/dev/*"),
)

CASES: list[tuple[str, list[dict[str, Any]], str, str, dict[str, str], Decision]] = [
    # --- Cognito patterns -------------------------------------------------------------------
    ("connect as own sub", [IOT_POLICY], "iot:Connect", f"{ARN}:client/{SUB}", VARS, ALLOW),
    ("connect as other id", [IOT_POLICY], "iot:Connect", f"{ARN}:client/{OTHER}", VARS, NONE),
    ("connect, sub unknown", [IOT_POLICY], "iot:Connect", f"{ARN}:client/{SUB}", {}, NONE),
    (
        "subscribe own channel",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topicfilter/tidings/dev/users/{SUB}/todos",
        VARS,
        ALLOW,
    ),
    (
        "subscribe other's channel",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topicfilter/tidings/dev/users/{OTHER}/todos",
        VARS,
        NONE,
    ),
    (
        "subscribe wildcard filter over users",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topicfilter/tidings/dev/users/+/todos",
        VARS,
        NONE,
    ),
    (
        "subscribe public",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topicfilter/tidings/dev/public/scores",
        VARS,
        ALLOW,
    ),
    (
        "subscribe public with # filter (literal chars match *)",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topicfilter/tidings/dev/public/#",
        VARS,
        ALLOW,
    ),
    (
        "receive public",
        [IOT_POLICY],
        "iot:Receive",
        f"{ARN}:topic/tidings/dev/public/scores",
        VARS,
        ALLOW,
    ),
    (
        "receive own nested",
        [IOT_POLICY],
        "iot:Receive",
        f"{ARN}:topic/tidings/dev/users/{SUB}/todos/1",
        VARS,
        ALLOW,
    ),
    (
        "subscribe action on a topic ARN",
        [IOT_POLICY],
        "iot:Subscribe",
        f"{ARN}:topic/tidings/dev/public/scores",
        VARS,
        NONE,
    ),
    (
        "publish not granted",
        [IOT_POLICY],
        "iot:Publish",
        f"{ARN}:topic/tidings/dev/public/scores",
        VARS,
        NONE,
    ),
    (
        "other stage",
        [IOT_POLICY],
        "iot:Receive",
        f"{ARN}:topic/tidings/prod/public/scores",
        VARS,
        NONE,
    ),
    (
        "other account",
        [IOT_POLICY],
        "iot:Receive",
        "arn:aws:iot:us-east-1:000000000000:topic/tidings/dev/public/scores",
        VARS,
        NONE,
    ),
    # --- case ---------------------------------------------------------------------------------
    ("action case-insensitive", [IOT_POLICY], "IOT:connect", f"{ARN}:client/{SUB}", VARS, ALLOW),
    (
        "resource case-sensitive",
        [IOT_POLICY],
        "iot:Receive",
        f"{ARN}:topic/Tidings/dev/public/scores",
        VARS,
        NONE,
    ),
    (
        "variable value is case-sensitive",
        [IOT_POLICY],
        "iot:Connect",
        f"{ARN}:client/{SUB.upper()}",
        VARS,
        NONE,
    ),
    # --- variables are literal --------------------------------------------------------------
    (
        "star in value is literal",
        [IOT_POLICY],
        "iot:Connect",
        f"{ARN}:client/x",
        {SUB_KEY: "*"},
        NONE,
    ),
    (
        "star in value matches star",
        [IOT_POLICY],
        "iot:Connect",
        f"{ARN}:client/*",
        {SUB_KEY: "*"},
        ALLOW,
    ),
    (
        "? in value is literal",
        [IOT_POLICY],
        "iot:Connect",
        f"{ARN}:client/abc",
        {SUB_KEY: "a?c"},
        NONE,
    ),
    (
        "star in value under a wildcard pattern",
        [IOT_POLICY],
        "iot:Receive",
        f"{ARN}:topic/tidings/dev/users/alice/x",
        {SUB_KEY: "*"},
        NONE,
    ),
    (
        "regex chars in value are literal",
        [doc(allow("iot:Connect", f"{ARN}:client/${{iot:ClientId}}*"))],
        "iot:Connect",
        f"{ARN}:client/a.b-1",
        {"iot:ClientId": "a.b"},
        ALLOW,
    ),
    (
        "regex dot in value does not match any char",
        [doc(allow("iot:Connect", f"{ARN}:client/${{iot:ClientId}}*"))],
        "iot:Connect",
        f"{ARN}:client/aXb-1",
        {"iot:ClientId": "a.b"},
        NONE,
    ),
    (
        "variable name case-insensitive",
        [doc(allow("iot:Connect", f"{ARN}:client/${{IOT:clientid}}"))],
        "iot:Connect",
        f"{ARN}:client/dev1",
        {"iot:ClientId": "dev1"},
        ALLOW,
    ),
    (
        "default value used when missing",
        [doc(allow("iot:Connect", f"{ARN}:client/${{iot:ClientId, 'anonymous'}}"))],
        "iot:Connect",
        f"{ARN}:client/anonymous",
        {},
        ALLOW,
    ),
    (
        "default ignored when present",
        [doc(allow("iot:Connect", f"{ARN}:client/${{iot:ClientId, 'anonymous'}}"))],
        "iot:Connect",
        f"{ARN}:client/anonymous",
        {"iot:ClientId": "dev1"},
        NONE,
    ),
    (
        "missing variable: that entry matches nothing, others still do",
        [doc(allow("iot:Connect", [f"{ARN}:client/${{nope}}", f"{ARN}:client/fixed"]))],
        "iot:Connect",
        f"{ARN}:client/fixed",
        {},
        ALLOW,
    ),
    (
        "missing variable in a Deny does not deny",
        [doc(allow("iot:*", "*"), deny("iot:Connect", f"{ARN}:client/${{nope}}*"))],
        "iot:Connect",
        f"{ARN}:client/x",
        {},
        ALLOW,
    ),
    (
        "${*} is a literal star",
        [doc(allow("iot:Publish", f"{ARN}:topic/a${{*}}b"))],
        "iot:Publish",
        f"{ARN}:topic/a*b",
        {},
        ALLOW,
    ),
    (
        "${*} is not a wildcard",
        [doc(allow("iot:Publish", f"{ARN}:topic/a${{*}}b"))],
        "iot:Publish",
        f"{ARN}:topic/axb",
        {},
        NONE,
    ),
    (
        "${?} and ${$} literals",
        [doc(allow("iot:Publish", f"{ARN}:topic/${{?}}${{$}}"))],
        "iot:Publish",
        f"{ARN}:topic/?$",
        {},
        ALLOW,
    ),
    (
        "no Version: variables are plain text",
        [doc(allow("iot:Connect", f"{ARN}:client/${{{SUB_KEY}}}"), version=None)],
        "iot:Connect",
        f"{ARN}:client/{SUB}",
        VARS,
        NONE,
    ),
    (
        "no Version: the text ${...} itself matches",
        [doc(allow("iot:Connect", f"{ARN}:client/${{{SUB_KEY}}}"), version=None)],
        "iot:Connect",
        f"{ARN}:client/${{{SUB_KEY}}}",
        VARS,
        ALLOW,
    ),
    (
        "2008 Version: no substitution",
        [doc(allow("iot:Connect", f"{ARN}:client/${{{SUB_KEY}}}"), version="2008-10-17")],
        "iot:Connect",
        f"{ARN}:client/{SUB}",
        VARS,
        NONE,
    ),
    # --- wildcards -----------------------------------------------------------------------------
    (
        "? matches one char",
        [doc(allow("iot:Publish", f"{ARN}:topic/room?/chat"))],
        "iot:Publish",
        f"{ARN}:topic/room1/chat",
        {},
        ALLOW,
    ),
    (
        "? does not match two",
        [doc(allow("iot:Publish", f"{ARN}:topic/room?/chat"))],
        "iot:Publish",
        f"{ARN}:topic/room12/chat",
        {},
        NONE,
    ),
    (
        "? does not match none",
        [doc(allow("iot:Publish", f"{ARN}:topic/room?/chat"))],
        "iot:Publish",
        f"{ARN}:topic/room/chat",
        {},
        NONE,
    ),
    (
        "* crosses : and /",
        [doc(allow("iot:Publish", "arn:aws:iot:*:topic/x/*"))],
        "iot:Publish",
        f"{ARN}:topic/x/y/z",
        {},
        ALLOW,
    ),
    (
        "* matches empty",
        [doc(allow("iot:Publish", f"{ARN}:topic/x*"))],
        "iot:Publish",
        f"{ARN}:topic/x",
        {},
        ALLOW,
    ),
    (
        "Resource * matches all",
        [doc(allow("iot:Publish", "*"))],
        "iot:Publish",
        "anything",
        {},
        ALLOW,
    ),
    (
        "regex metachars in pattern are literal",
        [doc(allow("iot:Publish", f"{ARN}:topic/a.(b)+[c]"))],
        "iot:Publish",
        f"{ARN}:topic/a.(b)+[c]",
        {},
        ALLOW,
    ),
    (
        "regex metachars do not act as regex",
        [doc(allow("iot:Publish", f"{ARN}:topic/a.b"))],
        "iot:Publish",
        f"{ARN}:topic/aXb",
        {},
        NONE,
    ),
    ("action iot:*", [doc(allow("iot:*", "*"))], "iot:DeleteThing", "x", {}, ALLOW),
    ("action iot:Pub*", [doc(allow("iot:Pub*", "*"))], "iot:Publish", "x", {}, ALLOW),
    ("action iot:?ublish", [doc(allow("iot:?ublish", "*"))], "iot:Publish", "x", {}, ALLOW),
    ("action other service", [doc(allow("sts:*", "*"))], "iot:Publish", "x", {}, NONE),
    ("action * matches all", [doc(allow("*", "*"))], "execute-api:Invoke", "x", {}, ALLOW),
    (
        "action list",
        [doc(allow(["iot:Connect", "iot:Publish"], "*"))],
        "iot:Publish",
        "x",
        {},
        ALLOW,
    ),
    ("action prefix only", [doc(allow("iot:Pub", "*"))], "iot:Publish", "x", {}, NONE),
    # --- Deny / NotAction / NotResource -------------------------------------------------------
    (
        "Deny overrides Allow",
        [doc(allow("iot:*", "*"), deny("iot:Publish", f"{ARN}:topic/tidings/dev/public/*"))],
        "iot:Publish",
        f"{ARN}:topic/tidings/dev/public/scores",
        {},
        DENY,
    ),
    (
        "Deny elsewhere leaves Allow",
        [doc(allow("iot:*", "*"), deny("iot:Publish", f"{ARN}:topic/tidings/dev/public/*"))],
        "iot:Publish",
        f"{ARN}:topic/tidings/dev/users/x",
        {},
        ALLOW,
    ),
    (
        "Deny in another document of the set",
        [doc(allow("iot:*", "*")), doc(deny("iot:Receive", "*"))],
        "iot:Receive",
        "x",
        {},
        DENY,
    ),
    ("Deny alone", [doc(deny("iot:Receive", "*"))], "iot:Receive", "x", {}, DENY),
    (
        "NotAction allows the rest",
        [doc({"Effect": "Allow", "NotAction": "iot:Publish", "Resource": "*"})],
        "iot:Receive",
        "x",
        {},
        ALLOW,
    ),
    (
        "NotAction excludes",
        [doc({"Effect": "Allow", "NotAction": ["iot:Pub*", "iot:Connect"], "Resource": "*"})],
        "iot:Publish",
        "x",
        {},
        NONE,
    ),
    (
        "NotResource allows outside",
        [
            doc(
                {
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "NotResource": f"{ARN}:topic/private/*",
                }
            )
        ],
        "iot:Receive",
        f"{ARN}:topic/public/x",
        {},
        ALLOW,
    ),
    (
        "NotResource excludes inside",
        [
            doc(
                {
                    "Effect": "Allow",
                    "Action": "iot:Receive",
                    "NotResource": f"{ARN}:topic/private/*",
                }
            )
        ],
        "iot:Receive",
        f"{ARN}:topic/private/x",
        {},
        NONE,
    ),
    (
        "Deny with NotResource and a variable",
        [
            doc(
                allow("iot:*", "*"),
                {
                    "Effect": "Deny",
                    "Action": "iot:Connect",
                    "NotResource": f"{ARN}:client/${{{SUB_KEY}}}",
                },
            )
        ],
        "iot:Connect",
        f"{ARN}:client/{OTHER}",
        VARS,
        DENY,
    ),
    (
        "Deny with NotResource spares own",
        [
            doc(
                allow("iot:*", "*"),
                {
                    "Effect": "Deny",
                    "Action": "iot:Connect",
                    "NotResource": f"{ARN}:client/${{{SUB_KEY}}}",
                },
            )
        ],
        "iot:Connect",
        f"{ARN}:client/{SUB}",
        VARS,
        ALLOW,
    ),
    (
        "single Statement object",
        [{"Version": "2012-10-17", "Statement": allow("iot:Connect", "*")}],
        "iot:Connect",
        "x",
        {},
        ALLOW,
    ),
    ("no documents", [], "iot:Connect", "x", {}, NONE),
]


@pytest.mark.parametrize(
    ("documents", "action", "resource", "variables", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decision_table(
    documents: list[dict[str, Any]],
    action: str,
    resource: str,
    variables: dict[str, str],
    expected: Decision,
) -> None:
    assert evaluate(documents, action, resource, variables) is expected
    for document in documents:
        validate_policy(document)


# --- conditions ----------------------------------------------------------------------------


def conditioned(condition: dict[str, Any], effect: str = "Allow") -> list[dict[str, Any]]:
    return [
        doc({"Effect": effect, "Action": "iot:Connect", "Resource": "*", "Condition": condition})
    ]


CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Decision]] = [
    (
        "StringEquals with a variable",
        {"StringEquals": {"iot:ClientId": f"${{{SUB_KEY}}}"}},
        {"iot:ClientId": SUB},
        ALLOW,
    ),
    (
        "StringEquals with a variable, other value",
        {"StringEquals": {"iot:ClientId": f"${{{SUB_KEY}}}"}},
        {"iot:ClientId": OTHER},
        NONE,
    ),
    ("StringEquals list is OR", {"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}, ALLOW),
    ("StringEquals missing key", {"StringEquals": {"k": "a"}}, {}, NONE),
    ("StringEquals case-sensitive", {"StringEquals": {"k": "a"}}, {"k": "A"}, NONE),
    ("condition key case-insensitive", {"StringEquals": {"My:Key": "a"}}, {"my:key": "a"}, ALLOW),
    ("StringEqualsIgnoreCase", {"StringEqualsIgnoreCase": {"k": "abc"}}, {"k": "ABC"}, ALLOW),
    ("StringNotEquals differs", {"StringNotEquals": {"k": ["a", "b"]}}, {"k": "c"}, ALLOW),
    ("StringNotEquals equal", {"StringNotEquals": {"k": ["a", "b"]}}, {"k": "a"}, NONE),
    ("StringNotEquals missing key is true", {"StringNotEquals": {"k": "a"}}, {}, ALLOW),
    ("StringLike", {"StringLike": {"k": "dev-*"}}, {"k": "dev-12"}, ALLOW),
    ("StringLike ?", {"StringLike": {"k": "dev-?"}}, {"k": "dev-12"}, NONE),
    (
        "StringLike variable literal",
        {"StringLike": {"k": "${v}-*"}},
        {"k": "ab-1", "v": "a*"},
        NONE,
    ),
    ("StringLike variable", {"StringLike": {"k": "${v}-*"}}, {"k": "a*-1", "v": "a*"}, ALLOW),
    ("StringNotLike", {"StringNotLike": {"k": "dev-*"}}, {"k": "prod-1"}, ALLOW),
    ("StringNotLike matching", {"StringNotLike": {"k": "dev-*"}}, {"k": "dev-1"}, NONE),
    ("IfExists missing", {"StringEqualsIfExists": {"k": "a"}}, {}, ALLOW),
    ("IfExists present, wrong", {"StringEqualsIfExists": {"k": "a"}}, {"k": "b"}, NONE),
    (
        "Bool true",
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": "true"},
        ALLOW,
    ),
    (
        "Bool JSON true",
        {"Bool": {"aws:SecureTransport": True}},
        {"aws:SecureTransport": "True"},
        ALLOW,
    ),
    (
        "Bool false",
        {"Bool": {"aws:SecureTransport": "true"}},
        {"aws:SecureTransport": "false"},
        NONE,
    ),
    ("Null true, absent", {"Null": {"k": "true"}}, {}, ALLOW),
    ("Null true, present", {"Null": {"k": "true"}}, {"k": "x"}, NONE),
    ("Null false, present", {"Null": {"k": "false"}}, {"k": "x"}, ALLOW),
    ("Null false, absent", {"Null": {"k": False}}, {}, NONE),
    ("ForAnyValue hit", {"ForAnyValue:StringEquals": {"g": ["a", "b"]}}, {"g": ["x", "b"]}, ALLOW),
    ("ForAnyValue miss", {"ForAnyValue:StringEquals": {"g": ["a", "b"]}}, {"g": ["x", "y"]}, NONE),
    ("ForAnyValue missing key", {"ForAnyValue:StringEquals": {"g": "a"}}, {}, NONE),
    (
        "ForAllValues all in",
        {"ForAllValues:StringEquals": {"g": ["a", "b"]}},
        {"g": ["a", "b"]},
        ALLOW,
    ),
    (
        "ForAllValues one out",
        {"ForAllValues:StringEquals": {"g": ["a", "b"]}},
        {"g": ["a", "c"]},
        NONE,
    ),
    ("ForAllValues missing key is true", {"ForAllValues:StringEquals": {"g": "a"}}, {}, ALLOW),
    ("ForAllValues empty is true", {"ForAllValues:StringLike": {"g": "a*"}}, {"g": []}, ALLOW),
    (
        "ForAnyValue:StringNotEquals",
        {"ForAnyValue:StringNotEquals": {"g": ["a"]}},
        {"g": ["a", "z"]},
        ALLOW,
    ),
    (
        "ForAllValues:StringNotLike",
        {"ForAllValues:StringNotLike": {"g": ["adm*"]}},
        {"g": ["user", "admin"]},
        NONE,
    ),
    ("plain operator, multi-valued key", {"StringEquals": {"g": "b"}}, {"g": ["a", "b"]}, ALLOW),
    (
        "all operators AND",
        {"StringEquals": {"a": "1"}, "StringLike": {"b": "2*"}},
        {"a": "1", "b": "3"},
        NONE,
    ),
    ("all keys AND", {"StringEquals": {"a": "1", "b": "2"}}, {"a": "1", "b": "2"}, ALLOW),
]


@pytest.mark.parametrize(
    ("condition", "context", "expected"),
    [case[1:] for case in CONDITION_CASES],
    ids=[case[0] for case in CONDITION_CASES],
)
def test_conditions(condition: dict[str, Any], context: dict[str, Any], expected: Decision) -> None:
    variables = {k: v for k, v in {SUB_KEY: SUB, **context}.items() if isinstance(v, str)}
    lists = {k: v for k, v in context.items() if isinstance(v, list)}
    assert evaluate(conditioned(condition), "iot:Connect", "x", variables, lists) is expected
    # Keys given through context instead of variables behave the same.
    assert evaluate(conditioned(condition), "iot:Connect", "x", VARS, context) is expected
    validate_policy(conditioned(condition)[0])


def test_context_overrides_variables_for_condition_keys() -> None:
    policy = conditioned({"StringEquals": {"k": "ctx"}})
    assert evaluate(policy, "iot:Connect", "x", {"k": "var"}, {"k": "ctx"}) is ALLOW


def test_deny_with_condition() -> None:
    policy = [
        doc(allow("iot:*", "*")),
        conditioned({"Bool": {"aws:SecureTransport": "false"}}, effect="Deny")[0],
    ]
    assert evaluate(policy, "iot:Connect", "x", {}, {"aws:SecureTransport": "false"}) is DENY
    assert evaluate(policy, "iot:Connect", "x", {}, {"aws:SecureTransport": "true"}) is ALLOW


# --- two sets: role policy AND IoT policy ---------------------------------------------------


def test_both_sets_must_allow() -> None:
    sets = [[ROLE_POLICY], [IOT_POLICY]]
    assert is_allowed(sets, "iot:Connect", f"{ARN}:client/{SUB}", VARS)
    assert not is_allowed(sets, "iot:Connect", f"{ARN}:client/{OTHER}", VARS)  # IoT policy
    wider_iot = doc(allow("iot:*", "*"))
    assert not is_allowed(
        [[ROLE_POLICY], [wider_iot]], "iot:Connect", "arn:aws:iot:eu-west-1:1:client/x", VARS
    )  # role policy scopes to the account/region
    assert not is_allowed([[ROLE_POLICY], [wider_iot]], "iot:Publish", f"{ARN}:topic/x", VARS)


def test_explicit_deny_in_any_set_wins() -> None:
    everything = doc(allow("iot:*", "*"))
    no_public = doc(deny("iot:Receive", f"{ARN}:topic/tidings/dev/public/*"))
    sets = [[everything, no_public], [everything]]
    assert not is_allowed(sets, "iot:Receive", f"{ARN}:topic/tidings/dev/public/x", VARS)
    assert is_allowed(sets, "iot:Receive", f"{ARN}:topic/tidings/dev/users/x", VARS)


def test_empty_sets_allow_nothing() -> None:
    assert not is_allowed([], "iot:Connect", "x", {})
    assert not is_allowed([[]], "iot:Connect", "x", {})
    assert not is_allowed([[doc(allow("*", "*"))], []], "iot:Connect", "x", {})
    assert is_allowed([[doc(allow("*", "*"))]], "iot:Connect", "x", {})


def test_is_allowed_accepts_generators() -> None:
    sets = ((d for d in s) for s in [[ROLE_POLICY], [IOT_POLICY]])
    assert is_allowed(sets, "iot:Connect", f"{ARN}:client/{SUB}", VARS)


# --- errors ----------------------------------------------------------------------------------

BAD_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("bad effect", doc({"Sid": "Oops", "Effect": "allow", "Action": "*", "Resource": "*"}), "Oops"),
    ("no action", doc({"Effect": "Allow", "Resource": "*"}), "Action"),
    (
        "action and notaction",
        doc({"Effect": "Allow", "Action": "*", "NotAction": "x", "Resource": "*"}),
        "exactly one",
    ),
    ("no resource", doc({"Effect": "Allow", "Action": "*"}), "Resource"),
    ("resource not string", doc(allow("*", 5)), "Resource"),
    ("empty action list", doc(allow([], "*")), "Action"),
    (
        "unsupported operator",
        doc(allow("*", "*", Condition={"NumericLessThan": {"k": "3"}}, Sid="Num")),
        "NumericLessThan",
    ),
    (
        "unknown set operator",
        doc(allow("*", "*", Condition={"ForSome:StringEquals": {"k": "a"}})),
        "ForSome",
    ),
    (
        "Null with prefix",
        doc(allow("*", "*", Condition={"ForAnyValue:Null": {"k": "true"}})),
        "Null",
    ),
    ("Null bad value", doc(allow("*", "*", Condition={"Null": {"k": "maybe"}})), "Null"),
    ("condition not object", doc(allow("*", "*", Condition=["x"])), "Condition"),
    (
        "condition value object",
        doc(allow("*", "*", Condition={"StringEquals": {"k": {}}})),
        "values",
    ),
    ("statement not object", {"Version": "2012-10-17", "Statement": ["x"]}, "statement 0"),
    ("statement missing", {"Version": "2012-10-17"}, "Statement"),
    ("bad version", doc(allow("*", "*"), version="2020-01-01"), "Version"),
]


@pytest.mark.parametrize(
    ("document", "fragment"), [c[1:] for c in BAD_DOCUMENTS], ids=[c[0] for c in BAD_DOCUMENTS]
)
def test_unevaluable_documents_raise(document: Any, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        evaluate([document], "iot:Connect", "x", {"k": "a"})
    with pytest.raises(PolicyError, match=fragment):
        validate_policy(document)


def test_error_names_the_statement() -> None:
    document = doc(
        allow("*", "*"), {"Sid": "Second", "Effect": "Permit", "Action": "*", "Resource": "*"}
    )
    with pytest.raises(PolicyError, match=r"statement 1 \(Sid 'Second'\)"):
        evaluate([document], "iot:Connect", "x", {})


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (doc({"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}), "Principal"),
        (doc({"Effect": "Allow", "Action": "*", "Resource": "*", "Extra": 1}), "Extra"),
        ({"Version": "2012-10-17", "Statement": [], "Other": 1}, "Other"),
        ({"Version": "2012-10-17", "Statement": []}, "empty"),
        ("not a document", "JSON object"),
        (doc({"Sid": 3, "Effect": "Allow", "Action": "*", "Resource": "*"}), "Sid"),
    ],
)
def test_validate_policy_rejects(document: Any, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        validate_policy(document)


def test_validate_policy_accepts_the_tidings_documents() -> None:
    validate_policy(IOT_POLICY)
    validate_policy(ROLE_POLICY)


def test_public_surface() -> None:
    assert sorted(iam_policy.__all__) == [
        "Decision",
        "PolicyError",
        "evaluate",
        "is_allowed",
        "validate_policy",
    ]
