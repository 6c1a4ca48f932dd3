"""Warm message-to-COMPLETE latency, prewarmed and plain, against raw ``docker run --rm``.

Needs the stack that ``abaco up`` starts (or ``--api``). Two no-op actors, each with
a warm worker: one as registered (its worker makes the next container ahead of the
message) and one with the ``noprewarm`` hint (each run starts a container of its
own, the plain path). Each message is synchronous (the API blocks until the
execution is final, no polling). Before each prewarmed message the bench waits
until the worker is at rest: its next container up, the last one removed, as for
a message that does not follow the last within a container start. The baseline is ``docker run --rm
--network <mode>`` of the same image, timed in this same process. Last line:

    RESULT warm_p50_s=<plain> raw_p50_s=<raw> ratio=<plain/raw> prewarm_p50_s=<x>
           prewarm_ratio=<x/raw>
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import docker
import requests
from common import NOOP, build_all, percentile, progress, raw_run, stack_api

from tests.waits import wait_until

IMAGE = NOOP


def time_raw(count: int, network: str) -> list[float]:
    samples = []
    for i in range(count):
        samples.append(raw_run(network, IMAGE))
        progress("raw docker run", i + 1, count)
    return samples


def time_warm(api: str, count: int, label: str, hints: list[str],
              before_each: Callable[[str], None]) -> list[float]:
    actor = requests.post(f"{api}/actors", json={"image": IMAGE, "name": f"bench-{label}",
                                                 "hints": hints}, timeout=10).json()["result"]
    url = f"{api}/actors/{actor['id']}/messages?_abaco_synchronous=true"
    try:
        for _ in range(3):  # the first message waits for READY and a cold worker
            requests.post(url, data={"message": "warm-up"}, timeout=120).raise_for_status()
        samples = []
        for i in range(count):
            before_each(actor["id"])
            start = time.perf_counter()
            requests.post(url, data={"message": str(i)}, timeout=60).raise_for_status()
            samples.append(time.perf_counter() - start)
            progress(f"{label} message", i + 1, count)
        return samples
    finally:
        requests.delete(f"{api}/actors/{actor['id']}", timeout=10)


def prewarmed_container_up(client: docker.DockerClient) -> Callable[[str], None]:
    """Wait until the actor's only containers are its workers' next ones, up: the last
    run's container is removed and the next one started (workers at rest)."""
    def at_rest(actor_id: str) -> bool:
        containers = client.api.containers(all=True,
                                           filters={"label": f"abaco.actor={actor_id}"})
        return bool(containers) and all(c["State"] == "running" and "abaco.prewarm" in
                                        c["Labels"] for c in containers)

    return lambda actor_id: wait_until(lambda: at_rest(actor_id), 30, "a worker at rest", 0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=None, help="the API (default: the stack's)")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--network", default="none", help="the actor_network setting in use")
    args = parser.parse_args()
    args.api = args.api or stack_api()
    build_all()
    raw = time_raw(args.count, args.network)
    plain = time_warm(args.api, args.count, "plain", ["noprewarm"], lambda _: None)
    prewarmed = time_warm(args.api, args.count, "prewarmed", [],
                          prewarmed_container_up(docker.from_env(version="auto")))
    for name, samples in (("raw", raw), ("plain", plain), ("prewarmed", prewarmed)):
        print(f"{name}: p50={percentile(samples, 0.5):.3f}s p90={percentile(samples, 0.9):.3f}s")
    raw_p50, plain_p50, pre_p50 = (percentile(s, 0.5) for s in (raw, plain, prewarmed))
    print(f"RESULT warm_p50_s={plain_p50:.3f} raw_p50_s={raw_p50:.3f} "
          f"ratio={plain_p50 / raw_p50:.2f} prewarm_p50_s={pre_p50:.3f} "
          f"prewarm_ratio={pre_p50 / raw_p50:.2f}")


if __name__ == "__main__":
    main()
