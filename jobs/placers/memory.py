"""MemoryPlacer: workers as threads of this process, for tests and demos.

Shipped with the code so that a fast suite can drive the real ``Worker`` and the
real scheduler (with ``FakeRunner``) through crashes, fencing and failover in
seconds. Each worker gets its own Redis connection; ``release(w, graceful=False)``
severs it, which is what a kill -9 looks like from Redis: the worker's writes
stop at once, its heartbeat lapses, and its run is left on the engine.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from jobs.keys import Keys
from jobs.logstore import LogStore
from jobs.placers.base import free_slots
from jobs.runners.base import Runner
from jobs.secrets import SecretStore
from jobs.settings import Settings
from jobs.store import Store, connect
from jobs.worker import Worker


class _SeveredPool:
    """What a severed client's commands get in place of connections, including those
    sent without ``execute_command`` (``jobs.round_trip``)."""

    max_connections = 0

    def get_connection(self, *_args: Any, **_kwargs: Any) -> Any:
        raise redis.ConnectionError("connection severed (the process was killed)")

    def release(self, _connection: Any) -> None:
        return None

    def disconnect(self, *_args: Any, **_kwargs: Any) -> None:
        return None


class SeverableRedis(redis.Redis):
    """A client that can be cut off for good, like the connection of a killed process."""

    _severed = False
    _own_pool: Any = None

    @property
    def severed(self) -> bool:
        return self._severed

    @severed.setter
    def severed(self, value: bool) -> None:
        if value and not self._severed:
            self._own_pool, self.connection_pool = self.connection_pool, _SeveredPool()  # type: ignore[assignment]
        elif not value and self._severed:
            self.connection_pool = self._own_pool
        self._severed = value

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.severed:
            raise redis.ConnectionError("connection severed (the process was killed)")
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        if self.severed:
            raise redis.ConnectionError("connection severed (the process was killed)")
        return super().pipeline(transaction, shard_hint)


class MemoryPlacer:
    """Runs each worker in a thread; see the module docstring."""

    location = "memory"

    def __init__(self, settings: Settings, store: Store, runner: Runner, logs: LogStore,
                 secrets: SecretStore, host: str = "memory-host") -> None:
        self.settings, self.store, self.runner = settings, store, runner
        self.logs, self.secrets = logs, secrets
        self.host = host
        self.workers: dict[str, tuple[str, str, Worker, threading.Thread]] = {}
        self.clients: dict[str, SeverableRedis] = {}

    def capacity(self) -> int:
        return free_slots(self.store, self.host, self.settings.max_workers_per_host)

    def place(self, tenant: str, actor_id: str, worker_id: str) -> None:
        client = connect(self.settings, SeverableRedis)
        assert isinstance(client, SeverableRedis)
        store = Store(client, Keys(self.settings.prefix))
        worker = Worker(self.settings, tenant, actor_id, worker_id, store, self.logs,
                        self.secrets, self.runner)
        thread = threading.Thread(target=worker.run, name=f"worker-{worker_id}", daemon=True)
        self.workers[worker_id] = (tenant, actor_id, worker, thread)
        self.clients[worker_id] = client
        thread.start()

    def release(self, worker_id: str, graceful: bool = True) -> None:
        entry = self.workers.get(worker_id)
        if entry is None:
            return
        if graceful:
            entry[2].stop()
        else:
            self.clients[worker_id].severed = True
            entry[2].fenced.set()

    def ended(self) -> list[tuple[str, str, str]]:
        gone = []
        for worker_id, (tenant, actor_id, _worker, thread) in list(self.workers.items()):
            if not thread.is_alive():
                del self.workers[worker_id]
                self.clients.pop(worker_id, None)
                gone.append((tenant, actor_id, worker_id))
        return gone

    def drain(self, timeout_s: float) -> None:
        for worker_id in list(self.workers):
            self.release(worker_id, graceful=True)
        done = threading.Event()
        for _t, _a, _w, thread in list(self.workers.values()):
            thread.join(timeout_s)
        for worker_id, (_t, _a, _w, thread) in list(self.workers.items()):
            if thread.is_alive():
                self.release(worker_id, graceful=False)
        done.set()
        self.ended()

    def worker(self, worker_id: str) -> Worker:
        return self.workers[worker_id][2]
