"""Every actors operation of agavepy 0.9.5 (Abaco's SDK) against a platform over HTTPS;
run by the client venv's Python (``.venv-clients``). Prints one JSON object: operation
-> outcome."""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from agavepy.agave import Agave
from recorder import Recorder  # the suites run as scripts from this folder

warnings.filterwarnings("ignore")


def plain(value: Any) -> Any:
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "text") and hasattr(value, "status_code"):
        return value.text
    return value


def main() -> None:
    server, token = sys.argv[1], sys.argv[2]
    ag = Agave(api_server=server, token=token, verify=False)
    recorder = Recorder(plain)
    call = recorder.call

    a = ag.actors
    actor = call("add", a.add, body={"image": "abaco-test-echo", "name": "agavepy"})
    aid = (actor or {}).get("id", "missing")
    call("list", a.list)
    call("get", a.get, actorId=aid)
    call("update", a.update, actorId=aid, body={"image": "abaco-test-echo",
                                                 "description": "updated by agavepy"})
    deadline = time.time() + 60
    while time.time() < deadline and (call("poll", a.get, actorId=aid) or
                                      {}).get("status") != "READY":
        time.sleep(0.2)
    sent = call("sendMessage", a.sendMessage, actorId=aid, body={"message": "hello agavepy"})
    eid = (sent or {}).get("executionId", "missing")
    call("sendBinaryMessage", a.sendBinaryMessage, actorId=aid, message=b"\x00\x01")
    call("getMessages", a.getMessages, actorId=aid)
    while time.time() < deadline and (call("pollExecution", a.getExecution, actorId=aid,
                                           executionId=eid) or {}).get("status") != "COMPLETE":
        time.sleep(0.2)
    call("listExecutions", a.listExecutions, actorId=aid)
    call("getExecution", a.getExecution, actorId=aid, executionId=eid)
    call("getExecutionLogs", a.getExecutionLogs, actorId=aid, executionId=eid)
    call("getOneExecutionResult", a.getOneExecutionResult, actorId=aid, executionId=eid)
    call("deleteMessages", a.deleteMessages, actorId=aid)
    call("getPermissions", a.getPermissions, actorId=aid)
    call("updatePermissions", a.updatePermissions, actorId=aid,
         body={"user": "bob", "level": "READ"})
    nonce = call("addNonce", a.addNonce, actorId=aid, body={"level": "READ", "maxUses": 3})
    nid = (nonce or {}).get("id", "missing")
    call("listNonces", a.listNonces, actorId=aid)
    call("getNonce", a.getNonce, actorId=aid, nonceId=nid)
    call("deleteNonce", a.deleteNonce, actorId=aid, nonceId=nid)
    call("getState", a.getState, actorId=aid)
    workers = call("listWorkers", a.listWorkers, actorId=aid) or []
    call("addWorker", a.addWorker, actorId=aid, body={"num": 1})
    wid = workers[0]["id"] if workers else "missing"
    call("getWorker", a.getWorker, actorId=aid, workerId=wid)
    call("deleteWorker", a.deleteWorker, actorId=aid, workerId=wid)
    call("addAlias", a.addAlias, body={"alias": "agavepy-alias", "actorId": aid})
    call("listAliases", a.listAliases)
    call("getAlias", a.getAlias, alias="agavepy-alias")
    call("deleteAlias", a.deleteAlias, alias="agavepy-alias")
    stateful = call("addStateful", a.add, body={"image": "abaco-test-echo",
                                                "stateless": False})
    call("updateState", a.updateState, actorId=(stateful or {}).get("id", "missing"),
         body={"count": 1})
    call("delete", a.delete, actorId=aid)
    recorder.report()


if __name__ == "__main__":
    main()
