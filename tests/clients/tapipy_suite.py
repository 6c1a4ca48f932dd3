"""Every actors operation of tapipy (Tapis v3's SDK), against a platform; run by the
client venv's Python (``.venv-clients``). Prints one JSON object: operation -> outcome."""

from __future__ import annotations

import sys
import time
from typing import Any

from recorder import Recorder  # the suites run as scripts from this folder
from tapipy.tapis import Tapis


def plain(value: Any) -> Any:
    """tapipy's TapisResult objects, as JSON."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return {k: plain(v) for k, v in vars(value).items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def main() -> None:
    base, token = sys.argv[1], sys.argv[2]
    t = Tapis(base_url=base, access_token=token)
    recorder = Recorder(plain)
    call = recorder.call

    a = t.actors
    actor = call("create_actor", a.create_actor, image="abaco-test-echo", name="tapipy")
    aid = (actor or {}).get("id", "missing")
    call("list_actors", a.list_actors)
    call("get_actor", a.get_actor, actor_id=aid)
    call("update_actor", a.update_actor, actor_id=aid, image="abaco-test-echo",
         description="updated by tapipy")
    deadline = time.time() + 60
    while time.time() < deadline and (call("poll_actor", a.get_actor, actor_id=aid) or
                                      {}).get("status") != "READY":
        time.sleep(0.2)
    sent = call("send_message", a.send_message, actor_id=aid, message="hello from tapipy")
    eid = (sent or {}).get("execution_id", "missing")
    call("send_binary_message", a.send_binary_message, actor_id=aid, message=b"\x00\x01")
    call("send_json_message", a.send_json_message, actor_id=aid, request_body={"k": "v"})
    call("get_messages", a.get_messages, actor_id=aid)
    while time.time() < deadline and (call("poll_execution", a.get_execution, actor_id=aid,
                                           execution_id=eid) or {}).get("status") != "COMPLETE":
        time.sleep(0.2)
    call("list_executions", a.list_executions, actor_id=aid)
    call("get_execution", a.get_execution, actor_id=aid, execution_id=eid)
    call("get_execution_logs", a.get_execution_logs, actor_id=aid, execution_id=eid)
    call("get_execution_result", a.get_execution_result, actor_id=aid, execution_id=eid)
    call("delete_pending_messages", a.delete_pending_messages, actor_id=aid)
    call("list_permissions", a.list_permissions, actor_id=aid)
    call("update_permissions", a.update_permissions, actor_id=aid, user="bob", level="READ")
    nonce = call("create_nonce", a.create_nonce, actor_id=aid, level="READ", max_uses=3)
    nid = (nonce or {}).get("id", "missing")
    call("list_nonces", a.list_nonces, actor_id=aid)
    call("get_nonce", a.get_nonce, actor_id=aid, nonce_id=nid)
    call("delete_nonce", a.delete_nonce, actor_id=aid, nonce_id=nid)
    call("get_state", a.get_state, actor_id=aid)
    call("list_workers", a.list_workers, actor_id=aid)
    call("manage_worker_pool_size", a.manage_worker_pool_size, actor_id=aid, num=1)
    call("create_alias", a.create_alias, alias="tapipy-alias", actor_id=aid)
    call("list_aliases", a.list_aliases)
    call("get_alias", a.get_alias, alias="tapipy-alias")
    call("update_actor_alias", a.update_actor_alias, alias="tapipy-alias", actor_id=aid)
    call("delete_alias", a.delete_alias, alias="tapipy-alias")
    call("search_database", a.search_database, search_type="actors")
    stateful = call("create_stateful", a.create_actor, image="abaco-test-echo",
                    stateless=False)
    sid = (stateful or {}).get("id", "missing")
    call("update_state", a.update_state, actor_id=sid, request_body={"count": 1})
    call("delete_actor", a.delete_actor, actor_id=aid)
    recorder.report()


if __name__ == "__main__":
    main()
