"""A stream write only appends its record: the local stack's pump runs the event source mappings.

moto 5.2.5's ``StreamShard.add`` invokes every mapped function through Docker on each stream
write (spawning ``curl`` each time) and empties the stream when that succeeds. In AWS, Lambda
polls the stream and the records stay in it (for 24 hours) whoever reads them.

The fix replaces ``StreamShard.add`` with one that only appends the record, exactly as moto
builds it, and then calls ``notify(table_name)`` if given, so the pump can read at once
instead of waiting for its next poll. The mappings stay registered in moto's Lambda API; the
records are left for the pump to read.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply", "apply_stream_fix"]


def apply_stream_fix(notify: Any = None) -> None:
    """moto must not run event source mappings itself: the local stack's pump does.

    ``notify(table_name)``, if given, is called after every stream record is added, so the
    pump can read at once instead of waiting for its next poll.

    moto's ``StreamShard.add`` invokes every mapped function through Docker on each stream
    write (spawning ``curl`` each time) and empties the stream when that succeeds; the
    replacement only appends the record, exactly as moto builds it. The mappings stay
    registered in moto's Lambda API; the records are left for the pump to read.
    """
    from moto.dynamodb.models import table as moto_table

    shard: Any = moto_table.StreamShard
    if getattr(shard, "_tidings_fixed", False):
        return

    def add(self: Any, old: Any, new: Any) -> None:
        view = self.table.stream_specification["StreamViewType"]
        if old is None:
            event_name = "INSERT"
        elif new is None:
            event_name = "REMOVE"
        else:
            event_name = "MODIFY"
        seq = len(self.items) + self.starting_sequence_number
        self.items.append(moto_table.StreamRecord(self.table, view, event_name, old, new, seq))
        if notify is not None:
            notify(self.table.name)

    shard.add = add
    shard._tidings_fixed = True


apply = apply_stream_fix
