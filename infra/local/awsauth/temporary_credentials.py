"""Minting temporary AWS credentials that the local services recognise.

STS hands out an access key id starting ``ASIA``, a secret and a session token, valid until an
expiration. The local identity service, the demo and the tests mint theirs here and put them
in a :class:`~infra.local.awsauth.credential_store.CredentialStore`.
"""

from __future__ import annotations

import base64
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from typing import Any

from infra.local.awsauth.credential_store import StoredCredential

__all__ = ["mint_temporary_credential"]

_KEY_ALPHABET = string.ascii_uppercase + "234567"


def mint_temporary_credential(
    principal: str,
    policy_sets: Sequence[Sequence[Mapping[str, Any]]],
    *,
    lifetime_s: float = 3600.0,
    variables: Mapping[str, str] | None = None,
    now: float | None = None,
) -> StoredCredential:
    """New random ``ASIA…`` credentials for ``principal``, expiring after ``lifetime_s``."""
    issued = time.time() if now is None else now
    access_key_id = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
    secret = base64.b64encode(secrets.token_bytes(30)).decode("ascii")
    token = base64.b64encode(b"tidings-local:" + secrets.token_bytes(96)).decode("ascii")
    return StoredCredential(
        access_key_id=access_key_id,
        secret_access_key=secret,
        session_token=token,
        expiration=issued + lifetime_s,
        principal=principal,
        policy_sets=tuple(tuple(documents) for documents in policy_sets),
        variables=dict(variables or {}),
    )
