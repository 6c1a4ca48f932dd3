"""Warm message-to-COMPLETE latency against raw ``docker run --rm``, in one run.

Needs the stack that ``abaco up`` starts (or ``--api``). Creates a no-op actor,
warms its worker, then sends N messages one after another, each time waiting
for COMPLETE with a synchronous message (a blocking read in the API, no polling).
The baseline is ``docker run --rm --network <mode>`` of the same image, timed in
this same process. Last line:

    RESULT warm_p50_s=<x> raw_p50_s=<y> ratio=<x/y>
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests
from common import NOOP, build_all, percentile, progress, raw_run

IMAGE = NOOP


def time_raw(count: int, network: str) -> list[float]:
    samples = []
    for i in range(count):
        samples.append(raw_run(network, IMAGE))
        progress("raw docker run", i + 1, count)
    return samples


def time_warm(api: str, count: int) -> list[float]:
    actor = requests.post(f"{api}/actors", json={"image": IMAGE, "name": "bench-warm"},
                          timeout=10).json()["result"]
    url = f"{api}/actors/{actor['id']}/messages?_abaco_synchronous=true"
    try:
        for _ in range(3):  # first message waits for READY and a cold worker
            requests.post(url, data={"message": "warm-up"}, timeout=120).raise_for_status()
        samples = []
        for i in range(count):
            start = time.perf_counter()
            requests.post(url, data={"message": str(i)}, timeout=60).raise_for_status()
            samples.append(time.perf_counter() - start)
            progress("warm message", i + 1, count)
        return samples
    finally:
        requests.delete(f"{api}/actors/{actor['id']}", timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--network", default="none", help="the actor_network setting in use")
    args = parser.parse_args()
    build_all()
    raw = time_raw(args.count, args.network)
    warm = time_warm(args.api, args.count)
    print(f"warm p50={percentile(warm, 0.5):.3f}s p90={percentile(warm, 0.9):.3f}s; "
          f"raw p50={percentile(raw, 0.5):.3f}s p90={percentile(raw, 0.9):.3f}s; "
          f"warm mean={statistics.mean(warm):.3f}s")
    warm_p50, raw_p50 = percentile(warm, 0.5), percentile(raw, 0.5)
    print(f"RESULT warm_p50_s={warm_p50:.3f} raw_p50_s={raw_p50:.3f} "
          f"ratio={warm_p50 / raw_p50:.2f}")


if __name__ == "__main__":
    main()
