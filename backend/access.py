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
    """A signed-in Cognito identity and the tenants it belongs to."""

    identity_id: str
    tenants: frozenset[str] = field(default_factory=frozenset)


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
    """True if ``principal`` may read ``channel`` (unknown channels: False)."""
    found = find_route(routes, channel)
    if found is None:
        return False
    route, values = found
    readers = route.readers
    if readers.kind == "public":
        return True
    assert readers.placeholder is not None
    value = values.get(readers.placeholder)
    if readers.kind == "owner":
        return value == principal.identity_id
    memberships = principal.tenants if tenants is None else tenants
    return value is not None and value in memberships
