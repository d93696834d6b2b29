"""Password hashing: memory-hard, salted, self-describing, never reversible.

Two schemes, chosen by ``TIDINGS_PASSWORD_HASH``; a stored hash names its own scheme and
parameters, so :func:`verify_password` accepts both and :func:`needs_rehash` says when a
stored hash is weaker than the current parameters (the login then stores a new hash).

- ``argon2id`` (default): OWASP's first recommendation, m = 19 MiB, t = 2, p = 1
  (``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``).
- ``scrypt`` (``hashlib.scrypt``, no extra dependency): OWASP's minimum N = 2^17, r = 8, p = 1
  (128 MiB) (``$scrypt$ln=17,r=8,p=1$<salt>$<hash>``).

Measured on the development machine (bench/login.py): argon2id ≈ 27 ms per verification,
scrypt N=2^17 ≈ 430 ms; only argon2id keeps ≥ 10 logins/s per core at OWASP strength.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ARGON2_PARAMETERS",
    "SCRYPT_PARAMETERS",
    "ScryptParameters",
    "dummy_verify",
    "hash_password",
    "needs_rehash",
    "verify_password",
]


@dataclass(frozen=True)
class ScryptParameters:
    """scrypt cost: N = 2**log2_n, block size r, parallelism p."""

    log2_n: int = 17
    r: int = 8
    p: int = 1
    salt_bytes: int = 16
    hash_bytes: int = 32

    @property
    def maxmem(self) -> int:
        """Memory limit for ``hashlib.scrypt`` (128·r·N·(p+1), with headroom)."""
        return int(128 * self.r * (2**self.log2_n) * (self.p + 1) + 1024 * 1024)


SCRYPT_PARAMETERS = ScryptParameters()
ARGON2_PARAMETERS = {"time_cost": 2, "memory_cost": 19456, "parallelism": 1}
_ARGON2 = argon2.PasswordHasher(**ARGON2_PARAMETERS)  # type: ignore[arg-type]
_SCRYPT = re.compile(
    r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(
    password: str, scheme: str = "argon2id", scrypt: ScryptParameters = SCRYPT_PARAMETERS
) -> str:
    """A new salted hash of ``password`` in the named scheme."""
    if scheme == "argon2id":
        return _ARGON2.hash(password)
    if scheme == "scrypt":
        salt = os.urandom(scrypt.salt_bytes)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=2**scrypt.log2_n,
            r=scrypt.r,
            p=scrypt.p,
            maxmem=scrypt.maxmem,
            dklen=scrypt.hash_bytes,
        )
        return f"$scrypt$ln={scrypt.log2_n},r={scrypt.r},p={scrypt.p}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown password hash scheme {scheme!r}")


def verify_password(password: str, stored: str) -> bool:
    """True iff ``password`` matches ``stored`` (either scheme); malformed hashes never match."""
    if stored.startswith("$argon2"):
        try:
            return _ARGON2.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    match = _SCRYPT.fullmatch(stored)
    if match is None:
        return False
    log2_n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    expected = _unb64(match.group(5))
    params = ScryptParameters(log2_n, r, p)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=_unb64(match.group(4)),
        n=2**log2_n,
        r=r,
        p=p,
        maxmem=params.maxmem,
        dklen=len(expected),
    )
    return hmac.compare_digest(digest, expected)


def needs_rehash(
    stored: str, scheme: str = "argon2id", scrypt: ScryptParameters = SCRYPT_PARAMETERS
) -> bool:
    """True if ``stored`` is not in ``scheme`` with the current parameters."""
    if scheme == "argon2id":
        if not stored.startswith("$argon2id$"):
            return True
        try:
            return _ARGON2.check_needs_rehash(stored)
        except InvalidHashError:
            return True
    match = _SCRYPT.fullmatch(stored)
    if match is None:
        return True
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) != (
        scrypt.log2_n,
        scrypt.r,
        scrypt.p,
    )


_DUMMY: dict[str, str] = {}


def dummy_verify(password: str, scheme: str = "argon2id") -> None:
    """Spend the time a real verification takes, for unknown users (no timing oracle)."""
    stored = _DUMMY.get(scheme)
    if stored is None:
        stored = _DUMMY[scheme] = hash_password("tidings-dummy-password", scheme)
    verify_password(password, stored)
