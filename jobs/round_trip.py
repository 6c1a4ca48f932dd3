"""Commands for the API's hot paths, sent in one round trip without redis-py's
pipeline machinery.

A message post is one script and one wake-up. Through ``client.pipeline()`` its
client side cost 54-58 us of CPU, 16 of them packing the commands (redis-py walks
every argument in Python before handing them to hiredis); packed by hiredis alone
and written to a pooled connection it cost 27-32 (``bench/api.py`` measures what
that is worth). The connection, its pool, its health checks and its reply parser are
still redis-py's: only the packing and the pipeline bookkeeping are left out.

Replies come back in order; an error reply comes back as its exception object (as
``pipeline.execute(raise_on_error=False)`` gives it), so one command's refusal does
not hide the others' replies. A connection that fails mid-way (a timeout, a reset,
an interrupt, inside a read or between two) is disconnected before it returns to the
pool, so no later caller reads a stale reply from it; one that Redis closed (it
restarted) is replaced by the pool before use. Nothing is sent twice: unlike
redis-py's retrying pipeline, a failure reaches the caller (a 503 for the API), since
a write whose reply was lost may have been done.

Connections come from a small reserve per process and pool (``_Reserve``) before the
pool itself: the pool's checkout polls every connection it hands out for unread
bytes, 11 us of the 18 a checkout costs under gevent (its poll is gevent's), while a
reserved connection is checked by one non-blocking peek (``_in_step``). Kept
connections stay counted as the pool's, so ``redis_max_connections`` still bounds the
whole, and a pool keeps only what ``keep_at_most`` says it can spare.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import hiredis
import redis

RESERVE_MAX = 32  # idle connections a process keeps per pool, at most

Command = Sequence[str | bytes | int | float]


def send(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write; their replies, in order. Raises
    redis.RedisError (a ConnectionError, a TimeoutError) when Redis cannot be reached."""
    packed = b"".join(hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
                      for command in commands)  # (its stub types the tuple as of length 1)
    pool = client.connection_pool
    reserve = _reserve(pool)
    connection = reserve.take(pool)
    try:
        connection.send_packed_command([packed])
        return [_reply(connection) for _ in commands]
    except BaseException:  # an interrupt between two reads leaves a reply unread
        connection.disconnect()
        raise
    finally:
        reserve.give(pool, connection)


def checked(reply: Any) -> Any:
    """A reply of ``send``; an error reply raised."""
    if isinstance(reply, Exception):
        raise reply
    return reply


def one(client: redis.Redis, command: Command) -> Any:
    """One command's reply; an error reply raised."""
    return checked(send(client, [command])[0])


def script(client: redis.Redis, lua: Any, keys: Sequence[str],
           args: Sequence[Any]) -> Any:
    """Run a registered script (``client.register_script``) by its hash; a Redis that
    lost its scripts (restarted) gets it loaded through redis-py's own path."""
    reply = send(client, [("EVALSHA", lua.sha, len(keys), *keys, *args)])[0]
    if isinstance(reply, redis.exceptions.NoScriptError):
        return lua(keys=keys, args=args)
    return checked(reply)


def hgetall(client: redis.Redis, key: str) -> dict[bytes, bytes]:
    """A hash, as redis-py's ``hgetall`` gives it: RESP3 answers a map, RESP2 a flat
    list of fields and values."""
    reply = one(client, ("HGETALL", key))
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _reply(connection: Any) -> Any:
    try:
        return connection.read_response()
    except redis.ResponseError as exc:  # read whole: the connection stays in step
        return exc


class _Reserve:
    """Idle connections of one pool that this process keeps for ``send``, last in
    first out. They stay counted as the pool's (taken from it and not released while
    kept), so a kept one is one fewer for the pool's other users: a pool keeps none
    until ``keep_at_most`` grants it headroom. It lives on its pool (an attribute):
    its connections refer back to the pool, which a table of reserves keyed by pool
    would then keep for ever."""

    def __init__(self, cap: int = 0) -> None:
        self.pid = os.getpid()
        self.idle: list[Any] = []
        self.cap = cap

    def take(self, pool: redis.ConnectionPool) -> Any:
        """A connection in step: a kept one that passes the peek, one whose peek failed
        disconnected (``send_packed_command`` connects it afresh), else the pool's."""
        try:
            connection = self.idle.pop()  # another thread may take the last one first
        except IndexError:
            return pool.get_connection()
        if not _in_step(connection):
            connection.disconnect()
        return connection

    def give(self, pool: redis.ConnectionPool, connection: Any) -> None:
        if len(self.idle) < self.cap:
            self.idle.append(connection)
        else:
            pool.release(connection)


_made = threading.Lock()


def keep_at_most(client: redis.Redis, count: int) -> None:
    """Let this process keep up to ``count`` idle connections of ``client``'s pool (at
    most ``RESERVE_MAX``): connections the pool can spare whatever its other users
    hold at once, e.g. ``redis_max_connections`` less ``api_worker_connections`` in
    the API, where every waiting request may hold one."""
    _reserve(client.connection_pool).cap = max(0, min(RESERVE_MAX, count))


def _reserve(pool: redis.ConnectionPool) -> _Reserve:
    """This process's reserve of ``pool``: a child forked with its parent's reserve
    starts its own, as the pool itself does (the parent's sockets are not its)."""
    reserve: _Reserve | None = getattr(pool, "_round_trip_reserve", None)
    if reserve is not None and reserve.pid == os.getpid():
        return reserve
    with _made:  # made once, or a connection given back could go to a lost one
        reserve = getattr(pool, "_round_trip_reserve", None)
        if reserve is None or reserve.pid != os.getpid():
            reserve = _Reserve(reserve.cap if reserve else 0)
            setattr(pool, "_round_trip_reserve", reserve)  # noqa: B010 - not a redis-py field
        return reserve


def _in_step(connection: Any) -> bool:
    """Whether an idle connection has nothing to read: Redis closed it (it restarted,
    or a CLIENT KILL) when a peek finds its end, and it is out of step when it finds
    bytes. A TLS socket cannot peek and is asked the pool's way."""
    sock = getattr(connection, "_sock", None)
    if sock is None:
        return True  # not connected: sending connects it
    if hasattr(sock, "pending"):
        return not connection.can_read()
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)
    return False
