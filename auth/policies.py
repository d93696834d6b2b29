"""From the routes to the policy documents that let an identity or a thing read its channels.

One source (``backend.routes``), three outputs that must agree (a table-driven test checks
it): :func:`backend.access.may_read` (the channels API), :func:`role_policy` (the identity
pool's authenticated role) and the IoT policies of :func:`iot_policies` (attached to each
identity with ``AttachPolicy(target=identityId)``). Both policy sets must allow an MQTT
action, so the effective permission is their intersection. Devices get two more, from the
``thing:`` routes: :func:`thing_policy` (on their certificates) and :func:`device_role_policy`
(the role behind their role alias); the template holds both (``ThingPolicy``, ``DeviceRole``).

How each reader kind is expressed (channel template ``a/{x}/b`` under ``tidings/<stage>/``):

- ``owner:x``  — ``{x}`` becomes ``${cognito-identity.amazonaws.com:sub}`` in both documents,
  in the identity policy every identity gets;
- ``tenant:x`` — the role allows ``a/*/b`` (IAM has no tenant variable for developer
  identities); each tenant ``T`` gets its own IoT policy allowing exactly ``a/T/b``, attached
  only to members of ``T``;
- ``thing:x``  — not in the role nor in the identities' IoT policies: ``{x}`` becomes
  ``${iot:Connection.Thing.ThingName}`` in the thing policy (:func:`thing_policy`, attached
  to device certificates) and ``${credentials-iot:ThingName}`` in the policy of the role the
  AWS IoT credentials provider assumes for a device (:func:`device_role_policy`);
- ``public``   — the channel itself, in both documents (not in the thing policy: a thing
  reads its own channels only).

Any other placeholder becomes ``*``. IAM's ``*`` also matches ``/``, so every such pattern
comes with a ``Deny`` of the patterns where a placeholder would span several segments
(``a/*/*/b``): a policy never allows a topic that is not a channel of its route.

Actions: ``iot:Connect`` on ``client/<identityId>`` and ``client/<identityId>-*``;
``iot:Subscribe`` on ``topicfilter/…`` and ``iot:Receive`` on ``topic/…`` for readable
channels. Clients never publish (the backend does), so no ``iot:Publish`` is granted. No
statement uses a ``*`` action, and every resource names its region, account and prefix.

The thing policy lets a device connect with its thing's name as client id (AWS's recommended
``client/${iot:Connection.Thing.ThingName}``: the variable resolves only when the client id
is the name of a thing attached to the certificate), read its ``thing:`` channels and call
``iot:AssumeRoleWithCertificate`` on the role alias; the role behind the alias allows ``GET``
on the channels API for those channels only. ``${iot:ClientId}`` is not used: once connected,
the client id is the thing name, and the thing variable also says the thing is attached.

A route with ``writers: owner:<attr>`` (``<attr>`` being its table's partition key) also gets
one role statement: the item actions of :data:`WRITE_ACTIONS` on the table, under
``ForAllValues:StringEquals`` ``dynamodb:LeadingKeys`` = ``${cognito-identity.amazonaws.com:sub}``,
so a page writes its identity's own partition with the identity's own credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.access import Principal
from backend.routes import Route

__all__ = [
    "CREDENTIALS_THING_VARIABLE",
    "SUB_VARIABLE",
    "THING_VARIABLE",
    "WRITE_ACTIONS",
    "PolicyScope",
    "device_role_policy",
    "iot_policies",
    "readable_channels",
    "role_policy",
    "thing_policy",
    "write_statement",
]

SUB_VARIABLE = "${cognito-identity.amazonaws.com:sub}"
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"
"""The connecting thing's name in an AWS IoT policy (MQTT and MQTT over WebSocket only)."""
CREDENTIALS_THING_VARIABLE = "${credentials-iot:ThingName}"
"""The thing's name in the IAM policies of a role the AWS IoT credentials provider assumed
(set when the device sends ``x-amzn-iot-thingname`` and that thing is attached to its
certificate)."""
LEADING_KEYS = "dynamodb:LeadingKeys"
WRITE_ACTIONS = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
"""What ``writers: owner:<attr>`` allows on its table: AWS's own example of item-level access
by Cognito identity (IAM User Guide, "Amazon DynamoDB: Allows item-level access to DynamoDB
based on an Amazon Cognito ID"). Query is there so a page can list its own items (a Query
names one partition, so LeadingKeys limits it as it limits the item actions)."""
VERSION = "2012-10-17"
READ_ACTIONS = (("iot:Subscribe", "topicfilter"), ("iot:Receive", "topic"))
_PLACEHOLDER = re.compile(r"\A\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")
_POLICY_NAME_CHARS = re.compile(r"[^\w+=,.@-]")

Document = dict[str, Any]


@dataclass(frozen=True)
class PolicyScope:
    """Where the policies apply: region, account, stage, and the IoT policy name prefix."""

    region: str
    account_id: str
    stage: str
    policy_prefix: str = ""

    @property
    def arn(self) -> str:
        """``arn:aws:iot:<region>:<account>``."""
        return f"arn:aws:iot:{self.region}:{self.account_id}"

    @property
    def prefix(self) -> str:
        """The IoT policy name prefix (``tidings-<stage>`` unless configured)."""
        return self.policy_prefix or f"tidings-{self.stage}"

    def resource(self, kind: str, channel_pattern: str) -> str:
        """``arn:aws:iot:…:<kind>/tidings/<stage>/<channel_pattern>``."""
        return f"{self.arn}:{kind}/tidings/{self.stage}/{channel_pattern}"


def _pattern(template: str, route: Route, reader_value: str | None) -> tuple[str, list[str]]:
    """The IAM pattern of a channel template and the patterns where a ``*`` spans segments.

    The readers' placeholder becomes ``reader_value`` (``*`` if None), any other ``*``.
    """
    segments = template.split("/")
    out: list[str] = []
    wild: list[int] = []
    for index, segment in enumerate(segments):
        match = _PLACEHOLDER.match(segment)
        if match is None:
            out.append(segment)
            continue
        if route.readers.placeholder == match.group(1) and reader_value is not None:
            out.append(reader_value)
        else:
            out.append("*")
            wild.append(index)
    spills = []
    for index in wild:
        spilled = list(out)
        spilled[index] = "*/*"
        spills.append("/".join(spilled))
    return "/".join(out), spills


def _read_statements(scope: PolicyScope, patterns: Iterable[tuple[str, list[str]]]) -> list[Any]:
    allowed: list[str] = []
    denied: list[str] = []
    for pattern, spills in patterns:
        if pattern not in allowed:
            allowed.append(pattern)
        denied.extend(s for s in spills if s not in denied)
    statements: list[Any] = []
    for action, kind in READ_ACTIONS:
        if allowed:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": action,
                    "Resource": [scope.resource(kind, p) for p in allowed],
                }
            )
    for action, kind in READ_ACTIONS:
        if denied:
            statements.append(
                {
                    "Effect": "Deny",
                    "Action": action,
                    "Resource": [scope.resource(kind, p) for p in denied],
                }
            )
    return statements


def _identity_value(route: Route) -> str | None:
    """What an identity's documents put for the readers' placeholder (None: ``*``)."""
    return SUB_VARIABLE if route.readers.kind == "owner" else None


def _connect_statement(scope: PolicyScope) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": "iot:Connect",
        "Resource": [f"{scope.arn}:client/{SUB_VARIABLE}", f"{scope.arn}:client/{SUB_VARIABLE}-*"],
    }


def role_policy(
    routes: Sequence[Route],
    scope: PolicyScope,
    api_arn: str | None = None,
    table_arns: Mapping[str, str] | None = None,
) -> Document:
    """The IAM policy of the identity pool's authenticated role.

    With ``api_arn`` (``arn:aws:execute-api:<region>:<account>:<api id>``) it also allows
    ``GET /v1/channels/*`` on that API; the API itself checks :func:`~backend.access.may_read`.
    With ``table_arns`` (table logical id → table ARN) it also allows each route's
    ``writers`` (:func:`write_statement`); a route with writers whose table has no ARN there
    raises ``KeyError``. Routes read by things are not in it (:func:`device_role_policy`).
    """
    patterns = [
        _pattern(t, r, _identity_value(r))
        for r in routes
        if r.readers.kind != "thing"
        for t in r.channels
    ]
    statements = [_connect_statement(scope), *_read_statements(scope, patterns)]
    if api_arn:
        statements.append(
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": f"{api_arn}/*/GET/v1/channels/*",
            }
        )
    if table_arns is not None:
        statements.extend(
            write_statement(table_arns[route.table]) for route in routes if route.writers
        )
    return {"Version": VERSION, "Statement": statements}


def write_statement(table_arn: str) -> dict[str, Any]:
    """Allow the item actions of :data:`WRITE_ACTIONS` on one table, limited to the items
    whose partition key is the caller's identity id (``dynamodb:LeadingKeys``).

    ``ForAllValues`` holds when every partition key the request touches is the identity's;
    a request that names no partition key (Scan) would pass it vacuously, which is why Scan
    is never granted. Transactions need these same actions per item, each item checked on its
    own key; the batch actions (``BatchWriteItem``, ``BatchGetItem``) are not granted.
    """
    return {
        "Effect": "Allow",
        "Action": list(WRITE_ACTIONS),
        "Resource": table_arn,
        "Condition": {"ForAllValues:StringEquals": {LEADING_KEYS: [SUB_VARIABLE]}},
    }


def identity_iot_policy(routes: Sequence[Route], scope: PolicyScope) -> Document:
    """The IoT policy every identity gets: connect as itself, its own and public channels."""
    patterns = [
        _pattern(t, r, _identity_value(r))
        for r in routes
        if r.readers.kind in ("owner", "public")
        for t in r.channels
    ]
    return {
        "Version": VERSION,
        "Statement": [_connect_statement(scope), *_read_statements(scope, patterns)],
    }


def tenant_iot_policy(routes: Sequence[Route], scope: PolicyScope, tenant: str) -> Document:
    """The IoT policy for members of ``tenant``: exactly that tenant's channels."""
    patterns = [
        _pattern(t, r, tenant) for r in routes if r.readers.kind == "tenant" for t in r.channels
    ]
    return {"Version": VERSION, "Statement": _read_statements(scope, patterns)}


def thing_policy(routes: Sequence[Route], scope: PolicyScope, role_alias_arn: str) -> Document:
    """The AWS IoT policy attached to device certificates: one document for every thing.

    Connect with the thing's own name as client id, read the ``thing:`` channels named after
    it (``${iot:Connection.Thing.ThingName}``), and exchange the certificate for the
    credentials of the role alias ``role_alias_arn`` (``iot:AssumeRoleWithCertificate``).
    """
    patterns = [
        _pattern(t, r, THING_VARIABLE)
        for r in routes
        if r.readers.kind == "thing"
        for t in r.channels
    ]
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": [f"{scope.arn}:client/{THING_VARIABLE}"],
            },
            {
                "Effect": "Allow",
                "Action": "iot:AssumeRoleWithCertificate",
                "Resource": role_alias_arn,
            },
            *_read_statements(scope, patterns),
        ],
    }


def device_role_policy(routes: Sequence[Route], api_arn: str) -> Document:
    """The IAM policy of the role behind the devices' role alias.

    It allows ``GET /v1/channels/<channel>`` and ``.../changes`` on the API ``api_arn``
    (``arn:aws:execute-api:<region>:<account>:<api id>``), any stage, for the ``thing:``
    channels named after the thing the credentials were issued for
    (``${credentials-iot:ThingName}``); any other placeholder is ``*``, and the API refuses a
    path that is not a channel. With no ``thing:`` route it allows nothing.
    """
    resources: list[str] = []
    for route in routes:
        if route.readers.kind != "thing":
            continue
        for template in route.channels:
            pattern, _ = _pattern(template, route, CREDENTIALS_THING_VARIABLE)
            for path in (pattern, f"{pattern}/changes"):
                resource = f"{api_arn}/*/GET/v1/channels/{path}"
                if resource not in resources:
                    resources.append(resource)
    statements: list[Any] = []
    if resources:
        statements.append(
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": resources}
        )
    return {"Version": VERSION, "Statement": statements}


def policy_name(scope: PolicyScope, label: str, document: Document) -> str:
    """``<prefix>-<label>-<hash of the document>``: a changed document gets a new name.

    The login attaches policies by name and remembers the names, so a route change (new
    document, new name) is picked up at the identity's next login.
    """
    digest = hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:12]
    safe = _POLICY_NAME_CHARS.sub("_", label)[: 128 - len(scope.prefix) - 14]
    return f"{scope.prefix}-{safe}-{digest}"


def iot_policies(
    routes: Sequence[Route], scope: PolicyScope, tenants: Iterable[str]
) -> dict[str, Document]:
    """Policy name → document: every IoT policy an identity in ``tenants`` must have."""
    base = identity_iot_policy(routes, scope)
    out = {policy_name(scope, "identity", base): base}
    if any(r.readers.kind == "tenant" for r in routes):
        for tenant in sorted(set(tenants)):
            document = tenant_iot_policy(routes, scope, tenant)
            out[policy_name(scope, f"tenant-{tenant}", document)] = document
    return out


def readable_channels(routes: Sequence[Route], principal: Principal) -> list[str]:
    """The channels ``principal`` may read, as templates filled as far as its identity allows.

    Placeholders that are not the reader placeholder stay as ``{name}``
    (``tenants/acme/orders/{orderId}``). A thing (:meth:`Principal.of_thing`) reads its
    ``thing:`` channels only; an identity never reads those.
    """
    out: list[str] = []
    for route in routes:
        placeholder = route.readers.placeholder
        kind = route.readers.kind
        if principal.thing is not None:
            values = [principal.thing] if kind == "thing" else []
        elif kind == "owner":
            values = [principal.identity_id]
        elif kind == "tenant":
            values = sorted(principal.tenants)
        elif kind == "thing":
            values = []
        else:
            values = [""]
        for template in route.channels:
            for value in values:
                filled = (
                    template
                    if placeholder is None
                    else template.replace("{" + placeholder + "}", value)
                )
                if filled not in out:
                    out.append(filled)
    return out
