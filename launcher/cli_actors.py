"""``abaco actors list|create|show|update|delete``, ``executions``, ``workers``, ``state``
and ``config`` (where the client commands point)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from launcher.cli_base import AbacoCommand, AbacoGroup, Failure, client
from launcher.cli_config import resolve
from launcher.cli_output import json_option, pick, print_json, progress, record, say, table
from launcher.client import Client


@click.group(cls=AbacoGroup)
def actors() -> None:
    """Register, inspect, change and remove actors."""


@actors.command("list")
@json_option
@click.pass_context
def list_actors(ctx: click.Context, as_json: bool) -> None:
    """The actors you can read."""
    found = client(ctx).list_actors()
    if as_json:
        print_json(found)
        return
    table(("ID", "NAME", "IMAGE", "STATUS", "REV", "OWNER", "CREATED"),
          [(a["id"], a.get("name"), a.get("image"), a.get("status"), a.get("revision"),
            a.get("owner"), _short_time(pick(a, "createTime"))) for a in found])


def _actor_options(update: bool) -> Any:
    """The fields the API takes, as options; ``--set`` and ``--file`` reach the rest."""
    options = [
        click.option("--image", required=not update, help="Docker image (required)."
                     if not update else "New image (makes a new revision)."),
        click.option("--name"),
        click.option("--description"),
        click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE",
                     help="defaultEnvironment entry (repeat); on update, the whole "
                          "environment is replaced by the ones given."),
        click.option("--stateful/--stateless", default=None,
                     help="Stateful actors keep state and have exactly one worker."),
        click.option("--privileged/--no-privileged", default=None),
        click.option("--hint", "hints", multiple=True, help="A hint (repeat), e.g. sync."),
        click.option("--min-workers", type=int),
        click.option("--max-workers", type=int),
        click.option("--mem-limit", help="e.g. 512m"),
        click.option("--max-run-time", type=int, help="Seconds."),
        click.option("--log-ex", type=int, help="Seconds the logs are kept."),
        click.option("--link", help="Actor id or alias that hears this actor's events."),
        click.option("--webhook", help="URL that hears this actor's events."),
        click.option("--cron-schedule"),
        click.option("--queue"),
        click.option("--set", "extra", multiple=True, metavar="FIELD=JSON",
                     help="Any other field, its value as JSON (or a plain string)."),
        click.option("--file", "body_file", type=click.Path(exists=True, dir_okay=False),
                     help="A JSON object of fields; the options above override it."),
    ]
    if update:
        options.append(click.option("--force", is_flag=True,
                                    help="A new revision even with the same image."))
    else:
        options.append(click.option("--wait", is_flag=True,
                                    help="Wait until the actor is READY (or ERROR)."))

    def apply(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func
    return apply


FIELD_NAMES = {"image": "image", "name": "name", "description": "description",
               "privileged": "privileged", "min_workers": "minWorkers",
               "max_workers": "maxWorkers", "mem_limit": "memLimit",
               "max_run_time": "maxRunTime", "log_ex": "logEx", "link": "link",
               "webhook": "webhook", "cron_schedule": "cronSchedule", "queue": "queue"}


def _body(options: dict[str, Any]) -> dict[str, Any]:
    """The request body from the options: the file, then the named options, then ``--set``."""
    body: dict[str, Any] = {}
    if options.get("body_file"):
        loaded = json.loads(Path(options["body_file"]).read_text())
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a JSON object", param_hint="--file")
        body.update(loaded)
    for option, name in FIELD_NAMES.items():
        if options.get(option) is not None:
            body[name] = options[option]
    if options.get("stateful") is not None:
        body["stateless"] = not options["stateful"]
    if options.get("hints"):
        body["hints"] = list(options["hints"])
    if options.get("env"):
        body["defaultEnvironment"] = dict(_pair(item, "--env") for item in options["env"])
    for item in options.get("extra") or ():
        name, raw = _pair(item, "--set")
        try:
            body[name] = json.loads(raw)
        except ValueError:
            body[name] = raw
    if options.get("force"):
        body["force"] = True
    return body


def _pair(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=option)
    return name, value


@actors.command("create")
@_actor_options(update=False)
@json_option
@click.pass_context
def create_actor(ctx: click.Context, as_json: bool, wait: bool, **options: Any) -> None:
    """Register an actor; prints its id (the record with --json)."""
    api = client(ctx)
    actor = api.create_actor(_body(options))
    if wait:
        actor = _wait_ready(api, actor)
    if as_json:
        print_json(actor)
    else:
        click.echo(actor["id"])
    if actor.get("status") == "ERROR":
        raise Failure(f"{ctx.command_path}: actor {actor['id']} is in ERROR: "
                      f"{pick(actor, 'statusMessage')}")


def _wait_ready(api: Client, actor: dict[str, Any]) -> dict[str, Any]:
    """Until the image is checked: READY or ERROR (a spinner says so meanwhile)."""
    with progress() as spinner:
        pause = 0.1
        while actor.get("status") not in ("READY", "ERROR"):
            spinner.update(f"actor {actor['id']}: {actor.get('status')}")
            time.sleep(pause)
            pause = min(1.0, pause * 1.5)
            actor = api.get_actor(actor["id"])
    return actor


@actors.command("show")
@click.argument("actor")
@json_option
@click.pass_context
def show_actor(ctx: click.Context, actor: str, as_json: bool) -> None:
    """One actor (an id or an alias)."""
    found = client(ctx).get_actor(actor)
    print_json(found) if as_json else record(found)


@actors.command("update")
@click.argument("actor")
@_actor_options(update=True)
@json_option
@click.pass_context
def update_actor(ctx: click.Context, actor: str, as_json: bool, **options: Any) -> None:
    """Change an actor; fields not given keep their value."""
    body = _body(options)
    if not body:
        raise click.UsageError("nothing to change: give at least one field")
    updated = client(ctx).update_actor(actor, body)
    if as_json:
        print_json(updated)
    else:
        say(f"actor {updated['id']} updated, revision {updated.get('revision')}")


@actors.command("delete")
@click.argument("actor", nargs=-1, required=True)
@click.pass_context
def delete_actor(ctx: click.Context, actor: tuple[str, ...]) -> None:
    """Delete actors, with their executions and logs."""
    api = client(ctx)
    for one in actor:
        api.delete_actor(one)
        say(f"actor {one} deleted")


@click.command("executions", cls=AbacoCommand)
@click.argument("actor")
@click.argument("execution", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@click.pass_context
def executions(ctx: click.Context, actor: str, execution: str | None, limit: int, offset: int,
               as_json: bool) -> None:
    """An actor's executions (a page and the totals), or one EXECUTION in full."""
    api = client(ctx)
    if execution is not None:
        one = api.get_execution(actor, execution)
        print_json(one) if as_json else record(one)
        return
    listing = api.list_executions(actor, offset, limit)
    if as_json:
        print_json(listing)
        return
    rows = [(e["id"], e.get("status"), _short_time(pick(e, "messageReceivedTime")),
             _short_time(pick(e, "startTime")), _short_time(pick(e, "finishTime")))
            for e in listing.get("executions", [])]
    total = pick(listing, "totalExecutions")
    caption = (f"{total} execution{'' if total == 1 else 's'}; cpu {pick(listing, 'totalCpu')} ns, "
               f"io {pick(listing, 'totalIo')} bytes, runtime {pick(listing, 'totalRuntime')} s")
    table(("ID", "STATUS", "RECEIVED", "STARTED", "FINISHED"), rows, caption=caption)


@click.command("workers", cls=AbacoCommand)
@click.argument("actor")
@json_option
@click.pass_context
def workers(ctx: click.Context, actor: str, as_json: bool) -> None:
    """An actor's workers."""
    found = client(ctx).list_workers(actor)
    if as_json:
        print_json(found)
        return
    table(("ID", "STATUS", "REV", "LOCATION", "PID", "CREATED", "LAST EXECUTION"),
          [(w["id"], w.get("status"), w.get("revision"), w.get("location"), w.get("pid"),
            _short_time(pick(w, "createTime")), _short_time(pick(w, "lastExecutionTime")))
           for w in found])


@click.command("state", cls=AbacoCommand)
@click.argument("actor")
@click.option("--set", "new_state", metavar="JSON",
              help="Replace the state (stateful actors) with this JSON value.")
@click.pass_context
def state(ctx: click.Context, actor: str, new_state: str | None) -> None:
    """An actor's state, as JSON; --set replaces it."""
    api = client(ctx)
    if new_state is None:
        print_json(api.get_state(actor))
        return
    try:
        value = json.loads(new_state)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--set") from exc
    print_json(api.set_state(actor, value))


@click.command("config", cls=AbacoCommand)
@json_option
@click.pass_context
def config(ctx: click.Context, as_json: bool) -> None:
    """Where the client commands point, and where each value came from."""
    target = resolve(ctx.find_root().obj or {})
    shown = {"url": target.url, "token": "(set)" if target.token else None,
             "tenant": target.tenant, "config_file": str(target.config_file or "") or None,
             "sources": target.sources}
    if as_json:
        print_json(shown)
        return
    rows = [("url", target.url, target.sources.get("url")),
            ("token", shown["token"] or "(none)", target.sources.get("token")),
            ("tenant", target.tenant or "(none)", target.sources.get("tenant"))]
    table(("SETTING", "VALUE", "FROM"), rows, keys=("SETTING",))


def _short_time(value: Any) -> str:
    """``2026-01-02T03:04:05.678901Z`` as ``2026-01-02 03:04:05``: a table cell to read."""
    if not isinstance(value, str) or not value:
        return ""
    return value.replace("T", " ")[:19]


COMMANDS = [actors, executions, workers, state, config]
