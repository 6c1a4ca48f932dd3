"""Abaco's search query language, over records the caller may read.

``GET /actors/search/{actors,executions,workers,logs}?<query>``:

- ``field=value`` is equality; ``field.<op>=value`` with ``op`` one of ``eq neq lt lte gt
  gte in nin like nlike between``. ``like`` is a regular expression (searched, case
  sensitive); ``in``/``nin`` take a JSON list (``["READY","ERROR"]``); ``between`` takes
  ``low,high`` (inclusive). Fields are named in camelCase or snake_case; a dot reaches
  into a nested object (``finalState.ExitCode``).
- Values: ``true``/``false`` are booleans, ``none``/``null`` is null, a number is a number,
  anything else a string. Times are ISO 8601 strings, which compare in time order.
- ``search=words`` keeps records whose text holds every word (case-insensitive);
  ``exactsearch=phrase`` keeps those holding the phrase as written.
- ``skip`` (default 0) and ``limit`` (default 100) page the matches.

The reply is ``{"_metadata": {total_count, records_skipped, record_limit,
count_returned}, "search": [...]}``, as Abaco answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from jobs.errors import ValidationError
from jobs.models import to_snake

KINDS = ("actors", "executions", "workers", "logs")
PAGING = frozenset({"skip", "limit", "search", "exactsearch", "x-nonce"})
OPERATORS = ("eq", "neq", "lt", "lte", "gt", "gte", "in", "nin", "like", "nlike", "between")
DEFAULT_LIMIT = 100
MAX_PATTERN = 256
_MISSING = object()


@dataclass
class Query:
    """A parsed search: the field conditions, the text conditions, and the page."""

    conditions: list[tuple[list[str], str, Any]] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    phrase: str = ""
    skip: int = 0
    limit: int = DEFAULT_LIMIT

    def matches(self, record: Mapping[str, Any]) -> bool:
        for path, op, value in self.conditions:
            if not _holds(_lookup(record, path), op, value):
                return False
        if self.words or self.phrase:
            text = json.dumps(record, default=str)
            lower = text.lower()
            if any(word not in lower for word in self.words) or self.phrase not in text:
                return False
        return True

    def page(self, records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Filter ``records`` and cut the page, counting every match."""
        found = [dict(r) for r in records if self.matches(r)]
        chosen = found[self.skip:self.skip + self.limit]
        return {"_metadata": {"total_count": len(found), "records_skipped": self.skip,
                              "record_limit": self.limit, "count_returned": len(chosen)},
                "search": chosen}


def parse_query(args: Mapping[str, str], skip: int, limit: int) -> Query:
    """The query parameters of a search; a 400 naming the parameter when one is wrong."""
    query = Query(skip=skip, limit=limit)
    for name, raw in args.items():
        if name in PAGING:
            continue
        head, dot, op = name.rpartition(".")
        if not dot or op not in OPERATORS:
            head, op = name, "eq"
        path = [to_snake(part) if i == 0 else part for i, part in enumerate(head.split("."))]
        if not all(path):
            raise ValidationError(name, "is not a field to search on")
        query.conditions.append((path, op, _value(name, op, raw)))
    query.words = [w.lower() for w in args.get("search", "").split() if w]
    query.phrase = args.get("exactsearch", "")
    return query


def _value(name: str, op: str, raw: str) -> Any:
    if op in ("in", "nin"):
        try:
            items = json.loads(raw.replace("'", '"'))
        except (ValueError, RecursionError):
            raise ValidationError(name, 'must be a JSON list, like ["READY","ERROR"]') from None
        if not isinstance(items, list):
            raise ValidationError(name, 'must be a JSON list, like ["READY","ERROR"]')
        return [_scalar(item) if isinstance(item, str) else item for item in items]
    if op == "between":
        low, comma, high = raw.partition(",")
        if not comma:
            raise ValidationError(name, "must be two values: low,high")
        return _scalar(low.strip()), _scalar(high.strip())
    if op in ("like", "nlike"):
        if len(raw) > MAX_PATTERN:
            raise ValidationError(name, f"must be at most {MAX_PATTERN} characters")
        try:  # RE2: linear time whatever the pattern (no catastrophic backtracking)
            return re2.compile(raw)
        except re2.error as exc:
            raise ValidationError(name, f"is not a regular expression: {exc}") from None
    return _scalar(raw)


def _scalar(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        number = float(raw)
    except ValueError:
        return raw
    return int(number) if number.is_integer() and "." not in raw and "e" not in lowered \
        else number


def _lookup(record: Mapping[str, Any], path: list[str]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(actual: Any, wanted: Any, test: Callable[[Any, Any], bool]) -> bool:
    if actual is _MISSING or actual is None or wanted is None:
        return False
    if isinstance(actual, bool) != isinstance(wanted, bool):
        return False
    try:
        return bool(test(actual, wanted))
    except TypeError:  # a number against a string: no match, not an error
        return False


def _equal(actual: Any, wanted: Any) -> bool:
    if actual is _MISSING:
        return wanted is None
    if isinstance(wanted, str) and not isinstance(actual, str):
        return str(actual) == wanted
    return bool(actual == wanted)


def _holds(actual: Any, op: str, wanted: Any) -> bool:
    if op == "eq":
        return _equal(actual, wanted)
    if op == "neq":
        return not _equal(actual, wanted)
    if op == "in":
        return any(_equal(actual, item) for item in wanted)
    if op == "nin":
        return not any(_equal(actual, item) for item in wanted)
    if op in ("like", "nlike"):
        found = isinstance(actual, str) and wanted.search(actual) is not None
        return found if op == "like" else not found
    if op == "between":
        low, high = wanted
        return _compare(actual, low, lambda a, w: a >= w) and \
            _compare(actual, high, lambda a, w: a <= w)
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "lt": lambda a, w: a < w, "lte": lambda a, w: a <= w,
        "gt": lambda a, w: a > w, "gte": lambda a, w: a >= w}
    return _compare(actual, wanted, tests[op])


def split_for_logs(query: Query) -> tuple[Query, Query]:
    """A logs search in two steps: the conditions on execution fields (checked on the
    records, cheaply) and the rest (on the fetched logs)."""
    on_record = Query(conditions=[c for c in query.conditions if c[0][0] != "logs"])
    on_logs = Query(conditions=[c for c in query.conditions if c[0][0] == "logs"],
                    words=query.words, phrase=query.phrase, skip=query.skip,
                    limit=query.limit)
    return on_record, on_logs
