"""A small typed client of the platform's REST API, over ``requests``.

The ``abaco`` command uses it, and so can any script::

    from launcher.client import Client

    client = Client("http://127.0.0.1:8000", token=open("alice.jwt").read().strip())
    actor = client.create_actor({"image": "abaco-test-echo"})
    sent = client.send_message(actor["id"], "hello")
    for chunk in client.follow_logs(actor["id"], sent.execution_id):
        print(chunk.decode(), end="")
    print(client.execution(actor["id"], sent.execution_id).exit_code)

One method per endpoint. Each returns the ``result`` of the reply's envelope as
plain JSON data (dicts and lists, as the server sent them, so a caller can print
them unchanged), except where a typed view helps the caller decide something
(``Sent``, ``Execution``). Every failure, whether the server refused the call or
could not be reached, is one exception type, ``ApiError``, carrying the HTTP
status and the server's own message, so a caller has one thing to catch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL_STATUSES = frozenset({"COMPLETE", "ERROR"})
LEVELS = ("READ", "EXECUTE", "UPDATE", "NONE")


class ApiError(Exception):
    """A call that did not succeed. ``status`` is the HTTP status (``None`` when the
    server could not be reached or answered something that is not the API), ``message``
    the server's own explanation (its envelope's ``message``), ``result`` the envelope's
    ``result`` (for example the execution a timed-out synchronous message names)."""

    def __init__(self, status: int | None, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.result = result

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.message} (HTTP {self.status})"


def _field(record: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    """Replies are camelCase unless the server runs with ``case = snake``: read either."""
    if camel in record:
        return record[camel]
    return record.get(snake, default)


@dataclass(frozen=True)
class Sent:
    """The reply to a message: the execution it started (what a caller waits on)."""

    execution_id: str
    raw: dict[str, Any]

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Sent:
        return cls(str(_field(result, "executionId", "execution_id")), result)


@dataclass(frozen=True)
class Execution:
    """The fields of an execution a caller acts on; ``raw`` is the whole record."""

    id: str
    actor_id: str
    status: str
    exit_code: int | None
    status_message: str
    queue_time: float | None
    runtime: float | None
    message_received_time: str | None
    start_time: str | None
    raw: dict[str, Any]

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Execution:
        exit_code = _field(result, "exitCode", "exit_code")
        return cls(
            id=str(result.get("id")),
            actor_id=str(_field(result, "actorId", "actor_id", "")),
            status=str(result.get("status") or ""),
            exit_code=int(exit_code) if isinstance(exit_code, int | float) else None,
            status_message=str(_field(result, "statusMessage", "status_message") or ""),
            queue_time=_number(_field(result, "queueTime", "queue_time")),
            runtime=_number(result.get("runtime")),
            message_received_time=_field(result, "messageReceivedTime",
                                         "message_received_time"),
            start_time=_field(result, "startTime", "start_time"),
            raw=result,
        )

    @property
    def final(self) -> bool:
        """COMPLETE or ERROR: nothing will change any more."""
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """Ran to its end and its command exited 0."""
        return self.status == "COMPLETE" and self.exit_code == 0

    def waited_s(self, now: datetime | None = None) -> float | None:
        """How long it has been queued: the recorded ``queueTime`` once it started, else
        the time since the message came (so a spinner can show a queue that is growing)."""
        if self.queue_time is not None and self.status != "SUBMITTED":
            return self.queue_time
        received = _parse_time(self.message_received_time)
        if received is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - received).total_seconds())

    def running_s(self, now: datetime | None = None) -> float | None:
        """How long it has run: ``runtime`` once final, else the time since its start."""
        if self.final:
            return self.runtime
        started = _parse_time(self.start_time) if self.status == "RUNNING" else None
        if started is None:
            return None
        return max(0.0, ((now or datetime.now(UTC)) - started).total_seconds())


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_SEGMENT = re.compile(r"[A-Za-z0-9_.@+-]+")


def _seg(value: str) -> str:
    """One path segment: an id from a user must not reach another route. Quoting is
    not enough (the server decodes ``%2F`` before routing), so only the characters of
    ids and names pass, and never ``.`` or ``..``."""
    text = str(value)
    if not _SEGMENT.fullmatch(text) or text in (".", ".."):
        raise ApiError(None, f"{text!r} is not a valid id or name")
    return quote(text, safe="")


class Client:
    """The platform's API at ``url``.

    ``token`` (a JWT) goes in ``Authorization: Bearer``, where the server reads the
    tenant from the token's claim; with ``tenant`` it goes in Abaco's
    ``X-Jwt-Assertion-<TENANT>`` instead, for tokens whose tenant is not a claim.
    Without a token nothing is sent (``auth = none``). ``timeout`` bounds each request
    (connect and each read), except the read of a followed log stream, which may be
    quiet for as long as the execution prints nothing.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None,
                 tenant: str | None = None, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if token:
            if tenant:
                self.session.headers[f"X-Jwt-Assertion-{tenant.upper()}"] = token
            else:
                self.session.headers["Authorization"] = f"Bearer {token}"

    # -- plumbing

    def _request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                 json: Any = None, data: Any = None,
                 headers: dict[str, str] | None = None) -> requests.Response:
        try:
            return self.session.request(method, self.url + path, params=params, json=json,
                                        data=data, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApiError(None, f"cannot reach {self.url}: {exc}") from exc

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The envelope's ``result`` of a 2xx reply; ``ApiError`` otherwise."""
        return self._result(self._request(method, path, **kwargs))

    @staticmethod
    def _result(reply: requests.Response) -> Any:
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "result" not in body:
            text = reply.text.strip()[:200] or reply.reason
            if reply.ok:
                raise ApiError(reply.status_code, f"not an Abaco reply: {text}")
            raise ApiError(reply.status_code, f"HTTP {reply.status_code}: {text}")
        if not reply.ok or body.get("status") == "error":
            raise ApiError(reply.status_code, str(body.get("message") or reply.reason),
                           body.get("result"))
        return body["result"]

    # -- actors

    def list_actors(self, offset: int | None = None,
                    limit: int | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("offset", offset), ("limit", limit)) if v is not None}
        return list(self._call("GET", "/actors", params=params))

    def create_actor(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Register an actor; ``fields`` as the API takes them (``image`` required)."""
        return dict(self._call("POST", "/actors", json=fields))

    def get_actor(self, actor_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/actors/{_seg(actor_id)}"))

    def update_actor(self, actor_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Fields absent from ``fields`` keep their value; ``force: true`` (or a new
        image) makes a new revision."""
        return dict(self._call("PUT", f"/actors/{_seg(actor_id)}", json=fields))

    def delete_actor(self, actor_id: str) -> None:
        self._call("DELETE", f"/actors/{_seg(actor_id)}")

    # -- messages

    def send_message(self, actor_id: str, message: str | bytes | dict[str, Any] | list[Any],
                     env: dict[str, str] | None = None) -> Sent:
        """A string goes as Abaco's ``message`` form field, bytes as a binary message
        (``/_abaco_binary_data``), a dict or list as a JSON message; ``env`` becomes
        query parameters (environment variables of this execution)."""
        path = f"/actors/{_seg(actor_id)}/messages"
        if isinstance(message, bytes):
            result = self._call("POST", path, params=env, data=message,
                                headers={"Content-Type": "application/octet-stream"})
        elif isinstance(message, str):
            result = self._call("POST", path, params=env, data={"message": message})
        else:
            result = self._call("POST", path, params=env, json=message)
        return Sent.from_result(dict(result))

    def count_messages(self, actor_id: str) -> int:
        return int(self._call("GET", f"/actors/{_seg(actor_id)}/messages")["messages"])

    def purge_messages(self, actor_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/actors/{_seg(actor_id)}/messages"))

    # -- executions

    def list_executions(self, actor_id: str, offset: int = 0,
                        limit: int | None = None) -> dict[str, Any]:
        """The totals and one page of executions (their summary fields only)."""
        params: dict[str, Any] = {"offset": offset}
        if limit is not None:
            params["limit"] = limit
        return dict(self._call("GET", f"/actors/{_seg(actor_id)}/executions", params=params))

    def get_execution(self, actor_id: str, execution_id: str) -> dict[str, Any]:
        return dict(self._call("GET", self._execution_path(actor_id, execution_id)))

    def execution(self, actor_id: str, execution_id: str) -> Execution:
        """``get_execution`` as an ``Execution``."""
        return Execution.from_result(self.get_execution(actor_id, execution_id))

    def cancel_execution(self, actor_id: str, execution_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", self._execution_path(actor_id, execution_id)))

    def get_logs(self, actor_id: str, execution_id: str) -> str:
        """The logs so far (the whole logs once the execution ended)."""
        return str(self.logs_result(actor_id, execution_id).get("logs") or "")

    def logs_result(self, actor_id: str, execution_id: str) -> dict[str, Any]:
        """``get_logs`` with the rest of the reply's result (its ``_links``)."""
        return dict(self._call("GET", self._execution_path(actor_id, execution_id) + "/logs"))

    def follow_logs(self, actor_id: str, execution_id: str) -> Iterator[bytes]:
        """The logs as they are written, from their start, chunk by chunk as the server
        sends them; the iteration ends when the execution ends.

        A server without live logs answers the plain JSON reply: then this waits for
        the execution to end (polling) and yields its logs once, so callers get the
        same text either way, only later."""
        path = self._execution_path(actor_id, execution_id) + "/logs"
        try:
            reply = self.session.get(self.url + path, params={"follow": "true"}, stream=True,
                                     timeout=(self.timeout, None))
        except requests.RequestException as exc:
            raise ApiError(None, f"cannot reach {self.url}: {exc}") from exc
        with reply:
            if not reply.ok or reply.headers.get("Content-Type", "").startswith(
                    "application/json"):
                self._result(reply)  # raises on an error envelope
                self.wait(actor_id, execution_id)
                logs = self.get_logs(actor_id, execution_id)
                if logs:
                    yield logs.encode()
                return
            try:
                yield from _chunks(reply)
            except requests.RequestException as exc:
                raise ApiError(None, f"the log stream broke off: {exc}") from exc

    def wait(self, actor_id: str, execution_id: str,
             on_poll: Callable[[Execution], None] | None = None,
             timeout_s: float | None = None,
             until: Callable[[Execution], bool] | None = None) -> Execution:
        """Poll the execution until it is final, or ``until`` says so (every 0.1 s at
        first, then up to every second: the API has no long poll for this), calling
        ``on_poll`` with each reading; ``ApiError`` (status ``None``) once ``timeout_s``
        has passed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        pause = 0.1
        while True:
            current = self.execution(actor_id, execution_id)
            if on_poll is not None:
                on_poll(current)
            if current.final or (until is not None and until(current)):
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise ApiError(None, f"execution {execution_id} still {current.status} "
                                     f"after {timeout_s:g} s")
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)

    def next_result(self, actor_id: str, execution_id: str) -> bytes:
        """The next unread result of the execution; ``b""`` when none is left."""
        path = self._execution_path(actor_id, execution_id) + "/results"
        reply = self._request("GET", path)
        if not reply.ok:
            self._result(reply)
        return reply.content

    @staticmethod
    def _execution_path(actor_id: str, execution_id: str) -> str:
        return f"/actors/{_seg(actor_id)}/executions/{_seg(execution_id)}"

    # -- workers and state

    def list_workers(self, actor_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/actors/{_seg(actor_id)}/workers"))

    def get_state(self, actor_id: str) -> Any:
        """The actor's state value (any JSON value)."""
        return self._call("GET", f"/actors/{_seg(actor_id)}/state").get("state")

    def set_state(self, actor_id: str, value: Any) -> Any:
        """Stateful actors only (the server answers 404 for a stateless one)."""
        return self._call("POST", f"/actors/{_seg(actor_id)}/state", json=value).get("state")

    # -- permissions, nonces, aliases

    @staticmethod
    def _ref(ref: str, alias: bool) -> str:
        """``alias``: the alias's own permissions or nonces, not its actor's."""
        return f"/actors/aliases/{_seg(ref)}" if alias else f"/actors/{_seg(ref)}"

    def get_permissions(self, ref: str, alias: bool = False) -> dict[str, str]:
        """User to level, the owner included."""
        return dict(self._call("GET", self._ref(ref, alias) + "/permissions"))

    def share(self, ref: str, user: str, level: str, alias: bool = False) -> dict[str, str]:
        """Grant ``level`` (READ, EXECUTE, UPDATE; NONE removes the grant) to ``user``
        (``ABACO_WORLD``: everyone in the tenant); returns the permissions after."""
        return dict(self._call("POST", self._ref(ref, alias) + "/permissions",
                               json={"user": user, "level": level.upper()}))

    def list_nonces(self, ref: str, alias: bool = False) -> list[dict[str, Any]]:
        return list(self._call("GET", self._ref(ref, alias) + "/nonces"))

    def create_nonce(self, ref: str, level: str = "EXECUTE", max_uses: int = -1,
                     description: str = "", alias: bool = False) -> dict[str, Any]:
        """``max_uses`` -1 is unlimited."""
        body = {"level": level.upper(), "maxUses": max_uses, "description": description}
        return dict(self._call("POST", self._ref(ref, alias) + "/nonces", json=body))

    def get_nonce(self, ref: str, nonce_id: str, alias: bool = False) -> dict[str, Any]:
        return dict(self._call("GET", self._ref(ref, alias) + f"/nonces/{_seg(nonce_id)}"))

    def delete_nonce(self, ref: str, nonce_id: str, alias: bool = False) -> None:
        self._call("DELETE", self._ref(ref, alias) + f"/nonces/{_seg(nonce_id)}")

    def list_aliases(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/actors/aliases"))

    def create_alias(self, alias: str, actor_id: str) -> dict[str, Any]:
        return dict(self._call("POST", "/actors/aliases",
                               json={"alias": alias, "actorId": actor_id}))

    def get_alias(self, alias: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/actors/aliases/{_seg(alias)}"))

    def update_alias(self, alias: str, actor_id: str) -> dict[str, Any]:
        """Point the alias at another actor (needs UPDATE on that actor)."""
        return dict(self._call("PUT", f"/actors/aliases/{_seg(alias)}",
                               json={"alias": alias, "actorId": actor_id}))

    def delete_alias(self, alias: str) -> None:
        self._call("DELETE", f"/actors/aliases/{_seg(alias)}")


def _chunks(reply: requests.Response) -> Iterator[bytes]:
    """What the server has sent so far, as soon as it is there: each chunk of a chunked
    body, or, for a body without chunks, whatever one read returns (``read1``), never
    waiting to fill a buffer while the execution is quiet."""
    if reply.raw.chunked:
        yield from (c for c in reply.iter_content(chunk_size=None) if c)
        return
    while True:
        data = reply.raw.read1(65536)
        if not data:
            return
        yield data
