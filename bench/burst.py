"""Burst: 1,000 messages over 100 actors; every one must end COMPLETE, once.

Messages are posted from 16 client threads as fast as the API takes them; the
bench then waits for every execution to be final and counts container starts
per execution from Docker's event log. Last line:
``RESULT messages=<n> complete=<n> lost=<n> duplicates=<n> executions_per_s=<x>``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from common import (
    build_all,
    create_actor,
    stack_api,
    starts_per_execution,
    wait_all_final,
    wait_ready,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=None, help="the API (default: the stack's)")
    parser.add_argument("--actors", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    args.api = args.api or stack_api()
    build_all()
    api = args.api
    actors = [create_actor(api, name=f"bench-burst-{i}")["id"] for i in range(args.actors)]
    try:
        for actor_id in actors:
            wait_ready(api, actor_id)
        since = time.time()
        start = time.perf_counter()

        def send(i: int) -> str:
            actor_id = actors[i % len(actors)]
            reply = requests.post(f"{api}/actors/{actor_id}/messages",
                                  data={"message": str(i)}, timeout=60)
            reply.raise_for_status()
            return str(reply.json()["result"]["executionId"])

        with ThreadPoolExecutor(16) as pool:
            accepted = set(pool.map(send, range(args.messages)))
        records = wait_all_final(api, actors, len(accepted), args.timeout)
        elapsed = time.perf_counter() - start
        seen = {r["id"]: r for r in records}
        complete = sum(1 for e in accepted if seen.get(e, {}).get("status") == "COMPLETE")
        lost = sum(1 for e in accepted if e not in seen)
        starts = starts_per_execution(since, set(actors))
        duplicates = sum(1 for count in starts.values() if count > 1)
        print(f"RESULT messages={len(accepted)} complete={complete} lost={lost} "
              f"duplicates={duplicates} executions_per_s={len(accepted) / elapsed:.2f}")
    finally:
        for actor_id in actors:
            requests.delete(f"{api}/actors/{actor_id}", timeout=10)


if __name__ == "__main__":
    main()
