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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis

Command = Sequence[str | bytes | int | float]


def send(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write; their replies, in order. Raises
    redis.RedisError (a ConnectionError, a TimeoutError) when Redis cannot be reached."""
    packed = b"".join(hiredis.pack_command(tuple(command))  # type: ignore[arg-type]
                      for command in commands)  # (its stub types the tuple as of length 1)
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([packed])
        return [_reply(connection) for _ in commands]
    except BaseException:  # an interrupt between two reads leaves a reply unread
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


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
