"""LocalPlacer: workers are subprocesses on this host.

Pid files under ``{data_dir}/run/workers`` let ``abaco down`` stop workers it did
not start itself. A worker whose process dies before its first heartbeat is
recovered like any lost worker once its start-up grace lapses; one whose
process this placer saw end is reported by ``ended()`` at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from jobs.placers.base import free_slots
from jobs.settings import Settings
from jobs.store import Store


class LocalPlacer:
    """Starts, signals and reaps worker processes."""

    location = "local"

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.host = socket.gethostname()
        self.children: dict[str, tuple[str, str, subprocess.Popen[bytes]]] = {}
        self.run_dir = settings.data_dir / "run" / "workers"
        self.log_dir = settings.data_dir / "logs" / "workers"

    def capacity(self) -> int:
        """Workers this host may still start: the cap minus those registered on it."""
        return free_slots(self.store, self.host, self.settings.max_workers_per_host)

    def place(self, tenant: str, actor_id: str, worker_id: str) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{worker_id}.log", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "jobs.worker", "--tenant", tenant, "--actor", actor_id,
                 "--worker-id", worker_id],
                env={**os.environ, **self.settings.for_workers().as_env()}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.children[worker_id] = (tenant, actor_id, child)
        (self.run_dir / f"{worker_id}.pid").write_text(str(child.pid))

    def release(self, worker_id: str, graceful: bool = True) -> None:
        entry = self.children.get(worker_id)
        if entry is not None and entry[2].poll() is None:
            entry[2].send_signal(signal.SIGTERM if graceful else signal.SIGKILL)

    def ended(self) -> list[tuple[str, str, str]]:
        """Collect exited children (no zombies), drop their pid files, and name them."""
        gone = []
        for worker_id, (tenant, actor_id, child) in list(self.children.items()):
            if child.poll() is not None:
                del self.children[worker_id]
                (self.run_dir / f"{worker_id}.pid").unlink(missing_ok=True)
                gone.append((tenant, actor_id, worker_id))
        return gone

    def drain(self, timeout_s: float) -> None:
        """SIGTERM every worker (each finishes its execution), wait, then SIGKILL stragglers.

        A killed straggler's run is adopted by the next worker of its actor.
        """
        for _tenant, _actor, child in self.children.values():
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _tenant, _actor, child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        self.ended()
