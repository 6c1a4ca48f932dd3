"""``abaco share``, ``abaco nonce ...`` and ``abaco alias ...``: who may do what."""

from __future__ import annotations

from typing import Any

import click

from launcher.cli_base import AbacoCommand, AbacoGroup, client
from launcher.cli_output import json_option, pick, print_json, record, say, table
from launcher.client import LEVELS

alias_flag = click.option("--alias", "on_alias", is_flag=True,
                          help="ACTOR names an alias: act on the alias's own grants.")


@click.command("share", cls=AbacoCommand)
@click.argument("actor")
@click.argument("user", required=False)
@click.argument("level", required=False,
                type=click.Choice(LEVELS, case_sensitive=False))
@alias_flag
@json_option
@click.pass_context
def share(ctx: click.Context, actor: str, user: str | None, level: str | None,
          on_alias: bool, as_json: bool) -> None:
    """Grant USER (ABACO_WORLD: everyone in the tenant) LEVEL on ACTOR: READ, EXECUTE,
    UPDATE, or NONE to remove the grant. Without USER and LEVEL, list the grants."""
    api = client(ctx)
    if user is None:
        grants = api.get_permissions(actor, on_alias)
    elif level is None:
        raise click.UsageError("give USER and LEVEL, or neither to list the grants")
    else:
        grants = api.share(actor, user, level, on_alias)
    if as_json:
        print_json(grants)
    else:
        table(("USER", "LEVEL"), sorted(grants.items()), keys=("USER",))


@click.group("nonce", cls=AbacoGroup)
def nonce() -> None:
    """Nonces: ?x-nonce=<id> acts as their owner on one actor, up to a level."""


@nonce.command("list")
@click.argument("actor")
@alias_flag
@json_option
@click.pass_context
def list_nonces(ctx: click.Context, actor: str, on_alias: bool, as_json: bool) -> None:
    """The nonces of an actor (or of an alias, with --alias)."""
    found = client(ctx).list_nonces(actor, on_alias)
    if as_json:
        print_json(found)
        return
    table(("ID", "LEVEL", "USES LEFT", "USED", "DESCRIPTION", "OWNER"),
          [(n["id"], n.get("level"), pick(n, "remainingUses"), pick(n, "currentUses"),
            n.get("description"), n.get("owner")) for n in found])


@nonce.command("create")
@click.argument("actor")
@click.option("--level", type=click.Choice(LEVELS[:3], case_sensitive=False),
              default="EXECUTE", show_default=True)
@click.option("--max-uses", type=int, default=-1, show_default=True,
              help="-1: unlimited.")
@click.option("--description", default="")
@alias_flag
@json_option
@click.pass_context
def create_nonce(ctx: click.Context, actor: str, level: str, max_uses: int, description: str,
                 on_alias: bool, as_json: bool) -> None:
    """Make a nonce; prints its id (the record with --json)."""
    made = client(ctx).create_nonce(actor, level, max_uses, description, on_alias)
    print_json(made) if as_json else click.echo(made["id"])


@nonce.command("show")
@click.argument("actor")
@click.argument("nonce_id")
@alias_flag
@json_option
@click.pass_context
def show_nonce(ctx: click.Context, actor: str, nonce_id: str, on_alias: bool,
               as_json: bool) -> None:
    """One nonce."""
    found = client(ctx).get_nonce(actor, nonce_id, on_alias)
    print_json(found) if as_json else record(found)


@nonce.command("delete")
@click.argument("actor")
@click.argument("nonce_id")
@alias_flag
@click.pass_context
def delete_nonce(ctx: click.Context, actor: str, nonce_id: str, on_alias: bool) -> None:
    """Revoke a nonce."""
    client(ctx).delete_nonce(actor, nonce_id, on_alias)
    say(f"nonce {nonce_id} deleted")


@click.group("alias", cls=AbacoGroup)
def alias() -> None:
    """Aliases: names that stand wherever an actor id does."""


@alias.command("list")
@json_option
@click.pass_context
def list_aliases(ctx: click.Context, as_json: bool) -> None:
    """The aliases you can read."""
    found = client(ctx).list_aliases()
    if as_json:
        print_json(found)
        return
    table(("ALIAS", "ACTOR", "OWNER"),
          [(a["alias"], pick(a, "actorId"), a.get("owner")) for a in found],
          keys=("ALIAS", "ACTOR"))


@alias.command("create")
@click.argument("name")
@click.argument("actor")
@json_option
@click.pass_context
def create_alias(ctx: click.Context, name: str, actor: str, as_json: bool) -> None:
    """Make NAME stand for ACTOR."""
    _show_made(client(ctx).create_alias(name, actor), as_json)


@alias.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show_alias(ctx: click.Context, name: str, as_json: bool) -> None:
    """One alias."""
    found = client(ctx).get_alias(name)
    print_json(found) if as_json else record(found)


@alias.command("update")
@click.argument("name")
@click.argument("actor")
@json_option
@click.pass_context
def update_alias(ctx: click.Context, name: str, actor: str, as_json: bool) -> None:
    """Point NAME at another ACTOR."""
    _show_made(client(ctx).update_alias(name, actor), as_json)


def _show_made(made: dict[str, Any], as_json: bool) -> None:
    """An alias just made or moved: as JSON, or one line saying where it points."""
    print_json(made) if as_json else say(f"alias {made['alias']} -> {pick(made, 'actorId')}")


@alias.command("delete")
@click.argument("name")
@click.pass_context
def delete_alias(ctx: click.Context, name: str) -> None:
    """Remove an alias (the actor stays)."""
    client(ctx).delete_alias(name)
    say(f"alias {name} deleted")


COMMANDS = [share, nonce, alias]
