"""The API's hot paths against a bare Flask app under the same gunicorn settings, with
``wrk`` (2 threads, 32 connections; Debian's ``wrk`` package), both measured in this
run. The API is started here, on the Redis, S3 and Vault of a running ``abaco up``
stack (the same ``ABACO_*`` environment) but under a key prefix of its own, so no
scheduler sees its messages and no container runs: what is measured is the API alone.

- ``POST /actors/{id}/messages``,
- ``GET /actors/{id}``,
- ``GET /actors/{id}/executions?limit=10``,

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
    """gunicorn with the platform's own settings (workers, gevent, connections)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers",
         str(settings.api_workers), "--worker-class", "gevent", "--worker-connections",
         str(settings.api_worker_connections), app], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5)
            return process
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)  # a server starting up; bounded by the deadline
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--bare-port", type=int, default=28999)
    parser.add_argument("--api-port", type=int, default=28998)
    args = parser.parse_args()
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
    print(f"RESULT post_ratio={post / bare_post:.2f} get_ratio={get / bare_get:.2f} "
          f"list_ratio={listing / bare_get:.2f} post_p99_ms={post_p99:.1f} "
          f"get_p99_ms={get_p99:.1f} list_p99_ms={list_p99:.1f} post_rps={post:.0f} "
          f"get_rps={get:.0f} list_rps={listing:.0f} bare_get_rps={bare_get:.0f} "
          f"bare_post_rps={bare_post:.0f} bare_get_p99_ms={bare_get_p99:.1f} "
          f"bare_post_p99_ms={bare_post_p99:.1f}")


if __name__ == "__main__":
    main()
