"""Lockout after repeated failed logins, per user and per source address.

Failures are counted in a fixed window (``RateLimits.window_s``). When a key reaches its limit
it is locked for ``lockout_s``: every login for it is answered 429 with ``Retry-After``, even
with the right password, until the lock ends. A successful login clears the user's counter
(not the address's). Unknown usernames are counted like known ones, so a lockout says nothing
about whether a user exists.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from auth.errors import TooManyAttempts
from auth.settings import RateLimits
from auth.store import UsersStore

__all__ = ["LoginThrottle", "ThrottleKey"]

ThrottleKey = tuple[str, int]
"""(store key such as ``user#alice`` or ``address#1.2.3.4``, its failure limit)."""


class LoginThrottle:
    """Checks and counts failures for a login's keys."""

    def __init__(
        self, store: UsersStore, limits: RateLimits, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    def keys(self, address: str, account: str | None) -> list[ThrottleKey]:
        """The keys a login counts against: its source address and, if named, its account."""
        keys: list[ThrottleKey] = [(f"address#{address}", self.limits.address_max_failures)]
        if account is not None:
            keys.append((f"user#{account}", self.limits.user_max_failures))
        return keys

    def check(self, keys: Sequence[ThrottleKey]) -> None:
        """Raise :class:`TooManyAttempts` if any key is locked."""
        now = self.clock()
        wait = 0.0
        for key, _limit in keys:
            throttle = self.store.get_throttle(key)
            if throttle is not None and throttle.locked_until > now:
                wait = max(wait, throttle.locked_until - now)
        if wait > 0:
            raise TooManyAttempts(max(1, math.ceil(wait)))

    def failed(self, keys: Sequence[ThrottleKey]) -> None:
        """Count a failure against every key, locking those that reached their limit."""
        now = self.clock()
        for key, limit in keys:
            throttle = self.store.add_failure(key, now, self.limits.window_s)
            if throttle.failures >= limit:
                self.store.lock(key, now + self.limits.lockout_s)

    def succeeded(self, keys: Sequence[ThrottleKey]) -> None:
        """Clear the account's counter after a successful login (addresses keep theirs)."""
        for key, _limit in keys:
            if key.startswith("user#"):
                self.store.clear_throttle(key)
