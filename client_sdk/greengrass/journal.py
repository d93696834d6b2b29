"""The component's output: one JSON line per change, the cursor of each channel in it.

Each line is ``{"subscription": <channel as configured>, "change": <the Change>}`` or, when
continuity is lost, ``{"subscription": …, "lost": {"head", "epoch", "reason"}}``. A line is
written and flushed to disk (``fsync``) before the change's callback returns, so the client
only moves past a change once it is on disk: after a crash or a restart the journal's last
``seq`` per channel is the cursor to resume after, and nothing is applied twice or skipped. A
last line torn by a crash is cut off when the journal is opened again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from client_sdk._envelope import Change, ContinuityLost

__all__ = ["ChangeJournal"]


class ChangeJournal:
    """Appends changes to ``path`` and knows each channel's cursor (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cursors: dict[str, int] = {}
        self._epochs: dict[str, int] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._recover()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def _recover(self) -> None:
        """Read the cursors back; cut off a torn last line."""
        if not self.path.exists():
            return
        good = 0
        with open(self.path, "rb") as journal:
            for raw in journal:
                try:
                    entry = json.loads(raw)
                    self._note(entry)
                except (ValueError, KeyError, TypeError):
                    if raw.endswith(b"\n"):
                        raise ValueError(
                            f"{self.path} has a broken line at byte {good}: it is not a journal "
                            "this component wrote"
                        ) from None
                    break  # the last line, torn by a crash: its change was never acknowledged
                good += len(raw)
        if good != self.path.stat().st_size:
            with open(self.path, "r+b") as journal:
                journal.truncate(good)

    def _note(self, entry: dict[str, Any]) -> None:
        name = str(entry["subscription"])
        if "change" in entry:
            self._cursors[name] = int(entry["change"]["seq"])
            self._epochs[name] = int(entry["change"]["epoch"])
        else:
            self._cursors[name] = int(entry["lost"]["head"])
            self._epochs[name] = int(entry["lost"]["epoch"])

    def cursor(self, subscription: str) -> int | None:
        """The last ``seq`` applied for ``subscription`` (None: never seen: start at 0)."""
        with self._lock:
            return self._cursors.get(subscription)

    def apply(self, subscription: str, change: Change) -> None:
        """Append ``change`` and make it durable before returning."""
        self._append({"subscription": subscription, "change": change})

    def lost(self, subscription: str, lost: ContinuityLost) -> None:
        """Record that the channel's changes up to ``lost.head`` cannot be delivered."""
        self._append(
            {
                "subscription": subscription,
                "lost": {"head": lost.head, "epoch": lost.epoch, "reason": lost.reason},
            }
        )

    def _append(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._note(entry)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            self._file.close()
