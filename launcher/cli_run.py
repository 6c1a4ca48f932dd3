"""``abaco send`` and ``abaco logs``: run an actor, watch an execution.

Exit status of ``send --wait``, ``send --follow`` and ``logs --follow``: 0 when the
execution ended COMPLETE with exit code 0, 3 when it ended COMPLETE with another (or
no) exit code, 4 when it ended ERROR; 1 when the API refused or could not be reached,
130 when interrupted (the execution goes on).
"""

from __future__ import annotations

import json
import sys

import click

from launcher.cli_base import AbacoCommand, client
from launcher.cli_output import json_option, print_json, progress, say
from launcher.client import Client, Execution

EXIT_NONZERO = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130


def exit_status(execution: Execution) -> int:
    """The command's exit status for a final execution (see the module's docstring)."""
    if execution.succeeded:
        return 0
    return EXIT_ERROR if execution.status == "ERROR" else EXIT_NONZERO


def _describe(execution: Execution) -> str:
    """One line for the person watching: where it is, how long it waited and ran."""
    parts = [f"execution {execution.id}: {execution.status}"]
    if execution.final:
        parts.append("exit code " + ("none" if execution.exit_code is None
                                     else str(execution.exit_code)))
    waited, ran = execution.waited_s(), execution.running_s()
    if waited is not None:
        parts.append(f"queued {waited:.1f} s")
    if ran is not None:
        parts.append(f"ran {ran:.1f} s" if execution.final else f"running {ran:.1f} s")
    line = ", ".join(parts)
    if execution.final and execution.status_message:
        line += f" ({execution.status_message})"
    return line


@click.command("send", cls=AbacoCommand)
@click.argument("actor")
@click.argument("message")
@click.option("--wait", is_flag=True, help="Wait until the execution ends (no logs).")
@click.option("--follow", "-f", is_flag=True,
              help="Print the logs as they are written, until the execution ends.")
@click.option("--json-message", is_flag=True,
              help="MESSAGE is JSON, sent as a JSON message.")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE",
              help="An environment variable of this execution only (repeat).")
@json_option
@click.pass_context
def send(ctx: click.Context, actor: str, message: str, wait: bool, follow: bool,
         json_message: bool, env: tuple[str, ...], as_json: bool) -> None:
    """Send MESSAGE ('-' reads stdin) to ACTOR; prints the execution id.

    With --follow, then the logs as they come and, on stderr, the execution's status
    and exit code; --wait waits without the logs. The exit status is then the
    execution's: 0 COMPLETE with exit code 0, 3 another exit code, 4 ERROR.
    """
    if follow and as_json:
        raise click.UsageError("--json and --follow do not mix (the logs are not JSON); "
                               "use --wait --json")
    text = sys.stdin.read() if message == "-" else message
    body: str | dict[str, object] | list[object] = text
    if json_message:
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="MESSAGE") from exc
    variables = {}
    for item in env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--env")
        variables[name] = value
    api = client(ctx)
    sent = api.send_message(actor, body, variables or None)
    if not (wait or follow):
        print_json(sent.raw) if as_json else click.echo(sent.execution_id)
        return
    if not as_json:
        click.echo(sent.execution_id)
    ctx.exit(_watch(api, actor, sent.execution_id, follow, as_json))


@click.command("logs", cls=AbacoCommand)
@click.argument("actor")
@click.argument("execution")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing as the logs grow, until the execution ends.")
@json_option
@click.pass_context
def logs(ctx: click.Context, actor: str, execution: str, follow: bool, as_json: bool) -> None:
    """An execution's logs. With --follow the exit status is the execution's, as for
    send --follow."""
    if follow and as_json:
        raise click.UsageError("--json and --follow do not mix (the logs are not JSON)")
    api = client(ctx)
    if follow:
        ctx.exit(_watch(api, actor, execution, follow=True, as_json=False))
    result = api.logs_result(actor, execution)
    if as_json:
        print_json(result)
    else:
        click.echo(str(result.get("logs") or ""), nl=False)


def _watch(api: Client, actor: str, execution: str, follow: bool, as_json: bool) -> int:
    """Follow or wait until the execution is final; say how it ended (stderr); return
    the exit status. Ctrl-C leaves the execution running and says how to pick it up."""
    try:
        final = _follow(api, actor, execution) if follow else _wait(api, actor, execution)
    except KeyboardInterrupt:
        say(f"interrupted; execution {execution} goes on "
            f"(abaco logs {actor} {execution} --follow)")
        return EXIT_INTERRUPTED
    if as_json:
        print_json(final.raw)
    say(_describe(final))
    return exit_status(final)


def _wait(api: Client, actor: str, execution: str) -> Execution:
    with progress() as spinner:
        return api.wait(actor, execution, on_poll=lambda e: spinner.update(_describe(e)))


def _follow(api: Client, actor: str, execution: str) -> Execution:
    """The logs to stdout as they arrive (flushed per chunk, so a pipe sees them at
    once), then the final record. On a terminal a spinner shows the queue first."""
    with progress() as spinner:
        if sys.stderr.isatty():  # only to show the queue: the stream itself waits too
            api.wait(actor, execution, on_poll=lambda e: spinner.update(_describe(e)),
                     until=lambda e: e.status != "SUBMITTED")
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    last = b"\n"
    for chunk in api.follow_logs(actor, execution):
        if stream is not None:
            stream.write(chunk)
            stream.flush()
        else:
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        last = chunk
    if not last.endswith(b"\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
        sys.stdout.flush()
    with progress() as spinner:
        return api.wait(actor, execution, on_poll=lambda e: spinner.update(_describe(e)))


COMMANDS = [send, logs]
