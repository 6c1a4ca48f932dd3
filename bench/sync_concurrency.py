"""GET /actors latency with and without N synchronous messages waiting in the API.

Needs the stack that ``abaco up`` starts (or ``--api``). Registers an actor whose
messages sleep ``--sleep`` s, times ``--samples`` GET /actors one after another
with nothing else in flight, then fires ``--concurrent`` synchronous messages
(``_abaco_synchronous=true``) from as many client threads and, while they wait,
times the same GETs again. The actor runs at most ``maxWorkers`` executions at a
time, so most synchronous calls wait queued and end in 408 after
``sync_timeout_s``: measure within that window (the bench says so if it could not).
A GET that does not answer within ``--get-timeout`` counts as that many seconds
and as failed. Last line:

    RESULT concurrent=<n> idle_p50_s=<x> idle_p99_s=<y> loaded_p50_s=<x> loaded_p99_s=<y>
           p99_ratio=<loaded/idle> get_failed=<n> sync_codes=<code:count,...>
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from common import build_all, percentile, progress, stack_api, wait_ready

from tests.waits import wait_until

IMAGE = "abaco-test-sleep"


def time_gets(api: str, count: int, timeout_s: float, stop: threading.Event | None = None,
              label: str = "GET /actors") -> tuple[list[float], int]:
    """Sequential GET /actors latencies (a failure counts as ``timeout_s``) and failures."""
    session = requests.Session()
    samples, failed = [], 0
    for i in range(count):
        if stop is not None and stop.is_set():
            break  # the synchronous calls came back: the rest would not be "under load"
        start = time.perf_counter()
        try:
            ok = session.get(f"{api}/actors", timeout=timeout_s).status_code == 200
        except requests.RequestException:
            ok = False
        samples.append(time.perf_counter() - start if ok else timeout_s)
        failed += not ok
        progress(label, i + 1, count)
    return samples, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default=None, help="the API (default: the stack's)")
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--sleep", type=int, default=120, help="seconds each execution sleeps")
    parser.add_argument("--get-timeout", type=float, default=10.0)
    parser.add_argument("--sync-timeout", type=float, default=300.0,
                        help="client-side bound of one synchronous call")
    args = parser.parse_args()
    args.api = args.api or stack_api()
    build_all()
    api = args.api
    actor = requests.post(f"{api}/actors", json={"image": IMAGE, "name": "bench-sync",
                                                 "defaultEnvironment": {"SLEEP": "0"}},
                          timeout=10).json()["result"]
    actor_id = actor["id"]
    codes: Counter[str] = Counter()
    lock = threading.Lock()
    returned = threading.Event()
    pool = ThreadPoolExecutor(max_workers=args.concurrent)
    try:
        wait_ready(api, actor_id)
        idle, idle_failed = time_gets(api, args.samples, args.get_timeout, label="idle GET")

        url = f"{api}/actors/{actor_id}/messages?_abaco_synchronous=true&SLEEP={args.sleep}"

        def send(i: int) -> None:
            try:
                code = str(requests.post(url, data={"message": str(i)},
                                         timeout=args.sync_timeout).status_code)
            except requests.RequestException as exc:
                code = type(exc).__name__
            with lock:
                codes[code] += 1
            returned.set()

        started = time.perf_counter()
        for i in range(args.concurrent):
            pool.submit(send, i)

        def accepted() -> bool:
            try:
                listing = requests.get(f"{api}/actors/{actor_id}/executions",
                                       timeout=args.get_timeout).json()["result"]
            except (requests.RequestException, ValueError, KeyError):
                return False
            return bool(listing["totalExecutions"] >= args.concurrent or returned.is_set())

        try:
            wait_until(accepted, 15, "the synchronous messages accepted", interval_s=0.2)
            in_flight = "all accepted"
        except AssertionError:
            in_flight = "not all accepted within 15 s (the API holds a thread per call)"
        loaded, loaded_failed = time_gets(api, args.samples, args.get_timeout, returned,
                                          label="loaded GET")
        window = time.perf_counter() - started
        if returned.is_set():
            print(f"note: a synchronous call returned after {window:.1f} s, "
                  f"{len(loaded)} loaded samples taken")
        print(f"synchronous messages: {in_flight}")
    finally:
        requests.delete(f"{api}/actors/{actor_id}", timeout=30)
        pool.shutdown(wait=True)
    idle_p50, idle_p99 = percentile(idle, 0.5), percentile(idle, 0.99)
    loaded_p50, loaded_p99 = percentile(loaded, 0.5), percentile(loaded, 0.99)
    print(f"idle GET /actors p50={idle_p50:.3f}s p99={idle_p99:.3f}s failed={idle_failed}; "
          f"with {args.concurrent} synchronous waits p50={loaded_p50:.3f}s "
          f"p99={loaded_p99:.3f}s failed={loaded_failed}")
    print(f"RESULT concurrent={args.concurrent} idle_p50_s={idle_p50:.3f} "
          f"idle_p99_s={idle_p99:.3f} loaded_p50_s={loaded_p50:.3f} "
          f"loaded_p99_s={loaded_p99:.3f} p99_ratio={loaded_p99 / idle_p99:.2f} "
          f"get_failed={loaded_failed} "
          f"sync_codes={','.join(f'{k}:{v}' for k, v in sorted(codes.items()))}")


if __name__ == "__main__":
    main()
