"""LocalPlacer: workers are subprocesses of the scheduler on this host.

Each worker is registered (status REQUESTED, with a heartbeat) before its
process starts, so the scheduler never starts two for the same need; if the
process dies before its first beat, the heartbeat expires and the scheduler
recovers it like any lost worker. Pid files under ``{data_dir}/run/workers``
let ``abaco down`` stop workers it did not start itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from jobs.ids import new_id
from jobs.settings import Settings
from jobs.store import Store
from jobs.timeutil import now_iso

# A starting worker (a Python process importing its libraries) gets this many
# heartbeat periods before it is taken for dead, so a loaded host does not cascade
# into replacing workers that are merely slow to start.
STARTUP_GRACE = 3


class LocalPlacer:
    """Starts and reaps worker processes."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.run_dir = settings.data_dir / "run" / "workers"
        self.log_dir = settings.data_dir / "logs" / "workers"

    def capacity(self) -> int:
        """Workers this host may still start (the ``max_workers_per_host`` cap)."""
        self.reap()
        return max(0, self.settings.max_workers_per_host - len(self.children))

    def start_worker(self, tenant: str, actor_id: str, revision: int) -> str:
        worker_id = new_id()
        self.store.register_worker(tenant, actor_id, {
            "id": worker_id, "status": "REQUESTED", "create_time": now_iso(),
            "location": "local", "pid": None, "revision": revision},
            self.settings.heartbeat_ttl_s * STARTUP_GRACE)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{worker_id}.log", "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "jobs.worker", "--tenant", tenant, "--actor", actor_id,
                 "--worker-id", worker_id],
                env={**os.environ, **self.settings.as_env()}, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.children[worker_id] = child
        (self.run_dir / f"{worker_id}.pid").write_text(str(child.pid))
        return worker_id

    def reap(self) -> None:
        """Collect exited children so they leave no zombies, and drop their pid files."""
        for worker_id, child in list(self.children.items()):
            if child.poll() is not None:
                del self.children[worker_id]
                (self.run_dir / f"{worker_id}.pid").unlink(missing_ok=True)

    def drain(self, timeout_s: float) -> None:
        """SIGTERM every worker (each finishes its execution), wait, then SIGKILL stragglers.

        A killed straggler's heartbeat lapses and the next scheduler resolves its message.
        """
        for child in self.children.values():
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        self.reap()

