"""``GET /metrics`` in Prometheus's text format, and the API's own request metrics.

Two sources make one page:

- the API's requests, counted in each gunicorn worker by prometheus-client. Under
  gunicorn every worker is a process of its own, so the launcher points
  ``PROMETHEUS_MULTIPROC_DIR`` at a directory it empties before starting gunicorn, and
  a scrape (answered by whichever worker gets it) adds up all the workers' files;
- the platform's counters and gauges, written to Redis by the workers, the scheduler
  and the API (``jobs.metrics``), read at each scrape by ``PlatformCollector``.

The route label is the Flask rule a request matched (``/actors/<actor_id>``), so ids
never become label values; a path no rule matches counts as ``unmatched``.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from jobs import metrics as platform_metrics
from jobs.store import Store

PATH = "/metrics"
_SLASHES = re.compile(r"/{2,}")
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Request latency buckets (seconds): the hot paths answer in a few milliseconds, a
# synchronous message waits up to sync_timeout_s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0, 30.0, 60.0)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RequestMetrics:
    """The API's request counter and latency histogram, and the registry a scrape
    reads: this app's own, or, under gunicorn, one over every worker's files."""

    def __init__(self, platform: PlatformCollector) -> None:
        self.platform = platform
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_DIR) or None
        if self.multiprocess_dir:  # a container's first start (abaco up makes its own)
            os.makedirs(self.multiprocess_dir, mode=0o700, exist_ok=True)
        self.registry = CollectorRegistry()
        owner = None if self.multiprocess_dir else self.registry
        self.requests = Counter("abaco_api_requests", "API requests answered",
                                ["route", "method", "status"], registry=owner)
        self.latency = Histogram("abaco_api_request_duration_seconds",
                                 "Time to answer an API request (to its first byte)",
                                 ["route", "method"], buckets=LATENCY_BUCKETS,
                                 registry=owner)
        if self.multiprocess_dir is None:
            self.registry.register(platform)

    def scrape_registry(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        registry = CollectorRegistry()  # the files change between scrapes: read anew
        MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self.platform)
        return registry


class MetricsMiddleware:
    """WSGI middleware, outermost: times and counts every request, and answers
    ``GET /metrics`` itself. Being first, it also collapses doubled slashes in the
    path, so every layer after it routes the path the client meant."""

    def __init__(self, inner: WSGIApp, url_map: Map, store: Store, token: str,
                 open_without_token: bool) -> None:
        self.inner = inner
        self.adapter = url_map.bind("localhost")
        self.metrics = RequestMetrics(PlatformCollector(store))
        self.token = token
        self.open_without_token = open_without_token
        self.route_of = functools.lru_cache(maxsize=4096)(self._route_of)
        self.children = functools.lru_cache(maxsize=1024)(self._children)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if "//" in path:  # as the clients mean it (tapipy sends "//"), not a redirect
            environ["PATH_INFO"] = path = _SLASHES.sub("/", path)
        if path == PATH:
            return self._scrape(environ, start_response)
        began = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        route = self.route_of(method, path)

        def counting_start(status: str, headers: list[tuple[str, str]],
                           *rest: Any) -> Any:
            count, latency = self.children(route, method, status[:3])
            count.inc()
            latency.observe(time.perf_counter() - began)
            return start_response(status, headers, *rest)

        return self.inner(environ, counting_start)

    def _children(self, route: str, method: str, status: str) -> tuple[Any, Any]:
        """The labelled counter and histogram of one kind of request, looked up once
        (``labels()`` takes a lock and builds a key at each call)."""
        return (self.metrics.requests.labels(route, method, status),
                self.metrics.latency.labels(route, method))

    def _route_of(self, method: str, path: str) -> str:
        try:
            rule, _args = self.adapter.match(path, method, return_rule=True)
        except HTTPException:
            return "unmatched"
        return str(rule.rule)

    def _scrape(self, environ: dict[str, Any], start_response: Callable[..., Any]
                ) -> Iterable[bytes]:
        refusal = self._refusal(environ.get("HTTP_AUTHORIZATION", ""))
        if refusal:
            start_response(refusal, [("Content-Type", "text/plain; charset=utf-8"),
                                     ("WWW-Authenticate", "Bearer")])
            return [b"metrics need the bearer token set as the metrics_token setting\n"]
        body = generate_latest(self.metrics.scrape_registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def _refusal(self, authorization: str) -> str | None:
        if not self.token:
            return None if self.open_without_token else "403 Forbidden"
        given = authorization.removeprefix("Bearer ").strip()
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        return "401 Unauthorized"


class PlatformCollector:
    """The platform's metrics from Redis, read at each scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.metrics_counts()
        yield from _counters(counts)
        yield from _histograms(counts)
        yield from _gauges(self.store)


def _counters(counts: dict[str, float]) -> Iterator[Metric]:
    executions = CounterMetricFamily(
        "abaco_executions", "Executions that reached a final status",
        labels=["tenant", "actor", "status"])
    starts = CounterMetricFamily(
        "abaco_execution_starts", "Runs begun: cold when a worker started for the message",
        labels=["kind"])
    errors = CounterMetricFamily(
        "abaco_backend_errors", "Failures of a backing service (redis, s3, vault, docker, "
        "nomad) seen by a process", labels=["backend", "process"])
    families = {"executions": (executions, 3), "starts": (starts, 1),
                "backend_errors": (errors, 2)}
    for name, value in sorted(counts.items()):
        kind, *labels = name.split(platform_metrics.SEP)
        family, size = families.get(kind, (None, 0))
        if family is not None and len(labels) == size:
            family.add_metric(labels, value)
    return iter(family for family, _size in families.values())


def _histograms(counts: dict[str, float]) -> Iterator[Metric]:
    docs = {"queue_time": ("abaco_execution_queue_seconds",
                           "Time from a message's arrival to its run's start"),
            "run_time": ("abaco_execution_run_seconds", "Run time of finished executions")}
    for kind, (name, doc) in docs.items():
        family = HistogramMetricFamily(name, doc)
        total, buckets = 0.0, []
        for bound in platform_metrics.BUCKETS:
            total += counts.get(platform_metrics.field(kind, repr(bound)), 0.0)
            buckets.append((repr(bound), total))
        buckets.append(("+Inf", counts.get(platform_metrics.field(kind, "count"), 0.0)))
        family.add_metric([], buckets, counts.get(platform_metrics.field(kind, "sum"), 0.0))
        yield family


def _gauges(store: Store) -> Iterator[Metric]:
    depth = GaugeMetricFamily("abaco_queue_depth", "Messages waiting for a worker",
                              labels=["tenant", "actor"])
    age = GaugeMetricFamily("abaco_queue_oldest_age_seconds",
                            "Age of the oldest message waiting (0 when none)",
                            labels=["tenant", "actor"])
    workers = GaugeMetricFamily("abaco_workers", "Workers by status",
                                labels=["tenant", "actor", "status"])
    now = time.time()
    for tenant, actor_id, waiting, oldest, statuses in store.watched_gauges():
        depth.add_metric([tenant, actor_id], waiting)
        age.add_metric([tenant, actor_id], max(0.0, now - oldest) if oldest else 0.0)
        for status in sorted(set(statuses)):
            workers.add_metric([tenant, actor_id, status], statuses.count(status))
    actors = GaugeMetricFamily("abaco_actors", "Registered actors")
    actors.add_metric([], store.actor_count())
    yield from (depth, age, workers, actors)
