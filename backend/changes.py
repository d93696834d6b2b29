"""The pure core of the publisher: stream record → channel changes → envelopes. No I/O.

A record is routed by its source table (the physical name in its ``eventSourceARN``, mapped back
to the route's logical id through the settings) to every channel its route's templates fill
from the item: from the new image, and from the old image too, so that an item that moves
(for example from one tenant to another) is announced on both channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backend.attribute_values import JsonValue, dumps, from_image
from backend.errors import ConfigurationError, RecordError

if TYPE_CHECKING:
    from backend.routes import Route

__all__ = [
    "ENVELOPE_VERSION",
    "TTL_PRINCIPAL",
    "ChannelChange",
    "Encoded",
    "Router",
    "StreamChange",
    "decode_record",
    "encode_envelope",
    "table_name_from_arn",
]

ENVELOPE_VERSION = 1
TTL_PRINCIPAL = "dynamodb.amazonaws.com"
"""``userIdentity.principalId`` of a deletion made by DynamoDB's TTL."""

_OPS = {"INSERT": "insert", "MODIFY": "modify", "REMOVE": "remove"}


@dataclass(frozen=True)
class StreamChange:
    """One DynamoDB stream record, decoded to plain values."""

    event_id: str
    sequence_number: str
    op: str  # insert | modify | remove
    table_name: str
    keys: dict[str, JsonValue]
    new: dict[str, JsonValue] | None
    old: dict[str, JsonValue] | None
    at_ms: int
    expired: bool = False
    """A deletion made by DynamoDB's TTL rather than by the application."""


@dataclass(frozen=True)
class ChannelChange:
    """A change as one channel sees it; ``index`` is the record's position in its batch."""

    index: int
    channel: str
    route: Route
    change: StreamChange


@dataclass(frozen=True)
class Encoded:
    """An envelope as stored in the change log and as published (``ref: true`` if too large)."""

    full: str
    published: bytes
    ref: bool = False
    """The published form is the reference (``ref: true``, no images)."""


def table_name_from_arn(arn: str) -> str:
    """``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>`` → ``<name>``."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or not parts[5].startswith("table/"):
        raise RecordError(f"not a DynamoDB stream ARN: {arn!r:.200}")
    return parts[5].split("/")[1]


def decode_record(record: Mapping[str, Any]) -> StreamChange:
    """A Lambda DynamoDB stream record (as the event source mapping sends it) → StreamChange."""
    try:
        body = record["dynamodb"]
        op = _OPS[record["eventName"]]
        keys = from_image(body["Keys"])
        new = from_image(body["NewImage"]) if "NewImage" in body else None
        old = from_image(body["OldImage"]) if "OldImage" in body else None
        created = body.get("ApproximateCreationDateTime")
        at_ms = int(Decimal(str(created)) * 1000) if created is not None else 0
        identity = record.get("userIdentity") or {}
        expired = (
            op == "remove"
            and identity.get("type") == "Service"
            and identity.get("principalId") == TTL_PRINCIPAL
        )
        return StreamChange(
            event_id=str(record["eventID"]),
            sequence_number=str(body["SequenceNumber"]),
            op=op,
            table_name=table_name_from_arn(str(record["eventSourceARN"])),
            keys=keys,
            new=new,
            old=old,
            at_ms=at_ms,
            expired=expired,
        )
    except RecordError:
        raise
    except (KeyError, TypeError, AttributeError, ArithmeticError, ValueError) as exc:
        raise RecordError(f"malformed DynamoDB stream record: {exc!r:.200}") from exc


class Router:
    """Maps a decoded change to the channels of its table's routes."""

    def __init__(self, routes: Sequence[Route], table_names: Mapping[str, str]) -> None:
        """``table_names`` maps each route's logical table id to its physical table name."""
        self._by_table: dict[str, list[Route]] = {}
        for route in routes:
            physical = table_names.get(route.table)
            if physical is None:
                raise ConfigurationError(
                    f"no physical table name for {route.table!r} (route line "
                    f"{route.line}); set TIDINGS_TABLE_{route.table.upper()}"
                )
            self._by_table.setdefault(physical, []).append(route)

    def route(self, index: int, change: StreamChange) -> list[ChannelChange]:
        """Every (channel, change) pair for one record, channels in template order."""
        routes = self._by_table.get(change.table_name)
        if routes is None:
            raise RecordError(
                f"no route for table {change.table_name!r}; the publisher is "
                "subscribed to a stream its routes do not name"
            )
        out: list[ChannelChange] = []
        for route in routes:
            seen: set[str] = set()
            for image in (change.new, change.old):
                if image is None:
                    continue
                for channel in route.render({**image, **change.keys}):
                    if channel not in seen:
                        seen.add(channel)
                        out.append(ChannelChange(index, channel, route, change))
            if change.new is None and change.old is None:  # KEYS_ONLY streams
                for channel in route.render(change.keys):
                    out.append(ChannelChange(index, channel, route, change))
        return out


def _project(route: Route, image: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if image is None or route.attributes is None:
        return image
    return {name: image[name] for name in route.attributes if name in image}


def encode_envelope(item: ChannelChange, seq: int, epoch: int, inline_limit: int) -> Encoded:
    """The envelope for one channel change at ``seq``/``epoch``.

    Fields in order: ``v, channel, seq, epoch, id, op, keys, new, old`` (``old`` only when the
    route asks for it), ``at``, then ``expired: true`` for a TTL deletion. When the encoded
    envelope exceeds ``inline_limit`` bytes the published form drops ``new``/``old`` and says
    ``ref: true``; the change log always keeps the full envelope.
    """
    change, route = item.change, item.route
    head: dict[str, JsonValue] = {
        "v": ENVELOPE_VERSION,
        "channel": item.channel,
        "seq": seq,
        "epoch": epoch,
        "id": change.event_id,
        "op": change.op,
        "keys": change.keys,
    }
    tail: dict[str, JsonValue] = {"at": change.at_ms}
    if change.expired:
        tail["expired"] = True
    body: dict[str, JsonValue] = {**head, "new": _project(route, change.new)}
    if route.old_image:
        body["old"] = _project(route, change.old)
    full = dumps({**body, **tail})
    payload = full.encode()
    if len(payload) > inline_limit:
        return Encoded(full, dumps({**head, **tail, "ref": True}).encode(), ref=True)
    return Encoded(full, payload)
