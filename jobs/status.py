"""Statuses of actors, executions and workers, and the legal moves between them.

One typed table per kind of record. The API, the worker, the scheduler and the
inbox scripts (``jobs.inbox``) all use these; the scripts receive the execution
table as data, so a transition the table does not list is refused by Redis
itself, not only by Python.
"""

from __future__ import annotations

import json
from enum import StrEnum


class ExecutionStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    ERROR = "ERROR"

    @property
    def final(self) -> bool:
        return self in FINAL_EXECUTION


class ActorStatus(StrEnum):
    SUBMITTED = "SUBMITTED"        # its image not yet checked (new actor or new revision)
    READY = "READY"
    ERROR = "ERROR"                # its image cannot be had
    SHUTTING_DOWN = "SHUTTING_DOWN"  # being deleted: takes no more messages


class WorkerStatus(StrEnum):
    REQUESTED = "REQUESTED"        # registered by the scheduler, process not yet serving
    READY = "READY"
    BUSY = "BUSY"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    ERROR = "ERROR"


FINAL_EXECUTION = frozenset({ExecutionStatus.COMPLETE, ExecutionStatus.ERROR})

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.SUBMITTED: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.COMPLETE,
                                          ExecutionStatus.ERROR}),
    ExecutionStatus.RUNNING: frozenset({ExecutionStatus.COMPLETE, ExecutionStatus.ERROR}),
    ExecutionStatus.COMPLETE: frozenset(),
    ExecutionStatus.ERROR: frozenset(),
}

# Actors that accept messages (a SUBMITTED actor queues them until its image is checked).
ACCEPTS_MESSAGES = frozenset({ActorStatus.SUBMITTED, ActorStatus.READY})
# Workers that count as serving (or about to serve) their actor.
LIVE_WORKER = frozenset({WorkerStatus.REQUESTED, WorkerStatus.READY, WorkerStatus.BUSY})


class IllegalTransition(ValueError):
    """A write that would move a record along an edge the table does not have."""


def can_move(before: ExecutionStatus | str, after: ExecutionStatus | str) -> bool:
    return ExecutionStatus(after) in EXECUTION_TRANSITIONS[ExecutionStatus(before)]


def check_move(before: ExecutionStatus | str, after: ExecutionStatus | str) -> None:
    if not can_move(before, after):
        raise IllegalTransition(f"execution cannot go from {before} to {after}")


def accepts_lua() -> str:
    """The actor statuses that take messages, as a Lua set of JSON-encoded strings."""
    return "{" + ", ".join(f"[{json.dumps(json.dumps(str(s)))}] = true"
                           for s in sorted(ACCEPTS_MESSAGES)) + "}"


def transitions_lua() -> str:
    """The execution table as a Lua table constructor, ``{['"FROM"'] = {['"TO"'] =
    true}}``: built by the script itself, cheaper than decoding JSON on every call.
    Keys are JSON-encoded status strings, exactly as the execution hash stores them."""
    def quoted(status: object) -> str:
        return "[" + json.dumps(json.dumps(str(status))) + "]"
    rows = (f"{quoted(before)} = {{{', '.join(quoted(a) + ' = true' for a in sorted(after))}}}"
            for before, after in EXECUTION_TRANSITIONS.items())
    return "{" + ", ".join(rows) + "}"
