"""The OpenAPI description served at ``/openapi.json``; a test checks it covers every route."""

from __future__ import annotations

import re
from typing import Any

from api.envelope import VERSION
from jobs.configs import RESERVED
from jobs.models import (
    IGNORED_INPUT,
    MAX_CPUS_MIN,
    MAX_INT,
    MAX_SECONDS,
    image_pattern,
    to_camel,
)
from jobs.settings import Settings
from jobs.sharing_ops import RESERVED_ALIASES

# What the server accepts, stated so schema-driven clients never send what it refuses.
_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
              "minLength": 1, "maxLength": 128}
_ALIAS_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                 "minLength": 1, "maxLength": 64}
_USER_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_.@+-]{1,128}$", "minLength": 1,
                "maxLength": 128}
_LEVEL = {"type": "string", "enum": ["NONE", "READ", "EXECUTE", "UPDATE"]}
_TEXT = {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]*$"}


def _path_param(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param = {"name": name, "in": "path", "required": True, "schema": schema}
    return {**param, "description": description} if description else param


_ID = _path_param("actor_id", _ID_SCHEMA, "actor id (or alias)")
_EID = _path_param("execution_id", _ID_SCHEMA)
_WID = _path_param("worker_id", _ID_SCHEMA)
_NID = _path_param("nonce_id", _ID_SCHEMA)
_ALIAS_P = _path_param("alias", _ALIAS_SCHEMA)
_WORKER_FIELDS = ("id, status (REQUESTED|READY|BUSY|SHUTTING_DOWN|ERROR), image, revision, "
                  "location, cid, hostId, hostIp, createTime, lastExecutionTime, "
                  "lastHealthCheckTime")
_PERMISSION = {"type": "object", "required": ["user", "level"], "additionalProperties": False,
               "properties": {"user": _USER_SCHEMA, "level": _LEVEL}}
_NONCE = {"type": "object", "additionalProperties": False, "properties": {
    "level": {"type": "string", "enum": ["READ", "EXECUTE", "UPDATE"]},
    "maxUses": {"type": "integer", "minimum": -1, "not": {"enum": [0]}},
    "description": {"type": "string", "maxLength": 4096, "pattern": "^[^\\x00]*$"}}}
_ALIAS = {"type": "object", "required": ["alias", "actorId"], "additionalProperties": False,
          "properties": {"alias": {**_ALIAS_SCHEMA,
                                   "not": {"enum": sorted(RESERVED_ALIASES)}},
                         "actorId": _ID_SCHEMA}}
_ERRORS = {str(code): {"$ref": "#/components/responses/Error"}
           for code in (400, 401, 403, 404, 405, 409, 413, 503)}


def _op(summary: str, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, form: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params or [],
                          "responses": {"200": {"$ref": "#/components/responses/Envelope"},
                                        **_ERRORS}}
    if body:
        content = {"application/json": {"schema": body}}
        if form:  # flat bodies only: a form cannot carry an object like defaultEnvironment
            content["application/x-www-form-urlencoded"] = {"schema": body}
        op["requestBody"] = {"required": True, "content": content}
    op.update(extra)
    return op


_INT = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
_SCHEDULE = ("^(now|[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) ([01][0-9]|2[0-3])) "
             "\\+ [1-9][0-9]{0,3} (hour|day|week|month)s?$")
_WEBHOOK = ("^https?://[a-z][a-z0-9-]{0,30}(\\.[a-z][a-z0-9-]{0,30})+(:[1-9][0-9]{0,3})?"
            "(/[A-Za-z0-9._~/-]*)?$")
# Sizes Docker takes: at least 6 MiB.
_MEMORY = ("^([1-9][0-9]{7,19}[bB]?|[1-9][0-9]{4,16}[kK]|([6-9]|[1-9][0-9]{1,12})[mM]"
           "|[1-9][0-9]{0,9}[gG])$")
_LINES = {"type": "string", "pattern": "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]*$"}


def _text(max_length: int, lines: bool = False) -> dict[str, Any]:
    return {**(_LINES if lines else _TEXT), "maxLength": max_length}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _mount_schema(settings: Settings) -> dict[str, Any]:
    """Mounts as the server takes them: only under the host paths ``mount_allow`` names
    (none by default, so no mounts at all)."""
    prefixes = settings.mount_prefixes
    if not prefixes:
        return {"type": "array", "maxItems": 0, "description": "no host path is allowed here"}
    below = "(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*"
    host = "^(" + "|".join(re.escape(p.rstrip("/")) for p in prefixes) + ")" + below + "$"
    return {"type": "array", "maxItems": 16, "items": {
        "type": "object", "additionalProperties": False,
        "required": ["hostPath", "containerPath"],
        "properties": {"hostPath": {"type": "string", "pattern": host, "maxLength": 1024},
                       "containerPath": {"type": "string", "pattern": "^" + below[:-1] + "+$",
                                         "maxLength": 1024},
                       "mode": {"type": "string", "enum": ["ro", "rw"]}}}}


def _actor_input(settings: Settings) -> dict[str, Any]:
    properties: dict[str, Any] = {to_camel(name): {} for name in sorted(IGNORED_INPUT)}
    properties.update({
        "image": {"type": "string", "maxLength": 512,
                  "pattern": f"^{image_pattern(settings.registries)}$"},
        "name": _nullable(_text(256)), "description": _text(4096, lines=True),
        "stateless": {"type": "boolean", "default": True}, "privileged": {"type": "boolean"},
        "defaultEnvironment": {
            "type": "object", "maxProperties": 256,
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,255}$"},
            "additionalProperties": {**_text(4096, lines=True),
                                     "description": "at most 65536 bytes each, 262144 in all"}},
        "useContainerUid": {"type": "boolean"},
        "maxWorkers": _nullable({**_INT, "maximum": 10_000}),
        "minWorkers": {**_INT, "maximum": 10_000},
        "memLimit": _nullable({"type": "string", "pattern": _MEMORY, "example": "512m",
                               "description": "at least 6m"}),
        "maxCpus": _nullable({**_INT, "minimum": MAX_CPUS_MIN,
                              "description": "nano-cpus (10^9 is one CPU)"}),
        "maxRunTime": _nullable({**_INT, "minimum": 1, "maximum": MAX_SECONDS,
                                 "description": "seconds"}),
        "hints": {"type": "array", "maxItems": 64, "items": _text(256)},
        "queue": _nullable({"type": "string", "enum": [*settings.queue_names, None],
                            "description": "where the actor's workers run (the queues "
                                           "setting)"}),
        "link": {"type": "string", "pattern": "^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$",
                 "description": "an actor id or alias the owner may execute "
                                              "(404 when there is none, 403 when not "
                                              "allowed, 400 when it would close a cycle)"},
        "webhook": {"type": "string", "maxLength": 2048, "pattern": _WEBHOOK,
                    "description": "http(s) URL; loopback, link-local and private "
                                   "addresses are refused unless webhook_allow names them"},
        "token": {"type": "boolean"},
        "logEx": _nullable({**_INT, "minimum": 1, "maximum": MAX_SECONDS,
                            "description": "seconds"}),
        "cronSchedule": _nullable({"type": "string", "pattern": _SCHEDULE,
                                   "description": "Abaco's 'YYYY-MM-DD HH + N unit' (or "
                                                  "'now + N unit'); a five-field cron "
                                                  "expression is also taken"}),
        "cronOn": {"type": "boolean"},
        "mounts": _mount_schema(settings),
        "force": {"type": "boolean", "description": "PUT only: new revision without new image"},
    })
    one_worker = {"properties": {"maxWorkers": _nullable({**_INT, "maximum": 1})}}
    return {"type": "object", "required": ["image"], "additionalProperties": False,
            "properties": properties,
            "anyOf": [{"properties": {"stateless": {"enum": [True]}}}, one_worker],
            "if": {"required": ["cronOn"], "properties": {"cronOn": {"const": True}}},
            "then": {"required": ["cronSchedule"],
                     "properties": {"cronSchedule": {"type": "string"}}},
            "description": "a stateful actor (stateless: false) has at most one worker"}


_MESSAGE = {"type": "object", "required": ["message"], "additionalProperties": False,
            "properties": {"message": {"type": "string", "pattern": "^[^\\x00]*$"}},
            "description": "or any JSON value (application/json), or bytes "
                           "(application/octet-stream)"}
_EXECUTION_FIELDS = (
    "id, actorId, executor, workerId, status (SUBMITTED|RUNNING|COMPLETE|ERROR), "
    "statusMessage, messageReceivedTime, startTime, finishTime, runtime (seconds), "
    "cpu (CPU nanoseconds), io (bytes read+written), memPeak (bytes), queueTime (seconds), "
    "exitCode, finalState (Docker State), revision (the actor revision it ran on), cold "
    "(true when its worker started for it), _links")


_CONFIG_NAME: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_CONFIG_P = {"name": "config_name", "in": "path", "required": True, "schema": _CONFIG_NAME}
_CONFIG = {"type": "object", "additionalProperties": False,
           "required": ["name", "value", "actors"],
           "properties": {"name": {**_CONFIG_NAME, "not": {"enum": sorted(RESERVED)}},
                          "value": {},
                          "isSecret": {"type": "boolean"},
                          "actors": {"type": "string", "maxLength": 4096,
                                     "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
                                                "(,[A-Za-z0-9][A-Za-z0-9_.-]{0,63})*$",
                                     "description": "actor ids or aliases, comma-separated "
                                                    "(a JSON list is taken too)"}}}


def spec(settings: Settings) -> dict[str, Any]:
    actor_input = _actor_input(settings)
    actors = "/actors"
    one = "/actors/{actor_id}"
    execution = one + "/executions/{execution_id}"
    alias = "/actors/aliases/{alias}"
    paths = {
        actors: {"get": _op("List the actors the caller can read (all, unless offset and "
                            "limit page them)", [
                                {"name": "offset", "in": "query", "schema": {
                                    "type": "integer", "minimum": 0, "maximum": MAX_INT}},
                                {"name": "limit", "in": "query", "schema": {
                                    "type": "integer", "minimum": 1, "maximum": MAX_INT}}]),
                 "post": _op("Register an actor (JSON; Abaco's form fields are also taken)",
                              body=actor_input, form=False)},
        one: {"get": _op("Get an actor", [_ID]),
              "put": _op("Update an actor; a new image or force bumps revision", [_ID],
                         actor_input, form=False),
              "delete": _op("Delete an actor and its records", [_ID])},
        one + "/messages": {
            "get": _op("Count queued messages", [_ID]),
            "post": _op("Send a message; other query parameters become environment variables",
                        [_ID, {"name": "_abaco_synchronous", "in": "query",
                               "schema": {"type": "boolean"}}], _MESSAGE),
            "delete": _op("Purge queued messages (they end ERROR)", [_ID])},
        one + "/executions": {"get": _op("List executions (paged)", [
            _ID, {"name": "offset", "in": "query",
                  "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT}}])},
        execution: {"get": _op("Get an execution: " + _EXECUTION_FIELDS, [_ID, _EID]),
                    "delete": _op("Cancel: a queued message is dropped, a running container "
                                  "killed within 2 s; recorded COMPLETE 'cancelled'",
                                  [_ID, _EID])},
        one + "/workers": {"get": _op("List workers", [_ID]),
                           "post": _op("Admins: ask for num workers now", [_ID],
                                       {"type": "object",
                                        "required": ["num"], "additionalProperties": False,
                                        "properties": {"num": {"type": "integer", "minimum": 1,
                                                               "maximum": 1000}}})},
        one + "/workers/{worker_id}": {
            "get": _op("Get a worker: " + _WORKER_FIELDS, [_ID, _WID]),
            "delete": _op("Stop a worker gracefully (its execution finishes first)",
                          [_ID, _WID])},
        execution + "/logs": {"get": _op("Execution logs (live while running)", [_ID, _EID])},
        execution + "/results": {
            "get": _op("Take the next unread result (application/octet-stream; an empty "
                       "body when none is left)", [_ID, _EID]),
            "post": _op("Add a result: only the execution itself, with its own token",
                        [_ID, _EID], requestBody={"required": True, "content": {
                            "application/octet-stream": {"schema": {
                                "type": "string", "format": "binary",
                                "maxLength": settings.max_result_bytes}}}})},
        one + "/state": {"get": _op("Get actor state", [_ID]),
                         "post": _op("Set actor state (stateful actors only)", [_ID],
                                     {"description": "any JSON value"}, form=False)},
        one + "/permissions": {
            "get": _op("Permissions on the actor (or, through an alias, on the alias)", [_ID]),
            "post": _op("Grant a level: user, level (NONE|READ|EXECUTE|UPDATE); "
                        "user ABACO_WORLD means everyone in the tenant", [_ID], _PERMISSION)},
        one + "/nonces": {"get": _op("List nonces", [_ID]),
                          "post": _op("Create a nonce: level, maxUses (-1 unlimited), "
                                      "description; redeem with ?x-nonce=", [_ID], _NONCE)},
        one + "/nonces/{nonce_id}": {"get": _op("Get a nonce", [_ID, _NID]),
                                     "delete": _op("Delete a nonce", [_ID, _NID])},
        "/actors/aliases": {"get": _op("List aliases the caller can read"),
                            "post": _op("Create an alias: alias, actorId", body=_ALIAS)},
        alias: {"get": _op("Get an alias", [_ALIAS_P]),
                "put": _op("Repoint an alias (needs UPDATE on the target actor)", [_ALIAS_P],
                           _ALIAS),
                "delete": _op("Delete an alias", [_ALIAS_P])},
        alias + "/permissions": {"get": _op("Permissions on the alias", [_ALIAS_P]),
                                 "post": _op("Grant a level on the alias", [_ALIAS_P],
                                             _PERMISSION)},
        alias + "/nonces": {"get": _op("List the alias's nonces", [_ALIAS_P]),
                            "post": _op("Create a nonce for the alias", [_ALIAS_P], _NONCE)},
        alias + "/nonces/{nonce_id}": {"get": _op("Get a nonce", [_ALIAS_P, _NID]),
                                       "delete": _op("Delete a nonce", [_ALIAS_P, _NID])},
        "/actors/configs": {
            "get": _op("List the actor configs the caller can read"),
            "post": _op("Create a config: name, value (any JSON), isSecret, actors (ids or "
                        "aliases, a list or comma-separated); its runs get _actor_configs",
                        body=_CONFIG, form=False)},
        "/actors/configs/{config_name}": {
            "get": _op("Get a config (a secret's value is never shown)", [_CONFIG_P]),
            "put": _op("Update a config's value, isSecret or actors", [_CONFIG_P],
                       {**_CONFIG, "required": []}, form=False),
            "delete": _op("Delete a config", [_CONFIG_P])},
        "/actors/configs/{config_name}/permissions": {
            "get": _op("Permissions on a config", [_CONFIG_P]),
            "post": _op("Grant a level on a config", [_CONFIG_P], _PERMISSION)},
        "/actors/search/{search_type}": {"get": _op(
            "Search what the caller can read: field=value, field.op=value (eq neq lt lte gt "
            "gte in nin like nlike between), search=words, exactsearch=phrase; the result is "
            "{_metadata, search}", [
                {"name": "search_type", "in": "path", "required": True,
                 "schema": {"type": "string",
                            "enum": ["actors", "executions", "workers", "logs"]}},
                {"name": "skip", "in": "query",
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT}}])},
        "/openapi.json": {"get": {"summary": "This description",
                                  "responses": {"200": {"description": "OpenAPI 3 document"}}}},
    }
    v2 = {"/actors/v2" + path[len("/actors"):]: item
          for path, item in paths.items() if path.startswith("/actors")}
    v3 = {"/v3" + path: item for path, item in paths.items() if path.startswith("/actors")}
    v3.update({
        "/v3/tenants": {"get": _op("Tapis v3: the tenants (each with a key) and their public "
                                   "keys, for tapipy")},
        "/v3/tenants/{tenant_id}": {"get": _op("Tapis v3: one tenant", [
            {"name": "tenant_id", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}}])},
        "/v3/sites": {"get": _op("Tapis v3: this platform's one site, local")}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "abaco-nx", "version": VERSION,
                 "description": "Abaco v2 compatible actor platform"},
        "paths": {**paths, **v2, **v3},
        "components": {"responses": {
            "Envelope": {"description": "success envelope", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Envelope"}}}},
            "Error": {"description": "error envelope; message names the problem",
                      "content": {"application/json": {
                          "schema": {"$ref": "#/components/schemas/Envelope"}}}}},
            "schemas": {"Envelope": {"type": "object", "properties": {
                "status": {"type": "string", "enum": ["success", "error"]},
                "message": {"type": "string"}, "result": {}, "version": {"type": "string"}}}}},
    }
