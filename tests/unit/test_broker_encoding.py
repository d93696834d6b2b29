"""A fan-out encodes a QoS 1 message once and splices each packet id in: same bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.local.iot import mqtt_codec as mq
from infra.local.iot.broker import _Pending
from tests.support.fuzz import examples


@given(
    topic=st.text(
        st.characters(blacklist_characters="\x00+#", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=300,
    ),
    payload=st.binary(max_size=70_000),
    ids=st.lists(st.integers(1, 65535), min_size=2, max_size=5),
    level=st.sampled_from([4, 5]),
    retain=st.booleans(),
)
@settings(max_examples=examples(200))
def test_spliced_packet_ids_match_a_full_encode(topic, payload, ids, level, retain) -> None:
    props: mq.Properties = {mq.PROP_USER_PROPERTY: [("k", "v")]} if level == 5 else {}
    message = _Pending(topic, payload, 1, retain, props)
    for packet_id in ids:
        expected = mq.encode_publish(topic, payload, 1, packet_id, level, retain, False, props)
        assert message.encode_qos1(packet_id, level) == expected
    dup = mq.encode_publish(topic, payload, 1, ids[0], level, retain, True, props)
    assert message.encode_qos1(ids[0], level, dup=True) == dup
