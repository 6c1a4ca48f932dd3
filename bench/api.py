"""The API's hot paths against a bare Flask app under the same gunicorn settings, with
``wrk`` (2 threads, 32 connections; Debian's ``wrk`` package), both measured in this
run. The API is started here, on the Redis, S3 and Vault of a running ``abaco up``
stack (the same ``ABACO_*`` environment) but under a key prefix of its own, so no
scheduler sees its messages and no container runs: what is measured is the API alone.

- ``POST /actors/{id}/messages``,
- ``GET /actors/{id}``,
- ``GET /actors/{id}/executions?limit=10``,
- ``GET /actors/{id}/executions/{eid}`` and ``GET .../{eid}/logs`` of a run that
  ended: the stack's scheduler runs it (``abaco-test-shell-env``, which prints its
  environment: a log of about 1 KB, copied to S3), and an API started here as above,
  but on the stack's keys, serves the reads,

each against the bare app's ``GET`` (and ``POST``) of a small JSON envelope. The API
reaches Redis as the stack's own API does: over its Unix socket when it has one.

    .venv/bin/python bench/api.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from common import (  # type: ignore[import-not-found]
    _wait,
    build_all,
    create_actor,
    stack_api,
    wait_ready,
)

from jobs.settings import Settings, load_settings
from launcher.components import over_local_socket
from launcher.processes import Paths, with_local_secrets

ROOT = Path(__file__).resolve().parent.parent

BARE_APP = '''
from flask import Flask, jsonify
app = Flask("bare")

@app.route("/openapi.json")
@app.route("/thing", methods=["GET", "POST"])
def thing():
    return jsonify({"status": "success", "message": "ok", "version": "1",
                    "result": {"id": "abc", "status": "READY"}})
'''
POST_LUA = 'wrk.method = "POST"\nwrk.body = "message=hello"\n' \
    'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'


def wrk(url: str, seconds: int, script: str | None = None) -> tuple[float, float]:
    """(requests/s, p99 ms) of ``url``."""
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url]
    if script:
        argv[1:1] = ["-s", script]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return rps, float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


def serve(app: str, port: int, settings: Settings, cwd: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """gunicorn with the platform's own settings (workers, gevent, connections), once
    every worker serves: the first to answer would otherwise be handed most of the
    measuring run's 32 connections, which stay with it (keep-alive), while the others
    still load the app. That moved POST between 0.39 and 0.61 from run to run."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
         str(settings.api_workers), "--worker-class", "gevent", "--worker-connections",
         str(settings.api_worker_connections), app], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:  # another server holds the port
            raise SystemExit(f"{app} exited at once: is port {port} taken?")
        try:
            requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)  # a server starting up; bounded by the deadline
        else:
            wrk(f"http://127.0.0.1:{port}/openapi.json", 3)  # discarded: the rest boot
            return process
    raise SystemExit(f"{app} did not start")


def _forget(settings: Settings) -> None:
    """Remove every key under the bench's own prefix: no scheduler serves it, so its
    executions would stay, and grow Redis (and its AOF rewrites) run after run."""
    from jobs.store import connect

    client = connect(settings)
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{settings.prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def ended_run(api: str) -> tuple[str, str]:
    """An actor of the stack and one execution of it that ended (its logs go to S3
    right after; the reads' warm-up covers that)."""
    actor = create_actor(api, image="abaco-test-shell-env")["id"]
    wait_ready(api, actor)
    eid = requests.post(f"{api}/actors/{actor}/messages", data={"message": "m"},
                        timeout=10).json()["result"]["executionId"]
    _wait(lambda: requests.get(f"{api}/actors/{actor}/executions/{eid}", timeout=10).json()[
        "result"]["status"] == "COMPLETE", 120, "the run ended (is the stack's scheduler up?)")
    return actor, eid


def read_ended(settings: Settings, actor: str, eid: str,
               seconds: int) -> tuple[float, float, float, float]:
    """(requests/s, p99 ms) of an ended run's record and of its logs, from an API
    started on ``settings`` (the stack's keys)."""
    with tempfile.TemporaryDirectory() as metrics_dir:
        reader = serve("api.app:create_app()", settings.api_port, settings, ROOT,
                       {**os.environ, **settings.as_env(), "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
        try:
            run = f"http://127.0.0.1:{settings.api_port}/actors/{actor}/executions/{eid}"
            wrk(f"{run}/logs", 2)  # discarded: each gunicorn worker reads the log from S3 once
            return (*wrk(run, seconds), *wrk(f"{run}/logs", seconds))
        finally:
            reader.terminate()
            reader.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--bare-port", type=int, default=28999)
    parser.add_argument("--api-port", type=int, default=28998)
    parser.add_argument("--api", default=None, help="the stack's API, for the reads of an "
                        "ended run (default: ABACO_URL, else the settings')")
    args = parser.parse_args()
    args.api = args.api or stack_api()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    settings = with_local_secrets(load_settings())
    # Redis as the stack's own API reaches it: its Unix socket when it has one
    local = over_local_socket(settings, Paths(settings.data_dir))
    mine = local.replace(prefix=f"benchapi{int(time.time())}", api_port=args.api_port)
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "post.lua"
        script.write_text(POST_LUA)
        (Path(work) / "bare_app.py").write_text(BARE_APP)
        bare = serve("bare_app:app", args.bare_port, settings, Path(work))
        try:
            bare_url = f"http://127.0.0.1:{args.bare_port}/thing"
            bare_get, bare_get_p99 = wrk(bare_url, args.seconds)
            bare_post, bare_post_p99 = wrk(bare_url, args.seconds, str(script))
        finally:
            bare.terminate()
            bare.wait(10)
        metrics_dir = Path(work) / "api-metrics"  # counted as under abaco up
        metrics_dir.mkdir()
        api = serve("api.app:create_app()", args.api_port, mine, ROOT,
                    {**os.environ, **mine.as_env(), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
        try:
            url = f"http://127.0.0.1:{args.api_port}/actors"
            actor = requests.post(url, json={"image": "abaco-test-noop"},
                                  timeout=10).json()["result"]["id"]
            post, post_p99 = wrk(f"{url}/{actor}/messages", args.seconds, str(script))
            get, get_p99 = wrk(f"{url}/{actor}", args.seconds)
            listing, list_p99 = wrk(f"{url}/{actor}/executions?limit=10", args.seconds)
            requests.delete(f"{url}/{actor}", timeout=120)
        finally:
            api.terminate()
            api.wait(10)
            _forget(mine)
    build_all()
    ended, eid = ended_run(args.api)
    try:
        execution, exec_p99, logs, logs_p99 = read_ended(local.replace(api_port=args.api_port),
                                                         ended, eid, args.seconds)
    finally:
        requests.delete(f"{args.api}/actors/{ended}", timeout=120)
    print(f"RESULT post_ratio={post / bare_post:.2f} get_ratio={get / bare_get:.2f} "
          f"list_ratio={listing / bare_get:.2f} exec_ratio={execution / bare_get:.2f} "
          f"logs_ratio={logs / bare_get:.2f} post_p99_ms={post_p99:.1f} "
          f"get_p99_ms={get_p99:.1f} list_p99_ms={list_p99:.1f} exec_p99_ms={exec_p99:.1f} "
          f"logs_p99_ms={logs_p99:.1f} post_rps={post:.0f} get_rps={get:.0f} "
          f"list_rps={listing:.0f} exec_rps={execution:.0f} logs_rps={logs:.0f} "
          f"bare_get_rps={bare_get:.0f} "
          f"bare_post_rps={bare_post:.0f} bare_get_p99_ms={bare_get_p99:.1f} "
          f"bare_post_p99_ms={bare_post_p99:.1f}")


if __name__ == "__main__":
    main()
