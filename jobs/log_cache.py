"""The logs of ended runs, kept in memory by each API process.

Once a run's output is copied to S3 its log never changes: the copy removes the live
log and the pending mark in one step, and nothing writes that object again. What can
still happen to it (the logs expire, the execution is trimmed, the actor deleted) is
seen on the execution's record, which every read of a log checks first. So a log read
from S3 can be answered from memory afterwards: ``GET .../logs`` of an ended run cost
an S3 read per request (885 requests/s, 36 ms at the median under ``wrk``, 32
connections), against about 6,000/s for reading the record itself.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

Key = tuple[str, str, str, str]  # tenant, actor, execution, its finish time
ENTRY_BYTES = 400  # what an entry costs besides its text: the key, its strings, the node


class FinalLogs:
    """Least recently read first out, within ``max_bytes`` of memory (0 keeps
    nothing): an entry costs its text's size in memory (a log with one character
    beyond Latin-1 takes 2 or 4 bytes per character, and one beyond ASCII keeps a
    UTF-8 copy once replied) and ``ENTRY_BYTES``, so empty logs count too. One
    costing more than a quarter of the bound is not kept, so one log does not flush
    the rest."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, str] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Key) -> str | None:
        with self._lock:
            text = self._entries.get(key)
            if text is not None:
                self._entries.move_to_end(key)
            return text

    def put(self, key: Key, text: str) -> None:
        if _cost(text) > self.max_bytes // 4:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            self._size -= _cost(old) if old is not None else 0
            self._entries[key] = text
            self._size += _cost(text)
            while self._size > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._size -= _cost(dropped)


def _cost(text: str) -> int:
    """Its memory once replied: encoding a string beyond ASCII to UTF-8 (orjson, for
    every reply) leaves that UTF-8 copy on the string for as long as it lives."""
    utf8 = 0 if text.isascii() else len(text.encode("utf-8", "surrogatepass")) + 1
    return sys.getsizeof(text) + utf8 + ENTRY_BYTES
