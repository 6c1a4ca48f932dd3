"""``GET /metrics``: exact counts after a known workload, parsed with prometheus-client's
own parser; the Grafana dashboard's queries name only metrics the platform exports."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from jobs.runners.fake import FakeRun
from jobs.settings import Secret, Settings
from tests.conftest import ROOT
from tests.harness import CALLER, Harness
from tests.http_helpers import execution, ready_actor, result
from tests.waits import wait_until

DASHBOARD = ROOT / "docs" / "grafana" / "abaco-dashboard.json"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[Samples, set[str]]:
    """Every sample by (name, sorted labels), and every name a query could use."""
    samples: Samples = {}
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
            names.add(sample.name)
    return samples, names


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client: Any, **headers: str) -> tuple[Samples, set[str]]:
    reply = client.get("/metrics", headers=headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain")
    return parse(reply.get_data(as_text=True))


def _serve(harness: Harness, worker: Any) -> None:
    entry = worker._next_entry()
    assert entry is not None
    worker.handle(*entry)


@pytest.fixture
def workload(harness: Harness) -> Iterator[dict[str, Any]]:
    """Three runs (the worker's first cold, two warm; one exits 1), one message
    cancelled while queued; and an actor of at most one worker, its first run held
    open and its second message waiting."""
    codes = [0, 1, 0]
    hold = threading.Event()
    actor = harness.actor()
    busy_actor = harness.actor(maxWorkers=1)
    harness.runner.plan = lambda spec: (
        FakeRun(gate=hold) if spec.actor_id == busy_actor["id"]
        else FakeRun(exit_code=codes.pop(0), logs=b"x\n"))
    worker = harness.manual_worker(actor)
    served = [harness.send(actor["id"]) for _ in range(3)]
    for _ in served:
        _serve(harness, worker)
    cancelled = harness.send(actor["id"])
    harness.platform.cancel_execution(CALLER, actor["id"], cancelled)
    waiting = [harness.send(busy_actor["id"]) for _ in range(2)]
    harness.scheduler.tick()  # starts the busy actor's worker, publishes what it watches
    wait_until(lambda: harness.runner.running(), 10, "the held run")
    yield {"actor": actor, "served": served, "busy_actor": busy_actor, "waiting": waiting}
    hold.set()


def api(harness: Harness, **changes: Any) -> Any:
    """The app on the harness's platform, its anonymous caller in the harness's tenant."""
    settings = harness.platform.settings.replace(default_tenant="T", **changes)
    return create_app(settings).test_client()


def test_counts_after_a_known_workload_are_exact(harness: Harness, workload: dict[str, Any]):
    app = api(harness)
    actor_id, busy_id = workload["actor"]["id"], workload["busy_actor"]["id"]
    for _ in range(5):
        assert app.get(f"/actors/{actor_id}").status_code == 200
    assert app.get("/no/such/route").status_code == 404
    samples, _names = scrape(app)

    assert value(samples, "abaco_executions_total", tenant="T", actor=actor_id,
                 status="COMPLETE") == 4  # three runs (exit codes 0, 1, 0) and the cancel
    assert value(samples, "abaco_executions_total", tenant="T", actor=busy_id,
                 status="COMPLETE") == 0
    assert value(samples, "abaco_execution_starts_total", kind="cold") == 2  # + busy's
    assert value(samples, "abaco_execution_starts_total", kind="warm") == 2
    records = [harness.execution(actor_id, eid) for eid in workload["served"]]
    assert value(samples, "abaco_execution_run_seconds_count") == 3
    assert value(samples, "abaco_execution_run_seconds_sum") == pytest.approx(
        sum(r["runtime"] for r in records))
    # A queue time for every start (the busy actor's held run too), a run time for
    # every finished run.
    assert value(samples, "abaco_execution_queue_seconds_count") == 4
    assert value(samples, "abaco_execution_queue_seconds_bucket", le="+Inf") == 4
    assert value(samples, "abaco_queue_depth", tenant="T", actor=busy_id) == 1
    assert value(samples, "abaco_queue_oldest_age_seconds", tenant="T", actor=busy_id) > 0
    assert value(samples, "abaco_workers", tenant="T", actor=busy_id, status="BUSY") == 1
    assert value(samples, "abaco_actors") == 2
    assert value(samples, "abaco_api_requests_total", route="/actors/<actor_id>",
                 method="GET", status="200") == 5
    assert value(samples, "abaco_api_requests_total", route="unmatched", method="GET",
                 status="404") == 1
    assert value(samples, "abaco_api_request_duration_seconds_count",
                 route="/actors/<actor_id>", method="GET") == 5


def test_histogram_buckets_are_cumulative(harness: Harness, workload: dict[str, Any]):
    app = api(harness)
    samples, _names = scrape(app)
    buckets = sorted((float(dict(labels)["le"]), count) for (name, labels), count
                     in samples.items() if name == "abaco_execution_run_seconds_bucket")
    counts = [count for _bound, count in buckets]
    assert counts == sorted(counts) and counts[-1] == 3


def test_a_backing_service_failure_is_counted(harness: Harness, workload: dict[str, Any]):
    broken = harness.platform.settings.replace(default_tenant="T",
                                               s3_endpoint="http://127.0.0.1:9")
    app = create_app(broken).test_client()
    actor_id, eid = workload["actor"]["id"], workload["served"][0]
    harness.store.drop_live_log("T", actor_id, eid)  # its logs only in S3 now
    assert app.get(f"/actors/{actor_id}/executions/{eid}/logs").status_code == 503
    samples, _names = scrape(app)
    assert value(samples, "abaco_backend_errors_total", backend="s3", process="api") == 1


def test_every_dashboard_query_names_an_exported_metric(harness: Harness,
                                                        workload: dict[str, Any]):
    app = api(harness)
    app.get(f"/actors/{workload['actor']['id']}")
    _samples, names = scrape(app)
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    assert queries and all(panel.get("targets") for panel in dashboard["panels"])
    for query in queries:
        used = re.findall(r"\babaco_[a-z_]+", query)
        assert used, f"a panel's query names no metric: {query}"
        missing = [name for name in used if name not in names]
        assert not missing, f"{query}: not exported: {missing}"


def test_metrics_need_the_token_unless_auth_is_none(jwt_settings: Settings):
    assert create_app(jwt_settings).test_client().get("/metrics").status_code == 403
    guarded = create_app(jwt_settings.replace(metrics_token=Secret("scrape-me"))).test_client()
    assert guarded.get("/metrics").status_code == 401
    wrong = guarded.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert right.status_code == 200 and b"abaco_actors" in right.data


# -- under abaco up: four gunicorn workers, real Docker runs ----------------------------

@pytest.fixture(scope="module")
def base(api_stack: Settings) -> str:
    return f"http://127.0.0.1:{api_stack.api_port}"


def _scrape_http(base: str) -> Samples:
    reply = requests.get(f"{base}/metrics", timeout=10)
    assert reply.status_code == 200, reply.text
    return parse(reply.text)[0]


def test_requests_add_up_across_gunicorn_workers(base: str):
    actor = ready_actor(f"{base}/actors")
    route = {"route": "/actors/<actor_id>", "method": "GET", "status": "200"}
    before = value(_scrape_http(base), "abaco_api_requests_total", **route)
    for _ in range(40):
        assert requests.get(f"{base}/actors/{actor['id']}", timeout=10).status_code == 200
    after = value(_scrape_http(base), "abaco_api_requests_total", **route)
    assert after - before == 40


def test_real_runs_are_counted_per_actor(base: str):
    actor = ready_actor(f"{base}/actors")
    eids = [result(requests.post(f"{base}/actors/{actor['id']}/messages",
                                 data={"message": str(n)}, timeout=10))["executionId"]
            for n in range(2)]
    wait_until(lambda: all(execution(f"{base}/actors", actor["id"], eid)["status"]
                           == "COMPLETE" for eid in eids), 60, "both runs COMPLETE")
    samples = _scrape_http(base)
    assert value(samples, "abaco_executions_total", tenant=actor["tenant"],
                 actor=actor["id"], status="COMPLETE") == 2
    assert value(samples, "abaco_execution_starts_total", kind="cold") >= 1
