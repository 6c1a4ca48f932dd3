"""What every ``abaco`` command shares: one-line errors, and the client the flags,
environment and config file point at."""

from __future__ import annotations

from typing import Any

import click

from jobs.errors import AbacoError
from launcher.cli_config import ConfigError, resolve
from launcher.client import ApiError, Client


class Failure(click.ClickException):
    """An error already worded for the user: printed as it is, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(self.message, err=True)


class AbacoCommand(click.Command):
    """Turns the errors the platform and its client raise on purpose into one line,
    ``abaco <command>: <message>``, and exit status 1 (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (AbacoError, ConfigError) as exc:
            raise Failure(f"{ctx.command_path}: {exc.message}") from exc
        except ApiError as exc:
            raise Failure(f"{ctx.command_path}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:  # a reply of another shape
            raise Failure(f"{ctx.command_path}: the server's reply is not what this "
                          f"command reads ({type(exc).__name__}: {exc})") from exc


class AbacoGroup(click.Group):
    command_class = AbacoCommand
    group_class = type  # subgroups are AbacoGroups too


def client(ctx: click.Context) -> Client:
    """The client of the platform the root's flags (else environment, config) name."""
    flags = ctx.find_root().obj or {}
    target = resolve(flags)
    return Client(target.url, target.token, target.tenant)
