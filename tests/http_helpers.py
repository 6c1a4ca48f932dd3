"""Reading the platform's replies in end-to-end tests that speak real HTTP."""

from __future__ import annotations

from typing import Any

import requests

from tests.waits import wait_until


def result(reply: requests.Response) -> Any:
    """The ``result`` of a 200 envelope (the reply's text in the failure message)."""
    assert reply.status_code == 200, reply.text
    return reply.json()["result"]


def ready_actor(base: str, **fields: Any) -> dict[str, Any]:
    """Register an actor (``abaco-test-echo`` unless ``image`` says) and wait for READY."""
    actor = result(requests.post(base, json={"image": "abaco-test-echo", **fields}, timeout=10))
    wait_until(lambda: result(requests.get(f"{base}/{actor['id']}", timeout=10))["status"]
               == "READY", 30, "actor READY")
    return dict(actor)


def execution(base: str, actor_id: str, eid: str) -> dict[str, Any]:
    return dict(result(requests.get(f"{base}/{actor_id}/executions/{eid}", timeout=10)))
