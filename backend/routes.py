"""Declarative routes: which table's changes go to which channels, who may read them, and
who may write the table directly.

The same route list drives the publisher (record → channels), the channels API's
authorisation, and the IAM/IoT policy documents derived in ``auth/``. The file format is YAML
(see ``infra/routes.yaml``); :func:`load_routes` validates it and every error names the line
and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CHANNEL_SEGMENT",
    "MAX_CHANNEL_BYTES",
    "READER_KINDS",
    "Readers",
    "Route",
    "RouteError",
    "Writers",
    "check_partition_keys",
    "load_routes",
    "parse_routes",
]

CHANNEL_SEGMENT = re.compile(r"\A(?!\.+\Z)[A-Za-z0-9_.:@=-]{1,128}\Z")
"""What one channel segment may contain once filled (no '/', '+', '#', '*', '?', '$'), and
not dots alone: ``.`` and ``..`` mean something else in a URL path."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TEMPLATE_SEGMENT = re.compile(r"\A(?:[A-Za-z0-9_.:@=-]+|\{[A-Za-z_][A-Za-z0-9_]*\})\Z")
MAX_CHANNEL_SLASHES = 5  # tidings/<stage>/ adds 2 of AWS IoT's 7
MAX_CHANNEL_BYTES = 226
"""AWS IoT allows 256 bytes in a topic; ``tidings/<stage>/`` takes up to 30 (stage ≤ 20)."""


READER_KINDS = ("owner", "tenant", "thing")
"""The kinds of ``readers`` that name a placeholder (``public`` names none)."""


class RouteError(ValueError):
    """A route file that cannot be used; the message names the line and the problem."""


@dataclass(frozen=True)
class Readers:
    """Who may read a route's channels.

    ``owner:<p>``: the Cognito identity whose id is ``{p}``; ``tenant:<p>``: the members of
    the tenant ``{p}``; ``thing:<p>``: the AWS IoT thing named ``{p}`` (a device with its
    X.509 certificate, or with the credentials the AWS IoT credentials provider gave it for
    that certificate); ``public``: every signed-in identity.
    """

    kind: str  # "owner" | "tenant" | "thing" | "public"
    placeholder: str | None = None

    def __str__(self) -> str:
        return self.kind if self.placeholder is None else f"{self.kind}:{self.placeholder}"


@dataclass(frozen=True)
class Writers:
    """Who may write a route's table directly (DynamoDB, with its own credentials).

    ``owner:<attribute>``: an identity may put, update, delete and read the items whose
    ``attribute`` (the table's partition key) equals its identity id; the role's policy says
    so with ``dynamodb:LeadingKeys`` (``auth.policies``).
    """

    kind: str  # "owner"
    attribute: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.attribute}"


@dataclass(frozen=True)
class Route:
    """One table → channels rule."""

    table: str
    channels: tuple[str, ...]
    attributes: tuple[str, ...] | None  # None = all attributes
    old_image: bool
    readers: Readers
    line: int = 0
    writers: Writers | None = None  # None = no direct writes

    def placeholders(self) -> set[str]:
        """Attribute names the channel templates need."""
        return {name for template in self.channels for name in _PLACEHOLDER.findall(template)}

    def render(self, image: Mapping[str, Any]) -> list[str]:
        """Fill every channel template from a plain-JSON item image.

        A template whose attribute is missing, not a string/number, or not a valid segment is
        skipped (the item does not belong to that channel), and so is a channel longer than
        :data:`MAX_CHANNEL_BYTES`, which no AWS IoT topic could carry.
        """
        channels = []
        for template in self.channels:
            filled = _fill(template, image)
            if filled is not None:
                channels.append(filled)
        return channels

    def match_channel(self, channel: str) -> dict[str, str] | None:
        """If ``channel`` is one of this route's channels, the placeholder values; else None."""
        parts = channel.split("/")
        for template in self.channels:
            segments = template.split("/")
            if len(segments) != len(parts):
                continue
            values: dict[str, str] = {}
            for segment, part in zip(segments, parts, strict=True):
                placeholder = _PLACEHOLDER.fullmatch(segment)
                if placeholder:
                    if not CHANNEL_SEGMENT.match(part):
                        break
                    values[placeholder.group(1)] = part
                elif segment != part:
                    break
            else:
                return values
        return None


def _fill(template: str, image: Mapping[str, Any]) -> str | None:
    out = []
    for segment in template.split("/"):
        placeholder = _PLACEHOLDER.fullmatch(segment)
        if placeholder is None:
            out.append(segment)
            continue
        value = image.get(placeholder.group(1))
        if isinstance(value, bool) or not isinstance(value, str | int):
            return None
        text = str(value)
        if not CHANNEL_SEGMENT.match(text):
            return None
        out.append(text)
    channel = "/".join(out)
    if len(channel.encode("utf-8")) > MAX_CHANNEL_BYTES:
        return None  # no AWS IoT topic could carry it; publishing would fail on every retry
    return channel


def load_routes(path: str | Path) -> tuple[Route, ...]:
    """Read and validate a route file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RouteError(f"cannot read route file {path}: {exc}") from exc
    return parse_routes(text, str(path))


class _LineLoader(yaml.SafeLoader):
    pass


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = {str(k): v for k, v in loader.construct_mapping(node, deep=True).items()}
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def parse_routes(text: str, source: str = "routes") -> tuple[Route, ...]:
    """Parse and validate route YAML; errors read ``<source>:<line>: <problem>``."""
    try:
        document = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        raise RouteError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("routes"), list):
        raise RouteError(f"{source}:1: the file must be a mapping with a 'routes' list")
    if not document["routes"]:
        raise RouteError(f"{source}:{document['__line__']}: 'routes' is empty")
    routes = [_parse_route(entry, source) for entry in document["routes"]]
    seen: dict[str, int] = {}
    for route in routes:
        for template in route.channels:
            shape = _PLACEHOLDER.sub("{}", template)
            if shape in seen:
                raise RouteError(
                    f"{source}:{route.line}: channel {template!r} overlaps the route on line "
                    f"{seen[shape]}; each channel must belong to one route"
                )
            seen[shape] = route.line
    return tuple(routes)


def _parse_route(entry: Any, source: str) -> Route:
    if not isinstance(entry, dict):
        raise RouteError(f"{source}: each route must be a mapping")
    line = int(entry.pop("__line__", 0))
    where = f"{source}:{line}"
    known = {"table", "channels", "attributes", "old_image", "readers", "writers"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise RouteError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
        )
    table = entry.get("table")
    if not isinstance(table, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,254}", table):
        raise RouteError(f"{where}: 'table' must be the table's logical id (letters and digits)")
    channels = entry.get("channels")
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list) or not channels:
        raise RouteError(f"{where}: 'channels' must be a non-empty list of channel templates")
    for template in channels:
        _check_template(template, where)
    attributes = entry.get("attributes", "*")
    if attributes == "*":
        attrs: tuple[str, ...] | None = None
    elif (
        isinstance(attributes, list)
        and attributes
        and all(isinstance(a, str) and a for a in attributes)
    ):
        attrs = tuple(attributes)
    else:
        raise RouteError(f"{where}: 'attributes' must be \"*\" or a non-empty list of names")
    old_image = entry.get("old_image", False)
    if not isinstance(old_image, bool):
        raise RouteError(f"{where}: 'old_image' must be true or false")
    readers = _parse_readers(entry.get("readers"), channels, where)
    writers = _parse_writers(entry["writers"], channels, where) if "writers" in entry else None
    return Route(table, tuple(channels), attrs, old_image, readers, line, writers)


def _check_template(template: Any, where: str) -> None:
    if not isinstance(template, str) or not template:
        raise RouteError(f"{where}: a channel template must be a non-empty string")
    segments = template.split("/")
    if len(segments) - 1 > MAX_CHANNEL_SLASHES:
        raise RouteError(
            f"{where}: channel {template!r} has more than {MAX_CHANNEL_SLASHES} "
            "slashes (AWS IoT allows 7 in a topic, 2 are tidings/<stage>/)"
        )
    for segment in segments:
        if not _TEMPLATE_SEGMENT.match(segment):
            raise RouteError(
                f"{where}: channel {template!r} has an invalid segment {segment!r}; "
                "use letters, digits, _.:@=- or a whole-segment {attribute}"
            )


def _parse_readers(value: Any, channels: Sequence[str], where: str) -> Readers:
    if value == "public":
        return Readers("public")
    if isinstance(value, str) and ":" in value:
        kind, placeholder = value.split(":", 1)
        if kind in READER_KINDS:
            for template in channels:
                if f"{{{placeholder}}}" not in template.split("/"):
                    raise RouteError(
                        f"{where}: readers {value!r} names {{{placeholder}}}, "
                        f"which channel {template!r} does not contain"
                    )
            return Readers(kind, placeholder)
    raise RouteError(
        f"{where}: 'readers' must be 'public', 'owner:<placeholder>', 'tenant:<placeholder>' "
        "or 'thing:<placeholder>'"
    )


_ATTRIBUTE = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def _parse_writers(value: Any, channels: Sequence[str], where: str) -> Writers:
    kind, _, attribute = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind != "owner" or not _ATTRIBUTE.match(attribute):
        raise RouteError(
            f"{where}: 'writers' must be 'owner:<placeholder>' (the identity may write the "
            f"items whose partition key, that placeholder's attribute, is its identity id), "
            f"not {value!r}"
        )
    for template in channels:
        if f"{{{attribute}}}" not in template.split("/"):
            raise RouteError(
                f"{where}: writers {value!r} names {{{attribute}}}, "
                f"which channel {template!r} does not contain"
            )
    return Writers(kind, attribute)


def check_partition_keys(
    routes: Sequence[Route], partition_keys: Mapping[str, str], source: str = "routes"
) -> None:
    """Check every route's ``writers`` against the tables' partition keys.

    ``partition_keys`` maps a table's logical id to its HASH key attribute (from the
    template's ``KeySchema``). ``writers: owner:<attr>`` is enforced by IAM on the partition
    key only (``dynamodb:LeadingKeys``), so ``attr`` must be that key: otherwise the policy
    would let an identity write items whose ``attr`` names someone else. Raises
    :class:`RouteError` naming the line.
    """
    for route in routes:
        if route.writers is None:
            continue
        where = f"{source}:{route.line}"
        key = partition_keys.get(route.table)
        if key is None:
            raise RouteError(
                f"{where}: writers {str(route.writers)!r} on table {route.table!r}, which the "
                "template does not declare as a DynamoDB table"
            )
        if route.writers.attribute != key:
            raise RouteError(
                f"{where}: writers {str(route.writers)!r} names {route.writers.attribute!r}, "
                f"but the partition (HASH) key of {route.table} is {key!r}; IAM can only limit "
                "writes by the partition key (dynamodb:LeadingKeys)"
            )
