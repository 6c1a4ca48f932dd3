"""Throughput of one stateless no-op actor with 4 workers against 4 threads of raw docker run.

Both sides run the same number of executions of the same image with the same
network mode, in this one process. The platform side keeps 4 synchronous
messages in flight (4 client threads), so it measures executions, not queueing.
Last line: ``RESULT eps=<x> raw_eps=<y> ratio=<x/y>``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from common import build_all, create_actor, progress, raw_run, stack_api, wait_ready


def raw_eps(count: int, network: str, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for done, _ in enumerate(pool.map(lambda _i: raw_run(network), range(count)), 1):
            progress("raw docker run", done, count)
    return count / (time.perf_counter() - start)


def platform_eps(api: str, count: int, workers: int, hints: list[str]) -> float:
    actor = create_actor(api, name="bench-throughput", maxWorkers=workers, minWorkers=workers,
                         hints=hints)
    url = f"{api}/actors/{actor['id']}/messages?_abaco_synchronous=true"
    try:
        wait_ready(api, actor["id"])
        with ThreadPoolExecutor(workers) as pool:  # warm every worker
            list(pool.map(lambda i: requests.post(url, data={"message": "warm"}, timeout=120),
                          range(workers * 2)))
        start = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            sent = pool.map(lambda i: requests.post(url, data={"message": str(i)}, timeout=120),
                            range(count))
            for done, reply in enumerate(sent, 1):
                reply.raise_for_status()
                progress("platform", done, count)
        return count / (time.perf_counter() - start)
    finally:
        requests.delete(f"{api}/actors/{actor['id']}", timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=None, help="the API (default: the stack's)")
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--network", default="none")
    parser.add_argument("--plain", action="store_true",
                        help="the noprewarm hint: each run starts its container on its message")
    args = parser.parse_args()
    args.api = args.api or stack_api()
    build_all()
    raw = raw_eps(args.count, args.network, args.workers)
    ours = platform_eps(args.api, args.count, args.workers, ["noprewarm"] if args.plain else [])
    print(f"RESULT eps={ours:.2f} raw_eps={raw:.2f} ratio={ours / raw:.2f}")


if __name__ == "__main__":
    main()
