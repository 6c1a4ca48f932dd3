"""The ``abaco`` command: the local stack (up, down, status, the long-running processes)
and the platform's client (actors, messages, executions, logs, sharing).

Exit status: 0 success; 1 an error (the API refused the call or could not be reached,
a bad setting or config file; the message is ``abaco <command>: <why>``); 2 a usage
error; ``send --wait/--follow`` and ``logs --follow`` add 3 (the execution ended
COMPLETE with a non-zero or no exit code) and 4 (it ended ERROR); 130 interrupted.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from launcher.cli_base import AbacoGroup

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group("abaco", cls=AbacoGroup, context_settings=CONTEXT)
@click.option("--url", metavar="URL",
              help="The platform's API [env ABACO_URL; config url; http://127.0.0.1:8000].")
@click.option("--token", metavar="JWT", help="Sent as Authorization: Bearer [env ABACO_TOKEN; "
                                             "config token].")
@click.option("--token-file", metavar="PATH",
              help="A file holding the token [env ABACO_TOKEN_FILE; config token_file].")
@click.option("--tenant", metavar="TENANT",
              help="Send the token as X-Jwt-Assertion-<TENANT> instead [env ABACO_TENANT; "
                   "config tenant].")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, token_file: str | None,
        tenant: str | None) -> None:
    """Run the local platform, and work with its actors.

    The client commands find the platform from the flags, then ABACO_URL, ABACO_TOKEN,
    ABACO_TOKEN_FILE and ABACO_TENANT, then the TOML file $ABACO_CONFIG (else
    ~/.config/abaco/config.toml), else http://127.0.0.1:8000 without a token.
    """
    ctx.obj = {"url": url, "token": token, "token_file": token_file, "tenant": tenant}


@cli.command()
def up() -> None:
    """Start the local stack (reuses what already runs)."""
    from launcher import stack

    stack.up(_settings())


@cli.command()
def down() -> None:
    """Stop what 'abaco up' started."""
    from launcher import stack

    stack.down(_settings())


@cli.command()
def status() -> None:
    """Say what runs where."""
    from launcher import stack

    click.echo("\n".join(stack.status(_settings())))


@cli.command()
def scheduler() -> None:
    """Run the scheduler in the foreground."""
    from scheduler.loop import main as scheduler_main

    _settings()
    scheduler_main()


@cli.command()
@click.option("--tenant", required=True)
@click.option("--actor", required=True)
@click.option("--worker-id", required=True)
def worker(tenant: str, actor: str, worker_id: str) -> None:
    """Run one worker in the foreground."""
    from jobs.worker import main as worker_main

    _settings()
    worker_main(["--tenant", tenant, "--actor", actor, "--worker-id", worker_id])


def _settings() -> Any:
    """The server's settings: read by the stack commands only, so that a client command
    never needs (or trips on) the server's configuration."""
    from jobs.settings import load_settings

    return load_settings()


def _register() -> None:
    from launcher.cli_actors import COMMANDS as ACTORS
    from launcher.cli_run import COMMANDS as RUN
    from launcher.cli_sharing import COMMANDS as SHARING

    for command in (*ACTORS, *RUN, *SHARING):
        cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> int:
    # Output into a closed pipe (``abaco logs ... | head``) ends the command quietly, as
    # for any Unix tool (exit status 141), rather than as an error.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code = cli.main(args=argv, prog_name="abaco", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("abaco: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
