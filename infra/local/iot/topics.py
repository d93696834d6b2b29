"""MQTT topic names and filters as AWS IoT Core accepts them, and a subscription index.

Pure logic: validation (AWS IoT limits: 256 bytes, 7 slashes), shared-subscription filters
(``$share/<ShareName>/<TopicFilter>``: the share name is 1-128 bytes without ``/``, ``+`` or
``#``; the topic filter obeys the ordinary limits, so the two slashes the ``$share`` form adds
are not counted) and a trie that finds the subscribers whose filters match a topic, honouring
``+``, ``#`` and the rule that wildcards never match topics starting with ``$``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

__all__ = [
    "MAX_SHARE_NAME_BYTES",
    "MAX_TOPIC_BYTES",
    "MAX_TOPIC_SLASHES",
    "SHARE_PREFIX",
    "SubscriptionIndex",
    "TopicError",
    "has_wildcards",
    "split_shared_filter",
    "validate_topic_filter",
    "validate_topic_name",
]

MAX_TOPIC_BYTES = 256
MAX_TOPIC_SLASHES = 7
MAX_SHARE_NAME_BYTES = 128
SHARE_PREFIX = "$share/"

# Reserved topics whose fixed leading segments AWS IoT does not count against the slash limit.
_RESERVED_PREFIXES = ("$aws/rules/",)

K = TypeVar("K", bound=Hashable)


class TopicError(ValueError):
    """A topic name or filter AWS IoT would refuse; the message says why."""


def _slashes(topic: str) -> int:
    count = topic.count("/")
    for prefix in _RESERVED_PREFIXES:
        if topic.startswith(prefix):
            count -= prefix.count("/") + 1
    return count


def _check_common(topic: str, what: str) -> None:
    if not topic:
        raise TopicError(f"the {what} is empty")
    size = len(topic.encode("utf-8"))
    if size > MAX_TOPIC_BYTES:
        raise TopicError(f"the {what} is {size} bytes; AWS IoT allows at most {MAX_TOPIC_BYTES}")
    if _slashes(topic) > MAX_TOPIC_SLASHES:
        raise TopicError(f"the {what} has more than {MAX_TOPIC_SLASHES} slashes, the AWS IoT limit")


def validate_topic_name(topic: str) -> None:
    """Raise :class:`TopicError` unless ``topic`` may be published to."""
    _check_common(topic, "topic")
    if "+" in topic or "#" in topic:
        raise TopicError("a topic name cannot contain the wildcards '+' or '#'")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise :class:`TopicError` unless ``topic_filter`` may be subscribed to."""
    _check_common(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            raise TopicError("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise TopicError("'+' must occupy a whole level")


def split_shared_filter(topic_filter: str) -> tuple[str, str] | None:
    """``(share name, topic filter)`` of a ``$share/...`` filter; None for an ordinary one.

    Raises :class:`TopicError` for a ``$share/`` filter AWS IoT would refuse.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    share_name, slash, inner = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not slash:
        raise TopicError("a shared subscription needs the form $share/<ShareName>/<TopicFilter>")
    if not share_name:
        raise TopicError("the share name of a shared subscription is empty")
    if "+" in share_name or "#" in share_name:
        raise TopicError("the share name of a shared subscription cannot contain '+' or '#'")
    size = len(share_name.encode("utf-8"))
    if size > MAX_SHARE_NAME_BYTES:
        raise TopicError(
            f"the share name is {size} bytes; AWS IoT allows at most {MAX_SHARE_NAME_BYTES}"
        )
    validate_topic_filter(inner)
    return share_name, inner


def has_wildcards(topic_filter: str) -> bool:
    """True if the filter contains ``+`` or ``#``."""
    return "+" in topic_filter or "#" in topic_filter


class _Node(Generic[K]):
    __slots__ = ("children", "hash_subscribers", "subscribers")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.subscribers: dict[K, int] = {}
        self.hash_subscribers: dict[K, int] = {}


class SubscriptionIndex(Generic[K]):
    """Filter → subscriber map with fast topic matching.

    A subscriber is any hashable key (a session); each subscription carries a value (the
    granted QoS). :meth:`match` yields each matching subscriber with the highest value among
    its matching filters, once.
    """

    def __init__(self) -> None:
        self._root: _Node[K] = _Node()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, topic_filter: str, subscriber: K, value: int) -> None:
        """Subscribe (or update the value of an existing subscription)."""
        levels = topic_filter.split("/")
        node = self._root
        if levels[-1] == "#":
            for level in levels[:-1]:
                node = node.children.setdefault(level, _Node())
            table = node.hash_subscribers
        else:
            for level in levels:
                node = node.children.setdefault(level, _Node())
            table = node.subscribers
        if subscriber not in table:
            self._count += 1
        table[subscriber] = value

    def remove(self, topic_filter: str, subscriber: K) -> bool:
        """Unsubscribe; returns whether the subscription existed."""
        levels = topic_filter.split("/")
        is_hash = levels[-1] == "#"
        path = levels[:-1] if is_hash else levels
        trail: list[tuple[_Node[K], str]] = []
        node = self._root
        for level in path:
            child = node.children.get(level)
            if child is None:
                return False
            trail.append((node, level))
            node = child
        table = node.hash_subscribers if is_hash else node.subscribers
        if table.pop(subscriber, None) is None:
            return False
        self._count -= 1
        for parent, level in reversed(trail):
            child = parent.children[level]
            if child.children or child.subscribers or child.hash_subscribers:
                break
            del parent.children[level]
        return True

    def match(self, topic: str) -> dict[K, int]:
        """Subscribers whose filters match ``topic``, each with its highest value."""
        result: dict[K, int] = {}
        levels = topic.split("/")
        dollar = topic.startswith("$")
        self._collect(self._root, levels, 0, result, dollar)
        return result

    def _collect(
        self, node: _Node[K], levels: list[str], depth: int, result: dict[K, int], dollar: bool
    ) -> None:
        wildcard_allowed = not (dollar and depth == 0)
        if wildcard_allowed and node.hash_subscribers:
            _merge(result, node.hash_subscribers)
        if depth == len(levels):
            if node.subscribers:
                _merge(result, node.subscribers)
            return
        child = node.children.get(levels[depth])
        if child is not None:
            self._collect(child, levels, depth + 1, result, dollar)
        if wildcard_allowed:
            plus = node.children.get("+")
            if plus is not None:
                self._collect(plus, levels, depth + 1, result, dollar)

    def filters(self) -> Iterator[str]:
        """Every filter with at least one subscriber (for diagnostics)."""
        yield from self._walk(self._root, [])

    def _walk(self, node: _Node[K], prefix: list[str]) -> Iterator[str]:
        if node.subscribers:
            yield "/".join(prefix)
        if node.hash_subscribers:
            yield "/".join([*prefix, "#"])
        for level, child in node.children.items():
            yield from self._walk(child, [*prefix, level])


def _merge(result: dict[K, int], table: dict[K, int]) -> None:
    for subscriber, value in table.items():
        previous = result.get(subscriber)
        if previous is None or value > previous:
            result[subscriber] = value
