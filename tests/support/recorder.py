"""What an application callback sees from the Tidings client, kept for assertions."""

from __future__ import annotations

import threading
import time
from typing import Any

from client_sdk import ContinuityLost


class Recorder:
    """Collects what the application callback sees."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.changes: list[dict[str, Any]] = []
        self.lost: list[tuple[str, ContinuityLost]] = []
        self._changed = threading.Condition()

    def on_change(self, change) -> None:
        with self._changed:
            self.seqs.append(int(change["seq"]))
            self.changes.append(dict(change))
            self._changed.notify_all()

    def on_lost(self, channel: str, lost: ContinuityLost) -> None:
        with self._changed:
            self.lost.append((channel, lost))
            self._changed.notify_all()

    def wait_for(self, last_seq: int, timeout: float) -> bool:
        deadline = time.time() + timeout
        with self._changed:
            while not self.seqs or self.seqs[-1] < last_seq:
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True


def assert_exactly_once_in_order(recorder: Recorder, count: int, first: int = 1) -> None:
    """The callback saw ``seq`` ``first`` to ``first + count - 1``, each once, in order."""
    assert recorder.seqs == list(range(first, first + count)), (
        f"{len(recorder.seqs)} deliveries; first problem near "
        f"{next((i for i, s in enumerate(recorder.seqs) if s != i + first), None)}"
    )
