"""The local stack's record of every AWS credential it has handed out.

AWS verifies a SigV4 signature by looking the access key up in IAM/STS; the local stack does
the same here. The identity service puts each set of temporary credentials in the store
together with who they belong to and the policy documents that apply to them; the gateway
and the API gateway look keys up to verify signatures and to authorise actions.

For development and tests the store can also be loaded from a JSON file::

    {"credentials": [{
        "access_key_id": "ASIA...", "secret_access_key": "...",
        "session_token": "...",                      # optional (long-term keys have none)
        "expiration": "2026-11-23T12:00:00Z",        # optional; ISO 8601 or epoch seconds
        "principal": "us-east-1:1234-...",           # identity id, role session, or user
        "policy_sets": [[{...policy document...}], [{...}]],
        "variables": {"cognito-identity.amazonaws.com:sub": "us-east-1:1234-..."},
        "arn": "arn:aws:sts::123456789012:assumed-role/Role/Session"   # optional
    }]}

``policy_sets`` is a list of policy-document lists. An action is allowed only when every set
allows it and no document denies it: for a Cognito identity on AWS IoT, the first set is the
authenticated role's IAM policies and the second the IoT policies attached to the identity.

A store tells its listeners (:meth:`CredentialStore.add_listener`) about every key put or
removed: the local stack mirrors its store into the moto process that way, so that the AWS
APIs moto serves verify the same keys.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

PolicyDocument = Mapping[str, Any]


class CredentialFileError(ValueError):
    """A credentials file that cannot be loaded; the message names the entry and the field."""


@dataclass(frozen=True)
class StoredCredential:
    """One access key the local stack recognises, with what it may do."""

    access_key_id: str
    secret_access_key: str
    principal: str
    session_token: str | None = None
    expiration: float | None = None
    """Epoch seconds after which the key is refused; ``None`` for keys that never expire."""
    policy_sets: tuple[tuple[PolicyDocument, ...], ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)
    """Values of policy variables, without ``${}``: ``cognito-identity.amazonaws.com:sub``."""
    arn: str | None = None
    """The principal's ARN as AWS names it in an AccessDenied message (an assumed role's
    session, an IAM user); ``None``: :attr:`principal` is used."""

    def is_expired(self, now: float | None = None) -> bool:
        """True once the credential's expiration has passed."""
        if self.expiration is None:
            return False
        return (time.time() if now is None else now) >= self.expiration


Listener = Callable[[str, StoredCredential | None], None]
"""Called with (access key id, the credential put) or (access key id, ``None``) on removal."""


class CredentialStore:
    """Thread-safe map of access key id → :class:`StoredCredential`."""

    def __init__(self, credentials: Iterable[StoredCredential] = ()) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, StoredCredential] = {}
        self._listeners: list[Listener] = []
        for credential in credentials:
            self.put(credential)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` after every :meth:`put` and :meth:`remove`, in the caller's
        thread and before that call returns (so a key is known to every listener by the time
        whoever minted it hands it out). Purged keys are not reported: they have expired."""
        with self._lock:
            self._listeners.append(listener)

    def put(self, credential: StoredCredential) -> None:
        """Add or replace a credential."""
        with self._lock:
            self._by_key[credential.access_key_id] = credential
            listeners = list(self._listeners)
        for listener in listeners:
            listener(credential.access_key_id, credential)

    def get(self, access_key_id: str) -> StoredCredential | None:
        """The credential for ``access_key_id``, or ``None`` if the key is unknown."""
        with self._lock:
            return self._by_key.get(access_key_id)

    def remove(self, access_key_id: str) -> None:
        """Forget a key (unknown keys are ignored)."""
        with self._lock:
            self._by_key.pop(access_key_id, None)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(access_key_id, None)

    def purge_expired(self, now: float | None = None, grace_s: float = 3600.0) -> int:
        """Drop keys that expired more than ``grace_s`` ago; returns how many were dropped."""
        moment = time.time() if now is None else now
        with self._lock:
            stale = [
                key
                for key, cred in self._by_key.items()
                if cred.expiration is not None and cred.expiration + grace_s < moment
            ]
            for key in stale:
                del self._by_key[key]
        return len(stale)

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)

    @classmethod
    def from_file(cls, path: str | Path) -> CredentialStore:
        """Load a store from the JSON format described in the module docstring."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise CredentialFileError(f"cannot read credentials file {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CredentialFileError(f"credentials file {path} is not JSON: {exc}") from exc
        entries = data.get("credentials") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise CredentialFileError(
                f'credentials file {path} must be an object with a "credentials" list'
            )
        return cls(
            credential_from_dict(entry, f"{path}: credentials[{i}]")
            for i, entry in enumerate(entries)
        )


def credential_from_dict(entry: Any, where: str = "credential") -> StoredCredential:
    """Build a :class:`StoredCredential` from its JSON form; errors name ``where``."""
    if not isinstance(entry, dict):
        raise CredentialFileError(f"{where} must be an object")
    for name in ("access_key_id", "secret_access_key", "principal"):
        if not isinstance(entry.get(name), str) or not entry[name]:
            raise CredentialFileError(f"{where}: {name!r} must be a non-empty string")
    token = _optional_string(entry, "session_token", where)
    policy_sets = entry.get("policy_sets", [])
    if not isinstance(policy_sets, list) or not all(
        isinstance(s, list) and all(isinstance(d, dict) for d in s) for s in policy_sets
    ):
        raise CredentialFileError(f"{where}: 'policy_sets' must be a list of lists of objects")
    variables = entry.get("variables", {})
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in variables.items()
    ):
        raise CredentialFileError(f"{where}: 'variables' must map strings to strings")
    return StoredCredential(
        access_key_id=entry["access_key_id"],
        secret_access_key=entry["secret_access_key"],
        principal=entry["principal"],
        session_token=token,
        expiration=_parse_expiration(entry.get("expiration"), where),
        policy_sets=tuple(tuple(s) for s in policy_sets),
        variables=dict(variables),
        arn=_optional_string(entry, "arn", where),
    )


def _optional_string(entry: Mapping[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise CredentialFileError(f"{where}: {name!r} must be a string")
    return value


def credential_to_dict(credential: StoredCredential) -> dict[str, Any]:
    """The JSON form of a credential (inverse of :func:`credential_from_dict`)."""
    return {
        "access_key_id": credential.access_key_id,
        "secret_access_key": credential.secret_access_key,
        "session_token": credential.session_token,
        "expiration": credential.expiration,
        "principal": credential.principal,
        "policy_sets": [list(s) for s in credential.policy_sets],
        "variables": dict(credential.variables),
        "arn": credential.arn,
    }


def write_credentials_file(path: str | Path, credentials: Sequence[StoredCredential]) -> None:
    """Write credentials in the format :meth:`CredentialStore.from_file` reads."""
    body = {"credentials": [credential_to_dict(c) for c in credentials]}
    Path(path).write_text(json.dumps(body, indent=2), encoding="utf-8")


def _parse_expiration(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise CredentialFileError(
        f"{where}: 'expiration' must be ISO 8601 (2026-11-23T12:00:00Z) or epoch seconds"
    )
