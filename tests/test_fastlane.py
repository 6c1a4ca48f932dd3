"""The fast lane answers exactly as Flask does.

Two apps over one platform (real Redis, S3, OpenBao), one with the fast lane and
one without (``api_fast_lane = off``). Every request goes to both; status, the
headers a client sees, and the JSON body must be the same, errors included. A
request only the fast lane may take is checked to have been taken by it (so the
comparison is not Flask against Flask).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from api import fastlane
from api.app import create_app
from jobs.service import Platform
from jobs.settings import Settings
from tests.jwt_users import as_user

HEADERS = ("Content-Type", "Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
           "Access-Control-Allow-Headers", "Allow")


@pytest.fixture
def lanes(jwt_settings: Settings) -> tuple[FlaskClient, FlaskClient, list[str]]:
    """(fast, flask, the paths the fast lane itself answered)."""
    platform = Platform.from_settings(jwt_settings)
    fast = create_app(jwt_settings, platform)
    slow = create_app(jwt_settings.replace(api_fast_lane="off"), platform)
    lane = fast.wsgi_app.inner  # type: ignore[attr-defined]  # under the metrics layer
    assert isinstance(lane, fastlane.FastLane)
    assert not isinstance(slow.wsgi_app.inner, fastlane.FastLane)  # type: ignore[attr-defined]
    taken: list[str] = []
    answer = lane._route

    def spy(environ: dict[str, Any]) -> Any:
        route = answer(environ)
        if route is not None:
            taken.append(environ["PATH_INFO"])
        return route

    lane._route = spy  # type: ignore[method-assign]
    return fast.test_client(), slow.test_client(), taken


def _same(lanes: tuple[FlaskClient, FlaskClient, list[str]], method: str, path: str,
          fast_expected: bool = True, normalize: Callable[[Any], Any] = lambda b: b,
          **kwargs: Any) -> tuple[int, Any]:
    fast, slow, taken = lanes
    before = len(taken)
    one = fast.open(path, method=method, **kwargs)
    other = slow.open(path, method=method, **kwargs)
    assert (len(taken) > before) is fast_expected, f"fast lane {'not ' * fast_expected}used"
    assert one.status == other.status, (path, one.get_data(), other.get_data())
    for name in HEADERS:
        assert one.headers.get(name) == other.headers.get(name), (path, name)
    assert one.headers["Content-Length"] == str(len(one.get_data()))
    body_one, body_other = normalize(one.get_json()), normalize(other.get_json())
    assert body_one == body_other, path
    assert list(one.get_json()) == list(other.get_json()), "keys in the same order"
    return one.status_code, body_one


def _result(client: FlaskClient, method: str, path: str, user: str = "alice",
            **kwargs: Any) -> Any:
    reply = client.open(path, method=method, headers=as_user(user), **kwargs)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["result"]


def _sent(body: Any) -> Any:
    """A message's reply names its own new execution: the same shape, its id aside."""
    result = body.get("result") or {}
    if "executionId" in result:
        eid = result["executionId"]
        text = str(body).replace(eid, "EID")
        return text
    return body


def test_reads_answer_alike(lanes: tuple[FlaskClient, FlaskClient, list[str]]):
    fast = lanes[0]
    actor = _result(fast, "POST", "/actors", json={"image": "abaco-test-echo",
                                                   "defaultEnvironment": {"A": "1"}})
    aid = actor["id"]
    eid = _result(fast, "POST", f"/actors/{aid}/messages", data={"message": "hi"})[
        "executionId"]
    for _ in range(2):
        _result(fast, "POST", f"/actors/{aid}/messages", data={"message": "more"})
    _result(fast, "POST", "/actors/aliases", json={"alias": "fl-alias", "actorId": aid})
    alice, bob = as_user("alice"), as_user("bob")
    for path in (f"/actors/{aid}", f"/v3/actors/{aid}", "/actors/fl-alias",
                 f"/actors/{aid}/executions", f"/actors/{aid}/executions?limit=1&offset=0",
                 f"/actors/{aid}/executions/{eid}", f"/v3/actors/{aid}/executions/{eid}",
                 f"/actors/{aid}/executions/{eid}/logs", "/actors/nosuchactor",
                 f"/actors/{aid}/executions/nosuchexec", f"/actors/{aid}/executions/bad!id",
                 f"/actors/{aid}/executions?limit=0", f"/actors/{aid}/executions/{eid}/logs",
                 f"/actors/{aid}/executions?limit=1&limit=2",  # the first counts, as in Flask
                 f"/actors/{aid}/executions?offset=1&offset=0&limit=1"):
        _same(lanes, "GET", path, headers=alice)
    _same(lanes, "GET", "/actors/fl-alias/executions?limit=5", headers=alice)
    for path in (f"/actors/{aid}", f"/actors/{aid}/executions"):
        status, _ = _same(lanes, "GET", path, headers=bob)  # not bob's to see
        assert status == 403
    _same(lanes, "GET", f"/actors/{aid}", headers={})  # 401: no credentials
    _same(lanes, "GET", f"/actors/{aid}", headers={"X-Jwt-Assertion-DEV": "x.y.z"})
    # not the fast lane's: other routes' words, odd queries, nonces, trailing slashes
    for path in ("/actors/aliases", "/actors/search/actors", f"/actors/{aid}/",
                 f"/actors/{aid}/executions?limit=x", f"/actors/{aid}?x-nonce=abc",
                 f"/actors/v2/{aid}", f"/actors/{aid}/workers", "/actors"):
        _same(lanes, "GET", path, fast_expected=False, headers=alice)


def test_messages_answer_alike(lanes: tuple[FlaskClient, FlaskClient, list[str]]):
    fast = lanes[0]
    aid = _result(fast, "POST", "/actors", json={"image": "abaco-test-echo"})["id"]
    alice = as_user("alice")
    status, body = _same(lanes, "POST", f"/actors/{aid}/messages", normalize=_sent,
                         headers=alice, data={"message": "hello there+%"})
    assert status == 200 and "EID" in body
    executions = _result(fast, "GET", f"/actors/{aid}/executions")["executions"]
    assert len(executions) == 2, "each lane queued its message"
    for data in ({"message": ""}, {"message": "a\x00b"}, {"message": "x", "other": "y"},
                 {"message": "ünïcode, percent-encoded"}):
        _same(lanes, "POST", f"/actors/{aid}/messages", normalize=_sent, headers=alice,
              data=data)
    _same(lanes, "POST", "/actors/nosuchactor/messages", headers=alice,
          data={"message": "x"})
    _same(lanes, "POST", f"/actors/{aid}/messages", headers=as_user("bob"),
          data={"message": "x"})
    # Flask's: JSON and binary bodies, query parameters, a form without the field
    for kwargs in ({"json": {"message": "x"}}, {"data": b"\x01\x02",
                                                "content_type": "application/octet-stream"},
                   {"data": {"nothing": "here"}},
                   {"data": "message=%FF%FE", "content_type": fastlane.FORM}):
        _same(lanes, "POST", f"/actors/{aid}/messages", fast_expected=False,
              normalize=_sent, headers=alice, **kwargs)
    _same(lanes, "POST", f"/actors/{aid}/messages?color=red", fast_expected=False,
          normalize=_sent, headers=alice, data={"message": "x"})


def test_reserved_words_are_every_static_segment():
    words = fastlane.reserved_words(["/actors/aliases/<alias>", "/actors/<actor_id>/state",
                                     "/actors/<actor_id>/executions/<eid>/logs"])
    assert {"aliases", "state", "actors"} <= words
    assert not {"executions", "logs", "messages"} & words


def test_a_post_by_the_owner_or_an_admin_is_checked_by_the_post_itself(jwt_settings: Settings):
    """One round trip for the owner and admins (the post script checks the sender and
    takes the revision); everyone else goes through the full check, with its answers."""
    platform = Platform.from_settings(jwt_settings)
    client = create_app(jwt_settings, platform).test_client()
    full_checks: list[str] = []
    checked = platform._actor

    def counting(*args: Any, **kwargs: Any) -> Any:
        full_checks.append(args[1])
        return checked(*args, **kwargs)

    platform._actor = counting  # type: ignore[method-assign]
    aid = _result(client, "POST", "/actors", json={"image": "abaco-test-echo"})["id"]
    _result(client, "PUT", f"/actors/{aid}", json={"image": "abaco-test-echo", "force": True})
    platform.store.update_actor("DEV", aid, {"status": "READY"})
    full_checks.clear()

    def post(user: str, ref: str = aid, roles: tuple[str, ...] = ("user",)) -> Any:
        return client.post(f"/actors/{ref}/messages", data={"message": "m"},
                           headers=as_user(user, roles=roles))

    reply = post("alice")
    assert reply.status_code == 200 and full_checks == [], "the owner: one round trip"
    eid = reply.get_json()["result"]["executionId"]
    assert platform.store.get_execution("DEV", aid, eid)["revision"] == 2
    assert post("root", roles=("admin",)).status_code == 200 and full_checks == []
    before = platform.store.executions_page("DEV", aid)[0]
    assert post("bob").status_code == 403 and full_checks == [aid], "not bob's: full check"
    _result(client, "POST", f"/actors/{aid}/permissions", json={"user": "bob",
                                                                "level": "EXECUTE"})
    assert post("bob").status_code == 200
    _result(client, "POST", "/actors/aliases", json={"alias": "direct-alias", "actorId": aid})
    assert post("alice", "direct-alias").status_code == 200
    platform.store.update_actor("DEV", aid, {"status": "ERROR", "status_message": "broken"})
    refused = post("alice")
    assert refused.status_code == 409 and "broken" in refused.get_json()["message"]
    assert platform.store.executions_page("DEV", aid)[0] == before + 2, \
        "a post left to the full check wrote nothing"
