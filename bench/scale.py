"""What registered, idle actors cost: the scheduler's CPU share and ``GET /actors/{id}``
throughput with N actors registered (default 100,000), against a running ``abaco up``
stack (the same ``ABACO_*`` environment, so this process reaches its Redis).

The actors go in in bulk, straight into Redis (READY, no worker, nothing queued: the
idle case), in their own tenant, and are removed at the end. The scheduler's CPU is
read from /proc over ``--idle-s`` seconds; throughput comes from ``wrk`` (2 threads,
32 connections; Debian's ``wrk`` package), the same numbers first with no bulk actors
(the baseline, measured in the same run).

    .venv/bin/python bench/scale.py --actors 100000
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from common import progress  # type: ignore[import-not-found]

from jobs.ids import new_id
from jobs.settings import load_settings
from jobs.store import Store
from jobs.timeutil import now_iso
from launcher.processes import with_local_secrets

TENANT = "SCALEBENCH"


def bulk_register(store: Store, count: int) -> list[str]:
    ids = []
    for start in range(0, count, 1000):
        with store.r.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, count - start)):
                actor_id = new_id()
                ids.append(actor_id)
                record = {"id": actor_id, "tenant": TENANT, "owner": "bench",
                          "image": "abaco-test-noop", "status": "READY", "revision": 1,
                          "stateless": True, "create_time": now_iso(), "warm_start": 0}
                pipe.hset(store.keys.actor(TENANT, actor_id),
                          mapping={k: _encoded(v) for k, v in record.items()})
                pipe.sadd(store.keys.tenant_actors(TENANT), actor_id)
                pipe.sadd(store.keys.all_actors(), f"{TENANT}/{actor_id}")
            pipe.execute()
        progress("registered", len(ids), count)
    return ids


def _encoded(value: object) -> str:
    import json

    return json.dumps(value)


def remove(store: Store, ids: list[str]) -> None:
    for start in range(0, len(ids), 1000):
        with store.r.pipeline(transaction=False) as pipe:
            for actor_id in ids[start:start + 1000]:
                pipe.delete(store.keys.actor(TENANT, actor_id))
                pipe.srem(store.keys.all_actors(), f"{TENANT}/{actor_id}")
            pipe.delete(store.keys.tenant_actors(TENANT))
            pipe.execute()


def scheduler_cpu(pid: int, seconds: float) -> float:
    """The scheduler's share of one core over ``seconds``."""
    def used() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    before, begun = used(), time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    return (used() - before) / (time.monotonic() - begun)


def get_rps(url: str) -> float | None:
    if not shutil.which("wrk"):
        return None
    done = subprocess.run(["wrk", "-t2", "-c32", "-d10s", url], capture_output=True,
                          text=True, check=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--api", default="")
    args = parser.parse_args()
    settings = with_local_secrets(load_settings())
    api = args.api or settings.api_url
    store = Store.from_settings(settings)
    pid = int((settings.data_dir / "run" / "scheduler.pid").read_text())
    probe = requests_actor(api)
    base_cpu = scheduler_cpu(pid, min(args.idle_s, 20.0))
    base_rps = get_rps(f"{api}/actors/{probe}")
    ids = bulk_register(store, args.actors)
    try:
        time.sleep(settings.scheduler_tick_s * 2)  # past the first pass after the bulk
        cpu = scheduler_cpu(pid, args.idle_s)
        rps = get_rps(f"{api}/actors/{probe}")
    finally:
        remove(store, ids)
    print(f"RESULT actors={args.actors} scheduler_cpu={cpu:.3f} "
          f"baseline_scheduler_cpu={base_cpu:.3f} get_rps={rps or 'na'} "
          f"baseline_get_rps={base_rps or 'na'}")


def requests_actor(api: str) -> str:
    import requests

    reply = requests.post(f"{api}/actors", json={"image": "abaco-test-noop"}, timeout=10)
    reply.raise_for_status()
    return str(reply.json()["result"]["id"])


if __name__ == "__main__":
    main()
