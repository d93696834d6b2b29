"""Topic validation and the subscription index (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infra.local.iot.topics import (
    SubscriptionIndex,
    TopicError,
    split_shared_filter,
    validate_topic_filter,
    validate_topic_name,
)


@pytest.mark.parametrize(
    "topic",
    ["", "a/+", "a/#", "x" * 257, "a/b/c/d/e/f/g/h/i", "é" * 129],
)
def test_invalid_topic_names(topic: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_name(topic)


@pytest.mark.parametrize(
    "topic", ["a", "a/b/c/d/e/f/g/h", "x" * 256, "$aws/rules/r/a/b/c/d/e/f/g/h"]
)
def test_valid_topic_names(topic: str) -> None:
    validate_topic_name(topic)


@pytest.mark.parametrize("topic_filter", ["a/#/b", "a/b#", "a+/b", "#a", ""])
def test_invalid_filters(topic_filter: str) -> None:
    with pytest.raises(TopicError):
        validate_topic_filter(topic_filter)


@pytest.mark.parametrize("topic_filter", ["#", "+", "a/+/c", "a/#", "+/+/#"])
def test_valid_filters(topic_filter: str) -> None:
    validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a/", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("#", "$aws/events/x", False),
        ("+/events/x", "$aws/events/x", False),
        ("$aws/events/+", "$aws/events/x", True),
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
    ],
)
def test_match(topic_filter: str, topic: str, matches: bool) -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add(topic_filter, "s", 1)
    assert bool(index.match(topic)) is matches


def test_highest_qos_once_and_removal() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add("a/#", "s", 0)
    index.add("a/b", "s", 1)
    index.add("a/+", "t", 0)
    assert index.match("a/b") == {"s": 1, "t": 0}
    assert index.remove("a/b", "s")
    assert not index.remove("a/b", "s")
    assert index.match("a/b") == {"s": 0, "t": 0}
    assert index.remove("a/#", "s") and index.remove("a/+", "t")
    assert len(index) == 0 and list(index.filters()) == []


_level = st.sampled_from(["a", "b", "c", ""])


@given(
    topic=st.lists(_level, min_size=1, max_size=4).map("/".join),
    topic_filter=st.lists(st.sampled_from(["a", "b", "+", ""]), min_size=1, max_size=4).map(
        "/".join
    ),
    hash_tail=st.booleans(),
)
def test_index_agrees_with_a_direct_matcher(topic: str, topic_filter: str, hash_tail: bool) -> None:
    if hash_tail:
        topic_filter += "/#"
    index: SubscriptionIndex[str] = SubscriptionIndex()
    index.add(topic_filter, "s", 1)
    assert bool(index.match(topic)) is _direct(topic_filter, topic)


def _direct(topic_filter: str, topic: str) -> bool:
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


@pytest.mark.parametrize(
    ("topic_filter", "parts"),
    [
        ("a/b", None),
        ("$aws/events/#", None),
        ("$share/g/a/b", ("g", "a/b")),
        ("$share/group-1/a/+/#", ("group-1", "a/+/#")),
        ("$share/g/#", ("g", "#")),
        ("$share/g/$aws/events/presence/+/+", ("g", "$aws/events/presence/+/+")),
        # the two slashes of the $share form are not counted against the limit of 7
        ("$share/g/a/b/c/d/e/f/g/h", ("g", "a/b/c/d/e/f/g/h")),
        ("$share/" + "n" * 128 + "/" + "t" * 256, ("n" * 128, "t" * 256)),
    ],
)
def test_shared_filters_split(topic_filter: str, parts: tuple[str, str] | None) -> None:
    assert split_shared_filter(topic_filter) == parts


@pytest.mark.parametrize(
    "topic_filter",
    [
        "$share/g",  # no topic filter
        "$share//a",  # empty share name
        "$share/g/",  # empty topic filter
        "$share/g+/a",
        "$share/g#/a",
        "$share/+/a",
        "$share/g/a#",
        "$share/g/a/b/c/d/e/f/g/h/i",  # 8 slashes in the topic filter itself
        "$share/" + "n" * 129 + "/a",
        "$share/g/" + "t" * 257,
    ],
)
def test_invalid_shared_filters(topic_filter: str) -> None:
    with pytest.raises(TopicError):
        split_shared_filter(topic_filter)
