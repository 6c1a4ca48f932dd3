"""How the client commands print: data on stdout (tables that fit the terminal, or the
raw JSON with ``--json``), progress on stderr (a spinner, only on a terminal)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.table import Table

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print the API's JSON result as it came.")


MIN_WIDTH = 40
UNLIMITED = 100_000


def out() -> Console:
    """stdout, looked up at each call (click's test runner swaps it). Tables are as
    wide as ``COLUMNS`` when it is set, else the terminal; into a pipe or a file, as
    wide as they need (a wrapped cell would split a value across lines for ``grep``);
    never narrower than ``MIN_WIDTH``."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=_width())


def _width() -> int | None:
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return max(columns, MIN_WIDTH)
    if not sys.stdout.isatty():
        return UNLIMITED
    return max(shutil.get_terminal_size().columns, MIN_WIDTH)


def err() -> Console:
    return Console(file=sys.stderr, highlight=False)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def cell(value: Any) -> str:
    """A value as one table cell: nothing for null, JSON for lists and objects."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def pick(record: dict[str, Any], camel: str) -> Any:
    """A field in camelCase or, from a server running ``case = snake``, snake_case."""
    if camel in record:
        return record[camel]
    return record.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
          keys: Sequence[str] = ("ID",), caption: str | None = None) -> None:
    """A table as wide as the terminal at most: the key columns (ids) are never cut or
    wrapped; the others wrap, then shrink."""
    grid = Table(box=None, pad_edge=False, header_style="bold", caption=caption,
                 caption_justify="left")
    for name in columns:
        if name in keys:
            width = max([len(name)] + [len(cell(row[columns.index(name)])) for row in rows])
            grid.add_column(name, no_wrap=True, min_width=width, overflow="ignore")
        else:
            grid.add_column(name, overflow="fold")
    for row in rows:
        grid.add_row(*(cell(value) for value in row))
    console = out()
    with console.capture() as captured:
        console.print(grid)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def record(data: dict[str, Any]) -> None:
    """One record as field / value lines (``_links`` left out: ``--json`` has them)."""
    rows = [(key, value) for key, value in data.items() if key != "_links"]
    table(("FIELD", "VALUE"), rows, keys=("FIELD",))


def say(message: str) -> None:
    """Progress or a summary for the person at the terminal: stderr, never stdout."""
    click.echo(message, err=True)


class Progress:
    """A spinner line on stderr, shown only when stderr is a terminal (never in a pipe or
    a test); ``update`` changes its text."""

    def __init__(self, console: Console | None) -> None:
        self._status = console.status("") if console is not None else None
        self._started = False

    def update(self, text: str) -> None:
        if self._status is None:
            return
        self._status.update(text)
        if not self._started:
            self._status.start()
            self._started = True

    def stop(self) -> None:
        if self._status is not None and self._started:
            self._status.stop()
            self._started = False


@contextmanager
def progress() -> Iterator[Progress]:
    shown = sys.stderr.isatty()
    spinner = Progress(Console(file=sys.stderr) if shown else None)
    try:
        yield spinner
    finally:
        spinner.stop()
