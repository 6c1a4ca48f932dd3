"""Following an execution's log as it grows (``GET .../logs?follow=true``).

The worker appends the run's output to the live log in Redis and adds an entry to the
log's growth stream after each append; every final status is announced on the actor's
event stream. A follower reads what is new, then blocks on both streams (``XREAD
BLOCK``) until there is more, so nothing polls. Once the status is final the log is
whole: the rest comes from the live copy, or from S3 when the copy there has replaced
it. A status check at least every ``RECHECK_S`` is the safety net for an event stream
trimmed past the follower.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from jobs.errors import BackendUnavailable, NotFound
from jobs.logstore import TRUNCATION_MARKER, LogStore
from jobs.models import FINAL_EXECUTION_STATUSES
from jobs.store import Store
from jobs.tokens import redact_tokens

LOG = logging.getLogger("abaco.logs")
RECHECK_S = 5.0
# A line longer than this is passed on in pieces rather than held back whole.
HOLD_MOST = 64 * 1024


class LogFollower:
    """The bytes of one execution's log, in order, until the execution ends."""

    def __init__(self, store: Store, logs: LogStore, tenant: str, actor_id: str,
                 eid: str, limit: int) -> None:
        self.store, self.logs = store, logs
        self.where = (tenant, actor_id, eid)
        self.limit = limit  # max_log_bytes: past it, the log ends with the marker
        self.sent = 0  # bytes of the raw log passed on (or held in ``pending``)
        self.pending = b""

    def __iter__(self) -> Iterator[bytes]:
        cursor = self.store.log_cursor(*self.where)
        while True:
            live, status = self.store.log_since(*self.where, self.sent)
            if status is None:
                return  # the execution is gone (its actor deleted): nothing more comes
            if status in FINAL_EXECUTION_STATUSES:
                yield from self._rest(live)
                return
            if live:
                piece = self._complete_lines(live)
                if piece:
                    yield piece
            cursor = self.store.wait_for_log(*self.where, cursor, RECHECK_S)

    def _complete_lines(self, data: bytes) -> bytes:
        """Whole lines only (a token cut between two reads would escape redaction),
        unless the unfinished line has grown past ``HOLD_MOST``; nothing past the
        limit (the rest, and the marker, come at the end)."""
        held = self.pending + self._within_limit(data)
        cut = held.rfind(b"\n") + 1
        if len(held) - cut > HOLD_MOST:
            cut = len(held)
        self.pending = held[cut:]
        return redact_tokens(held[:cut])

    def _within_limit(self, data: bytes) -> bytes:
        room = max(0, self.limit - self.sent)
        self.sent += len(data)
        return data[:room]

    def _rest(self, live: bytes | None) -> Iterator[bytes]:
        """The end of a finished execution's log: the live copy if it is still there,
        else the durable one in S3 from where the live copy left off (which carries
        its own marker); a live copy over the limit ends with the marker, as in S3."""
        if live is None:
            rest = self.pending + self._durable()[min(self.sent, self.limit):]
        else:
            over = self.sent + len(live) > self.limit
            rest = self.pending + self._within_limit(live)
            if over:
                rest += TRUNCATION_MARKER.format(limit=self.limit).encode()
        self.pending = b""
        if rest:
            yield redact_tokens(rest)

    def _durable(self) -> bytes:
        try:
            return self.logs.get_logs(*self.where)
        except NotFound:
            return b""
        except BackendUnavailable as exc:
            LOG.warning("follow of %s ended without its last part: %s", self.where[2],
                        exc.message)
            return b""
