"""The backend's configuration: one frozen object built from the environment in one place.

Every environment variable the backend reads is named here. Endpoints, region and credentials
come from the standard AWS settings (``AWS_REGION``, ``AWS_ENDPOINT_URL_<SERVICE>``, ...) and are
left to botocore.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from backend.errors import ConfigurationError

__all__ = [
    "ENV_ALLOWED_ORIGIN",
    "ENV_CHANGE_LOG_TABLE",
    "ENV_DEVICE_ROLE_ARN",
    "ENV_INLINE_LIMIT_BYTES",
    "ENV_MAX_WAITS_PER_IDENTITY",
    "ENV_POLL_LEASES_TABLE",
    "ENV_PUBLISH_CONCURRENCY",
    "ENV_RETENTION_S",
    "ENV_ROUTES_FILE",
    "ENV_SEQUENCE_TABLE",
    "ENV_STAGE",
    "ENV_TABLE_PREFIX",
    "ENV_USERS_TABLE",
    "MAX_IOT_PAYLOAD_BYTES",
    "Settings",
    "table_env_name",
]

ENV_STAGE = "TIDINGS_STAGE"
ENV_TABLE_PREFIX = "TIDINGS_TABLE_"
ENV_CHANGE_LOG_TABLE = "TIDINGS_TABLE_CHANGELOGTABLE"
ENV_SEQUENCE_TABLE = "TIDINGS_TABLE_SEQUENCETABLE"
ENV_USERS_TABLE = "TIDINGS_TABLE_USERSTABLE"
ENV_POLL_LEASES_TABLE = "TIDINGS_TABLE_POLLLEASESTABLE"
ENV_MAX_WAITS_PER_IDENTITY = "TIDINGS_MAX_WAITS_PER_IDENTITY"
ENV_RETENTION_S = "TIDINGS_RETENTION_S"
ENV_INLINE_LIMIT_BYTES = "TIDINGS_INLINE_LIMIT_BYTES"
ENV_ROUTES_FILE = "TIDINGS_ROUTES_FILE"
ENV_PUBLISH_CONCURRENCY = "TIDINGS_PUBLISH_CONCURRENCY"
ENV_PUBLISH_WINDOW = "TIDINGS_PUBLISH_WINDOW"
ENV_ALLOWED_ORIGIN = "TIDINGS_ALLOWED_ORIGIN"
ENV_DEVICE_ROLE_ARN = "TIDINGS_DEVICE_ROLE_ARN"

MAX_IOT_PAYLOAD_BYTES = 128 * 1024
"""AWS IoT Core's payload limit."""

DEFAULT_RETENTION_S = 24 * 3600
DEFAULT_PUBLISH_CONCURRENCY = 64
DEFAULT_PUBLISH_WINDOW = 8
DEFAULT_MAX_WAITS_PER_IDENTITY = 4
MAX_WAITS_PER_IDENTITY_LIMIT = 64


def table_env_name(logical_id: str) -> str:
    """``TIDINGS_TABLE_<LOGICAL_ID_UPPER>``: the variable holding a table's physical name."""
    return ENV_TABLE_PREFIX + logical_id.upper()


@dataclass(frozen=True)
class Settings:
    """Everything the publisher and the channels API need to know about their deployment."""

    stage: str
    change_log_table: str
    sequence_table: str
    routes_file: str
    retention_s: int = DEFAULT_RETENTION_S
    inline_limit_bytes: int = MAX_IOT_PAYLOAD_BYTES
    publish_concurrency: int = DEFAULT_PUBLISH_CONCURRENCY
    publish_window: int = DEFAULT_PUBLISH_WINDOW
    """Publishes of one channel in flight at once, started in ``seq`` order (1: one by one)."""
    users_table: str | None = None
    poll_leases_table: str | None = None
    """The long-poll leases table (``backend.poll_leases``); the channels API requires it."""
    max_waits_per_identity: int = DEFAULT_MAX_WAITS_PER_IDENTITY
    """Waiting polls (``wait`` > 0) one identity may hold open at once, over all channels
    (``TIDINGS_MAX_WAITS_PER_IDENTITY``, 1 to 64); one per channel in any case."""
    tables: Mapping[str, str] = field(default_factory=dict)
    """Source tables: upper-cased logical id → physical table name."""
    allowed_origin: str = ""
    """The one origin (or ``*``) whose pages may read the channels API's answers
    (``TIDINGS_ALLOWED_ORIGIN``, the template's ``AllowedOrigins``); "": no CORS headers."""
    device_role_arn: str | None = None
    """The IAM role devices get credentials for from the AWS IoT credentials provider
    (``TIDINGS_DEVICE_ROLE_ARN``, the template's ``DeviceRole``): the channels API reads a
    session of that role as the thing its channel names. None: no device reads the API."""

    def __post_init__(self) -> None:
        if not self.stage or "/" in self.stage or "+" in self.stage or "#" in self.stage:
            raise ConfigurationError(
                f"{ENV_STAGE} must be a non-empty topic segment, not {self.stage!r}"
            )
        if self.retention_s < 60:
            raise ConfigurationError(f"{ENV_RETENTION_S} must be at least 60 seconds")
        if not 256 <= self.inline_limit_bytes <= MAX_IOT_PAYLOAD_BYTES:
            raise ConfigurationError(
                f"{ENV_INLINE_LIMIT_BYTES} must be between 256 and "
                f"{MAX_IOT_PAYLOAD_BYTES} (AWS IoT's payload limit)"
            )
        if not 1 <= self.publish_concurrency <= 256:
            raise ConfigurationError(f"{ENV_PUBLISH_CONCURRENCY} must be between 1 and 256")
        if not 1 <= self.publish_window <= 64:
            raise ConfigurationError(f"{ENV_PUBLISH_WINDOW} must be between 1 and 64")
        if not 1 <= self.max_waits_per_identity <= MAX_WAITS_PER_IDENTITY_LIMIT:
            raise ConfigurationError(
                f"{ENV_MAX_WAITS_PER_IDENTITY} must be between 1 and {MAX_WAITS_PER_IDENTITY_LIMIT}"
            )

    @property
    def topic_prefix(self) -> str:
        """``tidings/<stage>/``: prepended to a channel to make its MQTT topic."""
        return f"tidings/{self.stage}/"

    def table_name(self, logical_id: str) -> str | None:
        """The physical name of a source table, or None if the environment does not name it."""
        return self.tables.get(logical_id.upper())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings; a missing or malformed variable fails here, naming it."""
        env = os.environ if environ is None else environ
        own = {ENV_CHANGE_LOG_TABLE, ENV_SEQUENCE_TABLE, ENV_USERS_TABLE, ENV_POLL_LEASES_TABLE}
        tables = {
            name[len(ENV_TABLE_PREFIX) :]: value
            for name, value in env.items()
            if name.startswith(ENV_TABLE_PREFIX) and name not in own and value
        }
        return cls(
            stage=_required(env, ENV_STAGE),
            change_log_table=_required(env, ENV_CHANGE_LOG_TABLE),
            sequence_table=_required(env, ENV_SEQUENCE_TABLE),
            routes_file=_required(env, ENV_ROUTES_FILE),
            retention_s=_integer(env, ENV_RETENTION_S, DEFAULT_RETENTION_S),
            inline_limit_bytes=_integer(env, ENV_INLINE_LIMIT_BYTES, MAX_IOT_PAYLOAD_BYTES),
            publish_concurrency=_integer(env, ENV_PUBLISH_CONCURRENCY, DEFAULT_PUBLISH_CONCURRENCY),
            publish_window=_integer(env, ENV_PUBLISH_WINDOW, DEFAULT_PUBLISH_WINDOW),
            users_table=env.get(ENV_USERS_TABLE) or None,
            poll_leases_table=env.get(ENV_POLL_LEASES_TABLE) or None,
            max_waits_per_identity=_integer(
                env, ENV_MAX_WAITS_PER_IDENTITY, DEFAULT_MAX_WAITS_PER_IDENTITY
            ),
            tables=tables,
            allowed_origin=env.get(ENV_ALLOWED_ORIGIN, "").strip(),
            device_role_arn=env.get(ENV_DEVICE_ROLE_ARN, "").strip() or None,
        )


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is required and not set")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {text!r}") from None
