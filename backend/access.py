"""Who may read which channel: the one authorisation model, evaluated in Python.

The same rules (``backend.routes``) are also turned into IAM and IoT policy documents; a
table-driven test checks that this function and those documents agree.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from backend.routes import Route

__all__ = ["Principal", "find_route", "may_read"]


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in Cognito identity and its tenants, or an AWS IoT thing.

    A Cognito identity (any sign-in method, the ``device`` method's included) has its
    ``identity_id`` and ``tenants`` and no ``thing``. A thing (a device authenticated by its
    X.509 certificate, directly or through the credentials the AWS IoT credentials provider
    issued for it) is :meth:`of_thing`: its ``thing`` name and no identity id, so it reads
    its own ``thing:`` channels only (the thing policy allows no more); a device that also
    needs public or tenant channels signs in with the ``device`` method as well.
    """

    identity_id: str
    tenants: frozenset[str] = field(default_factory=frozenset)
    thing: str | None = None

    @classmethod
    def of_thing(cls, thing_name: str) -> Principal:
        """The principal of the AWS IoT thing ``thing_name``."""
        if not thing_name:
            raise ValueError("a thing principal needs a thing name")
        return cls("", thing=thing_name)


def find_route(routes: Sequence[Route], channel: str) -> tuple[Route, dict[str, str]] | None:
    """The route a channel belongs to and its placeholder values, or None if no route has it."""
    for route in routes:
        values = route.match_channel(channel)
        if values is not None:
            return route, values
    return None


def may_read(
    routes: Sequence[Route],
    principal: Principal,
    channel: str,
    tenants: Collection[str] | None = None,
) -> bool:
    """True if ``principal`` may read ``channel`` (unknown channels: False).

    ``owner:`` channels are read by the identity they name, ``tenant:`` channels by the
    tenant's members (``tenants`` overrides ``principal.tenants``), ``thing:`` channels by the
    thing they name, ``public`` ones by every Cognito identity.
    """
    found = find_route(routes, channel)
    if found is None:
        return False
    route, values = found
    readers = route.readers
    if readers.kind == "public":
        return principal.thing is None  # every signed-in identity; a thing reads its own only
    assert readers.placeholder is not None
    value = values.get(readers.placeholder)
    if value is None:
        return False
    if readers.kind == "owner":
        return value == principal.identity_id
    if readers.kind == "thing":
        return value == principal.thing
    memberships = principal.tenants if tenants is None else tenants
    return value in memberships
