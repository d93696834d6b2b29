"""The channels API: a channel's head, and its changes after a cursor (with long-poll).

Routes (API Gateway REST, AWS_IAM auth, Lambda proxy integration, one greedy resource
``/v1/channels/{channel+}``):

* ``GET /v1/channels/<channel>`` → ``{"channel", "head", "epoch"}`` (head 0, epoch 1 for a
  channel with no changes, whether or not anything was ever written to it);
* ``GET /v1/channels/<channel>/changes?after=<seq>&limit=<n>&wait=<s>[&epoch=<e>]`` →
  ``{"channel", "epoch", "head", "changes": [<envelope>...], "next", "more"}``: the stored
  full envelopes (images included even when the push was ``ref: true``) with ``seq > after``,
  in order. ``limit`` 1 to 1000 (default 100); ``wait`` 0 to 20 s long-polls until
  something arrives; ``next`` is the cursor for the following call.

A cursor whose next change is past the retention, beyond the head, or from another epoch gets
410 ``{"error": "cursor_expired", "message", "head", "epoch"}``. The caller is the Cognito
identity in ``requestContext.identity.cognitoIdentityId`` and is authorised with the same
rules as the MQTT topics (:func:`backend.access.may_read`). A device calls with the credentials
the AWS IoT credentials provider gave it for its certificate: a session of the device role
(``TIDINGS_DEVICE_ROLE_ARN``; ``requestContext.identity.userArn`` is
``arn:aws:sts::<account>:assumed-role/<role name>/<session>``). IAM has already let it call
its own thing's paths only (the role's policy names ``${credentials-iot:ThingName}``), so it
is read as :meth:`Principal.of_thing <backend.access.Principal.of_thing>` of the thing its
channel names, which reads that ``thing:`` channel and nothing else.

A poll that would wait (``wait`` > 0 and nothing after the cursor yet) first takes a
long-poll lease (:mod:`backend.poll_leases`): one waiting poll per identity and channel, and
at most ``TIDINGS_MAX_WAITS_PER_IDENTITY`` per identity. Without one it is answered at once
with 429 ``{"error": "too_many_waits", "message"}`` and ``Retry-After`` (seconds).

Input is checked strictly: ``after``, ``limit`` and ``epoch`` are ASCII decimal digits,
``wait`` is ASCII digits with an optional fraction (``str.isdigit`` and ``float`` would take
``²`` or ``٣``). The channel comes from ``pathParameters``, which API Gateway has already
percent-decoded once, and is not decoded again (``%252F`` is the literal text ``%2F``,
which no channel segment allows); only the ``path`` fallback, still encoded, is decoded once.
Every refusal is a 4xx ``{"error", "message"}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from backend.access import Principal, find_route, may_read
from backend.attribute_values import JsonValue, dumps
from backend.change_store import ChangeStore, Head
from backend.cors import cors_headers
from backend.errors import (
    BadRequest,
    ConfigurationError,
    CursorExpired,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    RequestError,
    StoreError,
    TooManyWaits,
    Unavailable,
)
from backend.poll_leases import Lease, PollLeases, Refused
from backend.routes import CHANNEL_SEGMENT, MAX_CHANNEL_SLASHES, Route
from backend.settings import ENV_POLL_LEASES_TABLE, Settings

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "MAX_WAIT_S",
    "ME",
    "ChannelsApi",
    "ChannelsRequest",
    "clear_caches",
    "handle_api_event",
    "is_role_session",
    "parse_request",
    "resolve_me",
]

PATH_PREFIX = "/v1/channels/"
CHANGES_SUFFIX = "/changes"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT_S = 20.0
POLL_INTERVAL_S = 0.25
MAX_BODY_BYTES = 5 * 1024 * 1024  # Lambda's response limit is 6 MB
MAX_TOPIC_BYTES = 256
_CHANGES_PARAMETERS = {"after", "limit", "wait", "epoch"}
_WHOLE_NUMBER = re.compile(r"\A[0-9]{1,18}\Z")  # ASCII only: str.isdigit() takes "²"
_SECONDS = re.compile(r"\A[0-9]{1,6}(?:\.[0-9]{1,6})?\Z")  # float() takes "٣" and "1_0"
_ROLE_ARN = re.compile(r"\Aarn:(aws[a-z-]*):iam::([0-9]{12}):role/(?:[^/]+/)*([\w+=,.@-]+)\Z")
_SESSION_ARN = re.compile(
    r"\Aarn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([\w+=,.@-]+)/([\w+=,.@-]+)\Z"
)


@dataclass(frozen=True)
class ChannelsRequest:
    """A parsed, validated (not yet authorised) channels API request.

    ``identity_id`` names the caller (its long-poll slots are its own): the Cognito identity
    id, or for a device the ARN of its role session. ``thing`` is set for a device only: the
    thing the channel names (None if the channel names no thing; such a device reads nothing).
    """

    kind: str  # "head" | "changes"
    channel: str
    identity_id: str
    route: Route
    after: int = 0
    limit: int = DEFAULT_LIMIT
    wait_s: float = 0.0
    epoch: int | None = None
    device: bool = False
    thing: str | None = None


def parse_request(
    event: Mapping[str, Any],
    routes: Sequence[Route],
    topic_prefix: str = "tidings/dev/",
    device_role_arn: str | None = None,
) -> ChannelsRequest:
    """An API Gateway REST proxy event → :class:`ChannelsRequest`; errors name the problem.

    ``device_role_arn`` is the role whose sessions are devices (None: no caller is a device).
    """
    path = _channel_path(event)
    method = str(event.get("httpMethod") or "GET").upper()
    if method != "GET":
        raise MethodNotAllowed(f"{method} is not supported here; use GET")
    identity = (event.get("requestContext") or {}).get("identity") or {}
    caller = identity.get("cognitoIdentityId")
    device = False
    if not caller and is_role_session(identity.get("userArn"), device_role_arn):
        caller, device = identity.get("userArn"), True
    if not caller:
        raise Forbidden(
            "channels are read by signed-in Cognito identities and by devices; sign the "
            "request with the credentials /v1/login gave you, or for a device with those the "
            "AWS IoT credentials provider gave it for its certificate"
        )
    kind, channel = "head", path
    if find_route(routes, path) is None and path.endswith(CHANGES_SUFFIX):
        kind, channel = "changes", path[: -len(CHANGES_SUFFIX)]
    if not device:
        channel = resolve_me(routes, channel, str(caller))
    found = _check_channel(channel, routes, topic_prefix)
    caller_fields: dict[str, Any] = {"device": device}
    if device:
        caller_fields["thing"] = _thing_of(routes, channel)
    params = _query_parameters(event)
    if kind == "head":
        if params:
            raise BadRequest(
                f"the head of a channel takes no parameters (got "
                f"{', '.join(sorted(params))}); did you mean .../changes?"
            )
        return ChannelsRequest("head", channel, str(caller), found, **caller_fields)
    unknown = sorted(set(params) - _CHANGES_PARAMETERS)
    if unknown:
        raise BadRequest(
            f"unknown parameter(s) {', '.join(unknown)}; allowed: after, limit, wait, epoch"
        )
    return ChannelsRequest(
        "changes",
        channel,
        str(caller),
        found,
        after=_integer(params, "after", 0, minimum=0),
        limit=_integer(params, "limit", DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT),
        wait_s=_seconds(params, "wait"),
        epoch=_integer(params, "epoch", 0, minimum=1) if "epoch" in params else None,
        **caller_fields,
    )


ME = "me"
"""In an ``owner:`` channel's owner segment: the caller's own identity id."""


def resolve_me(routes: Sequence[Route], channel: str, identity_id: str) -> str:
    """``channel`` with ``me`` in the owner's place replaced by ``identity_id``
    (``users/me/todos`` → ``users/us-east-1:…/todos``); any other channel unchanged.

    Identity ids hold a ``:``, which signers that do not percent-encode the path (curl's
    ``--aws-sigv4``) sign differently from AWS; ``me`` spares them that segment.
    """
    found = find_route(routes, channel)
    if found is None:
        return channel
    route, values = found
    owner = route.readers.placeholder
    if route.readers.kind != "owner" or owner is None or values.get(owner) != ME:
        return channel
    parts = channel.split("/")
    for template in route.channels:
        segments = template.split("/")
        if len(segments) == len(parts) and "{" + owner + "}" in segments:
            parts[segments.index("{" + owner + "}")] = identity_id
            return "/".join(parts)
    return channel


def is_role_session(user_arn: object, role_arn: str | None) -> bool:
    """True if ``user_arn`` (``arn:aws:sts::<account>:assumed-role/<name>/<session>``) is a
    session of the IAM role ``role_arn`` (``arn:aws:iam::<account>:role[/<path>]/<name>``):
    same partition, account and role name. False for anything else, None included."""
    if not role_arn or not isinstance(user_arn, str):
        return False
    role = _ROLE_ARN.match(role_arn)
    session = _SESSION_ARN.match(user_arn)
    if role is None or session is None:
        return False
    return session.group(1, 2, 3) == role.group(1, 2, 3)


def _thing_of(routes: Sequence[Route], channel: str) -> str | None:
    """The thing a ``thing:`` channel names (None: the channel's readers are not a thing)."""
    found = find_route(routes, channel)
    if found is None:
        return None
    route, values = found
    if route.readers.kind != "thing" or route.readers.placeholder is None:
        return None
    return values.get(route.readers.placeholder) or None


def _channel_path(event: Mapping[str, Any]) -> str:
    """The channel part of the path, percent-decoded exactly once.

    API Gateway REST decodes path parameters once before it builds the proxy event, so
    ``pathParameters`` is used as it comes; ``path`` (only a fallback) is still encoded.
    """
    parameters = event.get("pathParameters") or {}
    decoded = parameters.get("channel") or parameters.get("proxy")
    if decoded is None:
        path = str(event.get("path") or "")
        if not path.startswith(PATH_PREFIX):
            raise NotFound(f"no such path {path!r}; channels live under {PATH_PREFIX}")
        decoded = unquote(path[len(PATH_PREFIX) :])
    return str(decoded).strip("/")


def _check_channel(channel: str, routes: Sequence[Route], topic_prefix: str) -> Route:
    if not channel:
        raise BadRequest("the channel is missing: GET /v1/channels/<channel>")
    segments = channel.split("/")
    if len(segments) - 1 > MAX_CHANNEL_SLASHES:
        raise BadRequest(f"channel {channel!r} has more than {MAX_CHANNEL_SLASHES} slashes")
    for segment in segments:
        if not CHANNEL_SEGMENT.match(segment):
            raise BadRequest(
                f"channel {channel!r} has an invalid segment {segment!r}; "
                "segments are 1-128 of letters, digits and _.:@=-, not dots alone"
            )
    if len((topic_prefix + channel).encode()) > MAX_TOPIC_BYTES:
        raise BadRequest(f"channel {channel!r} is too long for an AWS IoT topic (256 bytes)")
    found = find_route(routes, channel)
    if found is None:
        shapes = ", ".join(template for route in routes for template in route.channels)
        raise BadRequest(f"channel {channel!r} matches no route; channels look like {shapes}")
    return found[0]


def _query_parameters(event: Mapping[str, Any]) -> dict[str, str]:
    multi = event.get("multiValueQueryStringParameters") or {}
    for name, values in multi.items():
        if isinstance(values, list) and len(values) > 1:
            raise BadRequest(f"parameter {name!r} is given {len(values)} times; give it once")
    return {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}


def _integer(
    params: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    text = params.get(name)
    if text is None:
        return default
    if not _WHOLE_NUMBER.match(text):
        raise BadRequest(
            f"{name} must be a whole number written with the digits 0-9, not {text[:40]!r}"
        )
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"≥ {minimum}"
        raise BadRequest(f"{name} must be {bounds}, not {value}")
    return value


def _seconds(params: Mapping[str, str], name: str) -> float:
    text = params.get(name)
    if text is None:
        return 0.0
    if not _SECONDS.match(text):
        raise BadRequest(
            f"{name} must be a number of seconds written with the digits 0-9 "
            f"(like 20 or 2.5), not {text[:40]!r}"
        )
    value = float(text)
    if not 0 <= value <= MAX_WAIT_S:
        raise BadRequest(f"{name} must be between 0 and {MAX_WAIT_S:g} seconds, not {text!r}")
    return value


class ChannelsApi:
    """Answers channels API requests; build it once per process with :meth:`from_settings`."""

    def __init__(
        self,
        routes: Sequence[Route],
        store: ChangeStore,
        tenants: Callable[[str], frozenset[str]],
        *,
        topic_prefix: str = "tidings/dev/",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval_s: float = POLL_INTERVAL_S,
        logger: Any = None,
        leases: PollLeases | None = None,
        allowed_origin: str = "",
        device_role_arn: str | None = None,
    ) -> None:
        """``tenants`` maps an identity id to the tenants it belongs to; ``leases`` bounds the
        waiting polls (None: unbounded, for tests of other parts only); ``allowed_origin``
        (one origin or ``*``) is named in every answer's CORS headers ("": none);
        ``device_role_arn`` is the role whose sessions are devices (None: no device)."""
        self.device_role_arn = device_role_arn
        self.cors_headers = cors_headers(allowed_origin)
        self.routes = tuple(routes)
        self.leases = leases
        self.store = store
        self.tenants = tenants
        self.topic_prefix = topic_prefix
        self._clock = clock
        self._sleep = sleep
        self.poll_interval_s = poll_interval_s
        self.logger = logger

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelsApi:
        """The production wiring: routes from the settings' file, lazy boto3 clients."""
        from backend import aws_clients
        from backend.observability import make_logger
        from backend.routes import load_routes
        from backend.tenants import UsersTableTenants

        def dynamodb() -> Any:
            return aws_clients.client("dynamodb")

        if not settings.poll_leases_table:
            raise ConfigurationError(
                f"{ENV_POLL_LEASES_TABLE} is required by the channels API: it holds the "
                "long-poll leases that keep one identity from holding every execution"
            )
        store = ChangeStore(
            dynamodb, settings.sequence_table, settings.change_log_table, settings.retention_s
        )
        logger = make_logger("tidings-channels-api")
        leases = PollLeases(
            dynamodb,
            settings.poll_leases_table,
            settings.max_waits_per_identity,
            logger=logger,
        )
        tenants: Callable[[str], frozenset[str]]
        if settings.users_table:
            tenants = UsersTableTenants(dynamodb, settings.users_table)
        else:
            tenants = _no_tenants
        return cls(
            load_routes(settings.routes_file),
            store,
            tenants,
            topic_prefix=settings.topic_prefix,
            logger=logger,
            leases=leases,
            allowed_origin=settings.allowed_origin,
            device_role_arn=settings.device_role_arn,
        )

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """An API Gateway REST proxy event → its proxy response."""
        try:
            request = parse_request(event, self.routes, self.topic_prefix, self.device_role_arn)
            self._authorise(request)
            if request.kind == "head":
                head = self._head(request.channel)
                body = dumps({"channel": request.channel, "head": head.seq, "epoch": head.epoch})
            else:
                body = self._changes(request)
            return _response(200, body, self.cors_headers)
        except RequestError as exc:
            return _response(exc.STATUS, dumps(exc.body()), {**self.cors_headers, **exc.headers()})
        except Exception:
            if self.logger is not None:
                self.logger.exception("channels API request failed")
            error: dict[str, JsonValue] = {
                "error": "internal",
                "message": "the request failed; try again later",
            }
            return _response(500, dumps(error), self.cors_headers)

    def _authorise(self, request: ChannelsRequest) -> None:
        if request.device:
            if request.thing is None or not may_read(
                self.routes, Principal.of_thing(request.thing), request.channel
            ):
                raise Forbidden(
                    f"a device reads its own thing's channels only, not {request.channel}"
                )
            return
        tenants: frozenset[str] = frozenset()
        if request.route.readers.kind == "tenant":
            try:
                tenants = self.tenants(request.identity_id)
            except StoreError as exc:
                raise Unavailable(f"tenant membership could not be read: {exc}") from exc
        principal = Principal(request.identity_id, tenants)
        if not may_read(self.routes, principal, request.channel):
            raise Forbidden(f"identity {request.identity_id} may not read {request.channel}")

    def _head(self, channel: str) -> Head:
        try:
            return self.store.head(channel)
        except StoreError as exc:
            raise Unavailable(str(exc)) from exc

    def _changes(self, request: ChannelsRequest) -> str:
        head = self._head(request.channel)
        if request.wait_s > 0 and _nothing_new(request, head):
            lease = self._take_lease(request)
            try:
                head = self._wait(request, head)
            finally:
                if lease is not None and self.leases is not None:
                    self.leases.release(lease)
        return self._answer(request, head)

    def _take_lease(self, request: ChannelsRequest) -> Lease | None:
        """The long-poll lease this wait needs (None without a lease store); raises
        :class:`TooManyWaits` when the identity has no slot left."""
        if self.leases is None:
            return None
        try:
            lease = self.leases.acquire(request.identity_id, request.channel, request.wait_s)
        except StoreError as exc:
            raise Unavailable(f"the long-poll slots could not be read: {exc}") from exc
        if isinstance(lease, Refused):
            seconds = lease.retry_after_s
            if lease.reason == "channel":
                message = (
                    f"you already have a waiting poll on {request.channel}; it answers as soon "
                    f"as a change arrives. Read without wait, or long-poll again in {seconds} s"
                )
            else:
                message = (
                    f"you already have {lease.limit} waiting polls open, the most one identity "
                    f"may hold; wait for one to answer, read without wait, or long-poll again "
                    f"in {seconds} s"
                )
            raise TooManyWaits(message, retry_after_s=seconds)
        return lease

    def _wait(self, request: ChannelsRequest, head: Head) -> Head:
        """Re-read the head until something arrives after the cursor or the wait is over."""
        deadline = self._clock() + request.wait_s
        while _nothing_new(request, head):
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            self._sleep(min(self.poll_interval_s, remaining))
            head = self._head(request.channel)
        return head

    def _answer(self, request: ChannelsRequest, head: Head) -> str:
        channel, after = request.channel, request.after
        if request.epoch is not None and request.epoch != head.epoch:
            raise CursorExpired(
                f"the cursor is from epoch {request.epoch}; {channel} is at epoch {head.epoch}: "
                "reload from the head",
                head=head.seq,
                epoch=head.epoch,
            )
        if after > head.seq:
            raise CursorExpired(
                f"cursor {after} is beyond the head {head.seq} of {channel} (the log was reset); "
                "reload from the head",
                head=head.seq,
                epoch=head.epoch,
            )
        if after == head.seq:
            return _changes_body(channel, head, [], after)
        try:
            entries = self.store.read(channel, after, request.limit)
        except StoreError as exc:
            raise Unavailable(str(exc)) from exc
        now = self._clock()
        first = entries[0] if entries else None
        if first is None or first.seq != after + 1 or first.expires <= now:
            raise CursorExpired(
                f"the changes after {after} on {channel} are older than the retention; "
                "reload from the head",
                head=head.seq,
                epoch=head.epoch,
            )
        texts: list[str] = []
        size, last = 0, after
        for entry in entries:
            if entry.seq != last + 1 or (texts and size + len(entry.envelope) > MAX_BODY_BYTES):
                break
            texts.append(entry.envelope)
            size += len(entry.envelope) + 1
            last = entry.seq
        head = Head(max(head.seq, last), head.epoch)
        return _changes_body(channel, head, texts, last)


def _nothing_new(request: ChannelsRequest, head: Head) -> bool:
    """True while a poll has nothing to answer yet (same epoch, nothing after the cursor)."""
    return head.seq == request.after and request.epoch in (None, head.epoch)


def _changes_body(channel: str, head: Head, envelopes: list[str], last: int) -> str:
    prefix = dumps({"channel": channel, "epoch": head.epoch, "head": head.seq})[:-1]
    more = "true" if last < head.seq else "false"
    return f'{prefix},"changes":[{",".join(envelopes)}],"next":{last},"more":{more}}}'


def _response(status: int, body: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            **(headers or {}),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _no_tenants(identity_id: str) -> frozenset[str]:
    return frozenset()


_api: ChannelsApi | None = None


def handle_api_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Lambda entry: answer one proxy event with the process-wide :class:`ChannelsApi`."""
    global _api
    if _api is None:
        _api = ChannelsApi.from_settings(Settings.from_env())
    return _api.handle(event)


def clear_caches() -> None:
    """Forget the process-wide API object (tests that change the environment)."""
    global _api
    _api = None
