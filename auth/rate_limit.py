"""Sign-in throttling: guessing stays bounded, and nobody gets a switch to lock others out.

The scheme (see the README's "Security" section for the reasoning against OWASP's
authentication guidance) counts attempts in *buckets*. A bucket is one key (an account, an
address, or both) in one fixed window of time, stored as one item of the users table:

=====================  ==========================================  ===========================
bucket                 what it bounds                              default limit
=====================  ==========================================  ===========================
account + address      guesses at one account from one address     5 per 15 minutes
account (unfamiliar)   guesses at one account from every address   30 per hour
                       that has never signed in to it
address                password spraying from one address across   50 per 15 minutes
                       accounts (and ``id_token`` guessing)
=====================  ==========================================  ===========================

**Atomic.** Before the credentials are checked, the login *reserves* one attempt in each of
its buckets with one conditional ``UpdateItem`` per bucket (``ADD attempts 1`` only while
``attempts < limit``). DynamoDB applies conditional writes to one item one at a time, so no
number of parallel requests gets more than ``limit`` credential checks into a bucket: the
others are answered 429 without their password being looked at. A full bucket answers 429
with ``Retry-After`` until its window ends.

**No lockout switch.** A wrong guess keeps its reservations; a successful sign-in gives them
back (so successes never fill a bucket, e.g. many users behind one NAT) and remembers the
address as *familiar* to the account for ``known_address_days``. A success does not reset
the failures already counted: within a window no bucket ever sees more than ``limit``
checked guesses, whatever succeeds in between. Familiar addresses skip the
account-wide bucket, so an attacker who fills it from many addresses does not lock the owner
out of the places they sign in from; an attacker at one address only fills the buckets of
that address. Unknown usernames are counted like known ones: a 429 says nothing about whether
an account exists.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from auth.errors import TooManyAttempts
from auth.settings import RateLimits
from auth.store import UsersStore

__all__ = ["Bucket", "LoginThrottle", "Reservation", "buckets_for"]

log = logging.getLogger("tidings.auth")

HOUR_S = 3600.0


@dataclass(frozen=True)
class Bucket:
    """One counter: ``key`` within the window of ``window_s`` seconds that holds ``now``."""

    key: str  # e.g. "account-address#user:alice#192.0.2.1"
    limit: int
    window_s: float

    def window_start(self, now: float) -> int:
        """Start (epoch seconds) of the window that holds ``now``."""
        return int(now // self.window_s * self.window_s)

    def store_key(self, now: float) -> str:
        """The users-table key of this bucket's counter for the window that holds ``now``."""
        return f"{self.key}#{self.window_start(now)}"

    def retry_after_s(self, now: float) -> int:
        """Whole seconds until this bucket's window ends (at least 1)."""
        return max(1, math.ceil(self.window_start(now) + self.window_s - now))


def buckets_for(
    limits: RateLimits, address: str, account: str | None, *, familiar: bool
) -> list[Bucket]:
    """The buckets a login from ``address`` for ``account`` counts against, most specific first.

    ``account`` is ``user:<name>`` or ``device:<thing>``, or None for logins that name no
    account (``id_token``); ``familiar`` says whether ``address`` has signed in to it before.
    """
    buckets: list[Bucket] = []
    if account is not None:
        buckets.append(
            Bucket(
                f"account-address#{account}#{address}",
                limits.account_address_max_failures,
                limits.window_s,
            )
        )
        if not familiar:
            buckets.append(Bucket(f"account#{account}", limits.account_hourly_max_failures, HOUR_S))
    buckets.append(Bucket(f"address#{address}", limits.address_max_failures, limits.window_s))
    return buckets


@dataclass
class Reservation:
    """The attempts one login holds; :meth:`release` gives them back after a success."""

    store: UsersStore
    held: list[str]
    ttl: int
    familiar_until: float = 0.0
    """Until when the address is remembered as familiar to the account (0: it is not)."""

    def release(self) -> None:
        """Give back every held attempt (idempotent)."""
        held, self.held = self.held, []
        for store_key in held:
            self.store.release_attempt(store_key)


class LoginThrottle:
    """Reserves attempts for a login's buckets and remembers familiar addresses."""

    def __init__(
        self, store: UsersStore, limits: RateLimits, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.limits = limits
        self.clock = clock

    def reserve(self, address: str, account: str | None) -> Reservation:
        """Reserve one attempt in every bucket of this login, or raise :class:`TooManyAttempts`.

        Either every bucket got its attempt, or none keeps one: a full bucket gives back the
        attempts already taken by this call before raising.
        """
        until = self.store.familiar_until(account, address) if account is not None else 0.0
        familiar = until > self.clock()
        reservation = self.reserve_buckets(
            buckets_for(self.limits, address, account, familiar=familiar)
        )
        reservation.familiar_until = until
        return reservation

    def reserve_buckets(self, buckets: Sequence[Bucket]) -> Reservation:
        """Reserve one attempt in each of ``buckets`` (see :meth:`reserve`)."""
        now = self.clock()
        ttl = int(now + max((b.window_s for b in buckets), default=HOUR_S) * 2 + 86400)
        reservation = Reservation(self.store, [], ttl)
        for bucket in buckets:
            store_key = bucket.store_key(now)
            if not self.store.reserve_attempt(store_key, bucket.limit, ttl):
                reservation.release()
                log.warning("sign-in throttled: %s is full", bucket.key)
                raise TooManyAttempts(bucket.retry_after_s(now))
            reservation.held.append(store_key)
        return reservation

    def succeeded(self, reservation: Reservation, address: str, account: str | None) -> None:
        """After a successful sign-in: give the attempts back and remember the address.

        The address's memory is written when it is new or half its time has passed, so a
        returning user costs no write, and an address in regular use stays familiar.
        """
        reservation.release()
        if account is None:
            return
        now, keep_s = self.clock(), self.limits.known_address_days * 86400
        if reservation.familiar_until - now < keep_s / 2:  # new, or half its time is gone
            self.store.remember_familiar(account, address, int(now + keep_s))
