"""The sign-in table in DynamoDB: users, devices, attached IoT policies and login throttles.

One table, partition key ``pk`` (string), TTL attribute ``expires_at``:

==========================  ====================================================================
``user#<username>``         ``user_id`` (stable, the developer user identifier), ``password_hash``,
                            ``tenants`` (list)
``device#<thing name>``     ``user_id``, ``secret_hash`` (SHA-256 of a 256-bit random secret),
                            ``tenants``
``identity#<identity id>``  ``identityId``, ``tenants``, ``policies`` (IoT policies attached);
                            GSI ``byIdentity`` on ``identityId`` serves the channels API
``throttle#<bucket>#<t>``   ``attempts`` in the window starting at ``t`` (:mod:`auth.rate_limit`),
                            ``expires_at``
``familiar#<acct>#<addr>``  an address that signed in to the account; ``expires_at``
==========================  ====================================================================

Every botocore error is translated here: a raw ``ClientError`` never leaves this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auth.errors import BadRequest, UpstreamError, UserExists, UserNotFound
from backend.routes import CHANNEL_SEGMENT

__all__ = ["USERNAME", "Account", "UsersStore", "validate_tenant", "validate_username"]

USERNAME = re.compile(r"\A[A-Za-z0-9_.@+-]{1,128}\Z")
THING_NAME = re.compile(r"\A[A-Za-z0-9:_-]{1,128}\Z")


def validate_username(username: str) -> str:
    """The username, or :class:`BadRequest` naming the rule it breaks."""
    if not USERNAME.match(username):
        raise BadRequest(
            "invalid_username",
            "A username is 1-128 characters: letters, digits and _ . @ + -.",
        )
    return username


def validate_tenant(tenant: str) -> str:
    """The tenant name, or :class:`BadRequest` (it becomes a channel segment)."""
    if not CHANNEL_SEGMENT.match(tenant):
        raise BadRequest(
            "invalid_tenant",
            f"Tenant {tenant!r} is not valid: 1-128 letters, digits or _ . : @ = -.",
        )
    return tenant


@dataclass(frozen=True)
class Account:
    """A user or device that can sign in."""

    kind: str  # "user" | "device"
    name: str
    user_id: str
    secret_hash: str
    tenants: frozenset[str] = field(default_factory=frozenset)


def _s(value: str) -> dict[str, Any]:
    return {"S": value}


def _n(value: float) -> dict[str, Any]:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


class UsersStore:
    """DynamoDB access for the sign-in table; ``client`` is a boto3 DynamoDB client."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise
            raise UpstreamError(
                f"The users table {self.table!r} could not be read or written "
                f"({exc.response.get('Error', {}).get('Code', 'error')}). Try again."
            ) from exc
        except BotoCoreError as exc:
            raise UpstreamError(f"The users table {self.table!r} is unreachable: {exc}") from exc

    # --- accounts --------------------------------------------------------------------

    def get_user(self, username: str) -> Account | None:
        """The user, or None if there is none by that name."""
        return self._get_account("user", username)

    def get_device(self, thing_name: str) -> Account | None:
        """The device, or None if it is not registered."""
        return self._get_account("device", thing_name)

    def _get_account(self, kind: str, name: str) -> Account | None:
        item = self._call("get_item", Key={"pk": _s(f"{kind}#{name}")}, ConsistentRead=True).get(
            "Item"
        )
        if item is None:
            return None
        return _account(kind, item)

    def add_user(self, username: str, password_hash: str, tenants: frozenset[str]) -> Account:
        """Create a user with a new stable user id; :class:`UserExists` if the name is taken."""
        validate_username(username)
        for tenant in tenants:
            validate_tenant(tenant)
        account = Account("user", username, str(uuid.uuid4()), password_hash, frozenset(tenants))
        self._put_new(account, "password_hash", UserExists(f"User {username!r} already exists."))
        return account

    def add_device(self, thing_name: str, tenants: frozenset[str]) -> tuple[Account, str]:
        """Register a device; returns it and its new secret (shown once, stored hashed)."""
        if not THING_NAME.match(thing_name):
            raise BadRequest("invalid_thing_name", "A thing name is 1-128 of A-Z a-z 0-9 : _ -.")
        for tenant in tenants:
            validate_tenant(tenant)
        secret = secrets.token_urlsafe(32)
        account = Account(
            "device",
            thing_name,
            f"device-{uuid.uuid4()}",
            hash_device_secret(secret),
            frozenset(tenants),
        )
        self._put_new(
            account, "secret_hash", UserExists(f"Device {thing_name!r} is already registered.")
        )
        return account, secret

    def _put_new(self, account: Account, hash_attribute: str, exists: Exception) -> None:
        item = {
            "pk": _s(f"{account.kind}#{account.name}"),
            "kind": _s(account.kind),
            "name": _s(account.name),
            "user_id": _s(account.user_id),
            hash_attribute: _s(account.secret_hash),
            "tenants": {"L": [_s(t) for t in sorted(account.tenants)]},
            "created_at": _n(int(time.time())),
        }
        try:
            self._call("put_item", Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError:
            raise exists from None

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """Replace a user's password hash (rehash on login after a parameter change)."""
        self._call(
            "update_item",
            Key={"pk": _s(f"user#{username}")},
            UpdateExpression="SET password_hash = :h",
            ExpressionAttributeValues={":h": _s(password_hash)},
        )

    def set_tenants(self, username: str, tenants: frozenset[str]) -> None:
        """Replace a user's tenants; takes effect (IoT policies too) at the next login."""
        for tenant in tenants:
            validate_tenant(tenant)
        try:
            self._call(
                "update_item",
                Key={"pk": _s(f"user#{username}")},
                UpdateExpression="SET tenants = :t",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":t": {"L": [_s(t) for t in sorted(tenants)]}},
            )
        except ClientError:
            raise UserNotFound(f"There is no user {username!r}.") from None

    def remove_user(self, username: str) -> None:
        """Delete a user; :class:`UserNotFound` if there is none."""
        try:
            self._call(
                "delete_item",
                Key={"pk": _s(f"user#{username}")},
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError:
            raise UserNotFound(f"There is no user {username!r}.") from None

    def list_users(self) -> Iterator[Account]:
        """Every user, in no particular order."""
        kwargs: dict[str, Any] = {
            "FilterExpression": "kind = :k",
            "ExpressionAttributeValues": {":k": _s("user")},
        }
        while True:
            page = self._call("scan", **kwargs)
            for item in page.get("Items", []):
                yield _account("user", item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- attached policies -----------------------------------------------------------

    def identity_record(self, identity_id: str) -> tuple[frozenset[str], frozenset[str]]:
        """(IoT policy names attached, tenants) recorded for ``identity_id`` at its last login."""
        item = self._call(
            "get_item", Key={"pk": _s(f"identity#{identity_id}")}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return frozenset(), frozenset()
        policies = frozenset(v["S"] for v in item.get("policies", {}).get("L", []))
        tenants = frozenset(v["S"] for v in item.get("tenants", {}).get("L", []))
        return policies, tenants

    def record_identity(
        self, identity_id: str, policies: frozenset[str], tenants: frozenset[str]
    ) -> None:
        """Remember the IoT policies attached to ``identity_id`` and its tenants.

        ``identityId`` and ``tenants`` are what the channels API's ``byIdentity`` index reads
        (``backend/tenants.py``).
        """
        self._call(
            "put_item",
            Item={
                "pk": _s(f"identity#{identity_id}"),
                "kind": _s("identity"),
                "identityId": _s(identity_id),
                "policies": {"L": [_s(p) for p in sorted(policies)]},
                "tenants": {"L": [_s(t) for t in sorted(tenants)]},
            },
        )

    # --- sign-in throttling ----------------------------------------------------------

    def reserve_attempt(self, key: str, limit: int, expires_at: int) -> bool:
        """Count one attempt in the bucket ``key`` if it holds fewer than ``limit``; atomic.

        One conditional ``UpdateItem``: DynamoDB serialises writes to an item, so parallel
        callers can never count more than ``limit`` attempts. False when the bucket is full.
        """
        try:
            self._call(
                "update_item",
                Key={"pk": _s(f"throttle#{key}")},
                UpdateExpression="SET kind = :kind, expires_at = :ttl ADD attempts :one",
                ConditionExpression="attribute_not_exists(attempts) OR attempts < :limit",
                ExpressionAttributeValues={
                    ":kind": _s("throttle"),
                    ":ttl": _n(expires_at),
                    ":one": _n(1),
                    ":limit": _n(limit),
                },
            )
        except ClientError:  # ConditionalCheckFailedException: the bucket is full
            return False
        return True

    def release_attempt(self, key: str) -> None:
        """Give back one attempt counted in the bucket ``key`` (never below zero)."""
        with contextlib.suppress(ClientError):  # already at zero, or the item expired
            self._call(
                "update_item",
                Key={"pk": _s(f"throttle#{key}")},
                UpdateExpression="ADD attempts :minus",
                ConditionExpression="attempts > :zero",
                ExpressionAttributeValues={":minus": _n(-1), ":zero": _n(0)},
            )

    def attempts(self, key: str) -> int:
        """The attempts counted in the bucket ``key`` (0 if it has none)."""
        item = self._call("get_item", Key={"pk": _s(f"throttle#{key}")}, ConsistentRead=True).get(
            "Item"
        )
        return int(item.get("attempts", {}).get("N", "0")) if item else 0

    def familiar_until(self, account: str, address: str) -> float:
        """Until when ``address`` is remembered as familiar to ``account`` (0: it is not)."""
        item = self._call(
            "get_item", Key={"pk": _s(f"familiar#{account}#{address}")}, ConsistentRead=True
        ).get("Item")
        return float(item.get("expires_at", {}).get("N", "0")) if item else 0.0

    def remember_familiar(self, account: str, address: str, until: int) -> None:
        """Remember that ``address`` signed in to ``account`` (until ``until``, epoch s)."""
        self._call(
            "put_item",
            Item={
                "pk": _s(f"familiar#{account}#{address}"),
                "kind": _s("familiar"),
                "expires_at": _n(until),
            },
        )


def hash_device_secret(secret: str) -> str:
    """SHA-256 of a device secret (secrets are 256-bit random, so no stretching is needed)."""
    return "sha256$" + hashlib.sha256(secret.encode("utf-8")).hexdigest()


def verify_device_secret(secret: str, stored: str) -> bool:
    """Constant-time comparison of a presented device secret with its stored hash."""
    return hmac.compare_digest(hash_device_secret(secret), stored)


def _account(kind: str, item: dict[str, Any]) -> Account:
    hash_attribute = "password_hash" if kind == "user" else "secret_hash"
    return Account(
        kind=kind,
        name=item["name"]["S"],
        user_id=item["user_id"]["S"],
        secret_hash=item.get(hash_attribute, {}).get("S", ""),
        tenants=frozenset(v["S"] for v in item.get("tenants", {}).get("L", [])),
    )
