"""jobs.round_trip, the hot paths' commands without redis-py's pipeline: against the
test Redis, over both of its reply protocols."""

from __future__ import annotations

import os
import select

import pytest
import redis

from jobs import round_trip
from jobs.settings import Settings
from jobs.store import connect


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def client(settings: Settings, request: pytest.FixtureRequest) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, protocol=request.param,
                                password=settings.redis_password.reveal() or None)


def test_replies_come_back_in_order_with_an_error_in_its_place(client: redis.Redis):
    client.delete("rt:list", "rt:str")
    client.set("rt:str", "text")
    replies = round_trip.send(client, [("RPUSH", "rt:list", "a", "b"),
                                       ("LPUSH", "rt:str", "x"),  # WRONGTYPE
                                       ("LRANGE", "rt:list", 0, -1),
                                       ("ZADD", "rt:z", 1700000000.25, "m")])
    assert replies[0] == 2
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] == [b"a", b"b"]
    assert client.zscore("rt:z", "m") == 1700000000.25, "a float goes as written"
    assert round_trip.one(client, ("GET", "rt:str")) == b"text", "the connection is in step"
    with pytest.raises(redis.ResponseError):
        round_trip.one(client, ("LPUSH", "rt:str", "x"))


def test_a_connection_cut_short_is_not_reused_with_a_reply_left_on_it(settings: Settings):
    """A read that times out leaves the blocked command's reply coming: that connection
    must be dropped, or the next caller would read the stale reply as its own."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=0.2,
                                  password=settings.redis_password.reveal() or None)
    client.delete("rt:empty")
    with pytest.raises(redis.TimeoutError):
        round_trip.send(client, [("BLPOP", "rt:empty", 1)])
    client.set("rt:mine", "mine")
    for _ in range(3):  # whichever pooled connection it gets
        assert round_trip.one(client, ("GET", "rt:mine")) == b"mine"


def test_an_interrupt_between_two_replies_leaves_no_reply_for_the_next_caller(
        settings: Settings, monkeypatch: pytest.MonkeyPatch):
    client = redis.Redis.from_url(settings.redis_url, max_connections=1,
                                  password=settings.redis_password.reveal() or None)
    client.set("rt:a", "first")
    client.set("rt:b", "second")
    read = round_trip._reply
    calls = []

    def interrupted_after_one(connection):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a signal would, before the second read
        return read(connection)

    monkeypatch.setattr(round_trip, "_reply", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        round_trip.send(client, [("GET", "rt:a"), ("GET", "rt:b")])
    monkeypatch.setattr(round_trip, "_reply", read)
    assert round_trip.one(client, ("GET", "rt:a")) == b"first", "not the stale b"


def test_a_script_is_loaded_again_after_redis_lost_it(client: redis.Redis):
    lua = client.register_script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}")
    assert round_trip.script(client, lua, ["k"], ["a", 41]) == [b"k", b"a", 42]
    client.script_flush()
    assert round_trip.script(client, lua, ["k"], ["b", 1]) == [b"k", b"b", 2]


def test_hgetall_reads_as_redis_py_does(client: redis.Redis):
    client.delete("rt:h", "rt:none")
    client.hset("rt:h", mapping={"status": '"READY"', "n": "3", "bin": b"\x00\xff"})
    assert round_trip.hgetall(client, "rt:h") == client.hgetall("rt:h")
    assert round_trip.hgetall(client, "rt:none") == {}


def test_the_platform_client_speaks_through_it(settings: Settings):
    client = connect(settings)
    client.set("rt:p", "v")
    assert round_trip.one(client, ("GET", "rt:p")) == b"v"


def test_a_refused_command_is_not_called_an_outage(settings: Settings):
    """A worker deregistering from an actor deleted meanwhile meets NOGROUP: the log
    says Redis refused, not that it is down (the attack round's D2)."""
    from jobs.inbox import redis_failure

    client = connect(settings)
    client.delete("rt:nogroup")
    try:
        client.xreadgroup("workers", "w", {"rt:nogroup": ">"}, count=1)
    except redis.ResponseError as exc:
        assert redis_failure(exc).message.startswith("redis refused the command: NOGROUP")
    else:
        raise AssertionError("NOGROUP expected")
    down = redis.ConnectionError("Error 111 connecting")
    assert redis_failure(down).message.startswith("redis is unavailable: ")


def _client_id(client: redis.Redis) -> int:
    return int(round_trip.one(client, ("CLIENT", "ID")))


def test_a_kept_connection_that_redis_closed_is_replaced_not_failed(settings: Settings):
    """Redis restarting (or a CLIENT KILL) closes the connections a process keeps: the
    next round trip gets a fresh one instead of a 503."""
    client = connect(settings)
    kept = _client_id(client)
    redis.Redis.from_url(settings.redis_url,
                         password=settings.redis_password.reveal() or None).client_kill_filter(
        _id=kept)
    assert round_trip.one(client, ("PING",)) in (True, b"PONG")
    assert _client_id(client) != kept


def test_a_kept_connection_with_bytes_waiting_is_not_read_from(settings: Settings):
    """A reply nobody read (a desync) is found by the peek: the next caller does not
    take that stale reply for its own."""
    client = connect(settings)
    client.set("rt:own", "own")
    assert round_trip.one(client, ("GET", "rt:own")) == b"own"
    reserve = round_trip._reserve(client.connection_pool)
    [connection] = reserve.idle
    connection.send_packed_command([b"*2\r\n$4\r\nECHO\r\n$5\r\nstale\r\n"])  # left unread
    assert select.select([connection._sock], [], [], 10)[0], "the stale reply arrived"
    assert round_trip.one(client, ("GET", "rt:own")) == b"own"


def test_the_reserve_keeps_only_what_every_waiting_request_leaves(settings: Settings):
    """Each of api_worker_connections requests may hold a connection at once (a
    synchronous message waits on one): kept connections come out of what is left."""
    import threading

    for spare in (0, 2):
        tight = settings.replace(api_worker_connections=8, redis_max_connections=8 + spare)
        client = connect(tight)
        barrier = threading.Barrier(6)

        def hot_path(client: redis.Redis, barrier: threading.Barrier) -> None:
            barrier.wait(10)
            for _ in range(20):
                round_trip.one(client, ("PING",))

        threads = [threading.Thread(target=hot_path, args=(client, barrier))
                   for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(round_trip._reserve(client.connection_pool).idle) <= spare
        waiting = [client.connection_pool.get_connection() for _ in range(8)]
        assert len(waiting) == 8, "every waiting request still finds one"


def test_a_client_that_goes_takes_its_reserve_with_it(settings: Settings):
    import gc
    import weakref

    client = connect(settings)
    round_trip.one(client, ("PING",))
    pool = weakref.ref(client.connection_pool)
    del client
    gc.collect()
    assert pool() is None


def test_a_severed_client_reaches_nothing_through_it(settings: Settings):
    """The memory placer's stand-in for a killed worker process: cut off, its round
    trips fail as its other commands do; restored, they work again."""
    from jobs.placers.memory import SeverableRedis

    client = connect(settings, SeverableRedis)
    assert isinstance(client, SeverableRedis)
    round_trip.one(client, ("SET", "rt:severed", "before"))
    client.severed = True
    with pytest.raises(redis.ConnectionError):
        round_trip.one(client, ("SET", "rt:severed", "during"))
    client.severed = False
    assert round_trip.one(client, ("GET", "rt:severed")) == b"before"


def test_a_forked_child_does_not_use_its_parents_kept_connection(settings: Settings):
    client = connect(settings)
    parent = _client_id(client)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write, str(_client_id(client)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        seen_by_child = int(pipe.read())
    os.waitpid(child, 0)
    assert seen_by_child != parent
    assert _client_id(client) == parent, "the parent's connection is left in step"
