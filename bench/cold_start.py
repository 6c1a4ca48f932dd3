"""Cold start: message to container start for an actor with no worker.

Each sample is a fresh actor (so no worker is warm); its execution's
``queueTime`` is the time from the message to the container start. The raw
baseline is a whole ``docker run --rm`` of the same image, timed in this run.
Last line: ``RESULT p50_s=<x> raw_p50_s=<y>``.
"""

from __future__ import annotations

import argparse

import requests
from common import build_all, create_actor, percentile, progress, raw_run, stack_api, wait_ready


def cold_samples(api: str, count: int) -> list[float]:
    samples = []
    for i in range(count):
        actor = create_actor(api, name=f"bench-cold-{i}")
        try:
            wait_ready(api, actor["id"])
            reply = requests.post(f"{api}/actors/{actor['id']}/messages?_abaco_synchronous=true",
                                  data={"message": "cold"}, timeout=120)
            reply.raise_for_status()
            executions = requests.get(f"{api}/actors/{actor['id']}/executions",
                                      timeout=10).json()["result"]["executions"]
            record = requests.get(f"{api}/actors/{actor['id']}/executions/{executions[0]['id']}",
                                  timeout=10).json()["result"]
            assert record["cold"], "the first execution of a new actor must be cold"
            samples.append(float(record["queueTime"]))
        finally:
            requests.delete(f"{api}/actors/{actor['id']}", timeout=10)
        progress("cold starts", i + 1, count)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=None, help="the API (default: the stack's)")
    parser.add_argument("--count", type=int, default=15)
    parser.add_argument("--network", default="none")
    args = parser.parse_args()
    args.api = args.api or stack_api()
    build_all()
    raw = [raw_run(args.network) for _ in range(args.count)]
    cold = cold_samples(args.api, args.count)
    print(f"cold p50={percentile(cold, 0.5):.3f}s p90={percentile(cold, 0.9):.3f}s")
    print(f"RESULT p50_s={percentile(cold, 0.5):.3f} raw_p50_s={percentile(raw, 0.5):.3f}")


if __name__ == "__main__":
    main()
