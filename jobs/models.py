"""Actor and execution records: validation of user input and the stored shape.

Records are plain dicts with snake_case keys; the API renames them on the way
out. Validation errors name the field exactly as the user may have spelled it
in camelCase, since that is what Abaco clients send.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from jobs.cron import parse_schedule
from jobs.errors import ValidationError
from jobs.status import FINAL_EXECUTION

FINAL_EXECUTION_STATUSES = tuple(sorted(str(s) for s in FINAL_EXECUTION))

MAX_INT = 2**53  # what JSON clients and Redis counters handle exactly
MAX_ENV_VARS = 256
MAX_ENV_VALUE = 64 * 1024          # one variable: Linux takes at most 128 KiB per string
MAX_ENV_TOTAL = 256 * 1024         # all of them: they share the 2 MiB argument space
# Docker's reference grammar: [registry[:port]/]path[:tag][@sha256:digest], path lowercase.
# A first component with a dot or a colon names a registry (Docker's rule).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_FIRST = r"[a-z0-9]+(?:(?:_|__|-+)[a-z0-9]+)*"
_REGISTRY = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*(?::[0-9]{1,5})?"
_TAIL = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"


def image_pattern(registries: tuple[str, ...] | None = None) -> str:
    """Image references, naming only ``registries`` (None: any registry)."""
    host = _REGISTRY if registries is None else "|".join(re.escape(r) for r in registries)
    path = rf"(?:{_FIRST}(?:/{_COMPONENT})+|{_COMPONENT})"
    registry = rf"(?:(?:{host})/{_COMPONENT}(?:/{_COMPONENT})*)" if host else ""
    return rf"(?:{registry}|{path}){_TAIL}" if registry else rf"{path}{_TAIL}"


def image_registry(image: str) -> str | None:
    """The registry an image reference names, if any (Docker's rule)."""
    first, slash, _rest = image.partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") else None


IMAGE_REF = re.compile(image_pattern())
MAX_MEMORY_MIN = 6 * 1024 * 1024    # Docker refuses less
MAX_CPUS_MIN = 10_000_000           # 0.01 CPU, Docker's least
MAX_SECONDS = 366 * 24 * 3600       # a run-time or expiry beyond a year is a mistake
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,255}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL_IN_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])([A-Z])")
_MEM_LIMIT = re.compile(r"^\d+[bkmgBKMG]?$")


@functools.lru_cache(maxsize=4096)
def to_snake(name: str) -> str:
    """``defaultEnvironment`` -> ``default_environment``; snake names pass through."""
    return _CAMEL_BOUNDARY.sub(r"_\1", name).lower()


@functools.lru_cache(maxsize=4096)
def to_camel(name: str) -> str:
    """``default_environment`` -> ``defaultEnvironment``; ``_links`` keeps its name."""
    if name.startswith("_"):
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValidationError(to_camel(name), f"must be a boolean, got {value!r}")


def as_int(name: str, value: Any, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An integer (JSON's 3.0 counts), or a string of one (form fields); never a bool,
    and never a fraction, which would be silently truncated."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool | float) or not isinstance(value, int | str):
        raise ValidationError(to_camel(name), f"must be an integer, got {value!r}")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValidationError(to_camel(name), f"must be an integer, got {value!r}") from None
    if number > maximum or number < -MAX_INT:
        raise ValidationError(to_camel(name), f"must be at most {maximum}")
    if number < minimum:
        raise ValidationError(to_camel(name), f"must be at least {minimum}")
    return number


def _as_str(name: str, value: Any, max_len: int = 4096, lines: bool = False) -> str:
    """A bounded string without control characters (``lines`` allows tab and newline)."""
    if not isinstance(value, str):
        raise ValidationError(to_camel(name), f"must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise ValidationError(to_camel(name), f"must be at most {max_len} characters")
    if not value.isascii() and _SURROGATE.search(value):
        raise ValidationError(to_camel(name), "must be valid Unicode (a lone surrogate)")
    bad = _CONTROL_IN_LINES if lines else _CONTROL
    found = bad.search(value)
    if found:
        raise ValidationError(to_camel(name), f"must not contain the control character "
                                              f"{found.group(0)!r}")
    return value


def no_nul(name: str, value: str) -> str:
    """A NUL can never reach a process's environment: refused here, not at start."""
    if "\x00" in value:
        raise ValidationError(name, "must not contain a NUL character")
    return value


def _as_image(name: str, value: Any) -> str:
    image = _as_str(name, value, 512).strip()
    if not IMAGE_REF.fullmatch(image):
        raise ValidationError(to_camel(name), "must be a Docker image reference (letters, "
                                              "digits and . _ / : @ + -)")
    return image


def _as_env(name: str, value: Any) -> dict[str, str]:
    field = to_camel(name)
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be an object of names to string values")
    if len(value) > MAX_ENV_VARS:
        raise ValidationError(field, f"must have at most {MAX_ENV_VARS} variables")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise ValidationError(field, f"{str(key)[:64]!r} is not a valid variable name "
                                         "(letters, digits, _; at most 256)")
        text = _env_value(f"{field}.{key}", item)
        if len(text.encode("utf-8", "replace")) > MAX_ENV_VALUE:
            raise ValidationError(f"{field}.{key}", f"must be at most {MAX_ENV_VALUE} bytes")
        env[key] = _as_str(f"{name}.{key}", text, MAX_ENV_VALUE, lines=True)
    if sum(len(k) + len(v.encode("utf-8", "replace")) + 2 for k, v in env.items()) \
            > MAX_ENV_TOTAL:
        raise ValidationError(field, f"must total at most {MAX_ENV_TOTAL} bytes")
    return env


def _env_value(field: str, item: Any) -> str:
    """A string, or a number or boolean written as one; None is empty."""
    if item is None:
        return ""
    if isinstance(item, float) and not math.isfinite(item):
        raise ValidationError(field, "must be a finite number or a string")
    if not isinstance(item, str | int | float | bool):
        raise ValidationError(field, "must be a string")
    return no_nul(field, item if isinstance(item, str) else json.dumps(item))


def _as_str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(to_camel(name), "must be a list of strings")
    if len(value) > 64:
        raise ValidationError(to_camel(name), "must have at most 64 items")
    return [_as_str(name, item, 256) for item in value]


def _as_mem_limit(name: str, value: Any) -> str:
    text = _as_str(name, value, 32)
    if not _MEM_LIMIT.fullmatch(text):
        raise ValidationError(to_camel(name), f"{text!r} is not a size like '512m'")
    if (mem_bytes(text) or 0) < MAX_MEMORY_MIN:
        raise ValidationError(to_camel(name), f"{text!r} is below Docker's least, 6m")
    return text.lower()


def _as_mounts(name: str, value: Any) -> list[dict[str, str]]:
    """``[{hostPath, containerPath, mode: ro|rw}]`` with absolute, plain paths; which host
    paths are allowed is the service's check (settings)."""
    if not isinstance(value, list) or len(value) > 16:
        raise ValidationError(to_camel(name), "must be a list of at most 16 mounts")
    mounts = []
    for mount in value:
        fields = normalize_keys(mount) if isinstance(mount, Mapping) else {}
        if not {"host_path", "container_path"} <= set(fields) or \
                set(fields) - {"host_path", "container_path", "mode", "format"}:
            raise ValidationError(to_camel(name), "each mount is {hostPath, containerPath, "
                                                  "mode (ro or rw)}")
        mode = fields.get("mode", fields.get("format", "ro"))
        if mode not in ("ro", "rw"):
            raise ValidationError(f"{to_camel(name)}.mode", f"{mode!r} is not ro or rw")
        inside = _mount_path(name, "containerPath", fields["container_path"])
        if inside == "/" or inside.split("/")[1] in _SYSTEM_DIRS or inside.startswith("/_abaco"):
            raise ValidationError(f"{to_camel(name)}.containerPath",
                                  f"{inside!r} would hide part of the system or the platform's "
                                  "files")
        mounts.append({"host_path": _mount_path(name, "hostPath", fields["host_path"]),
                       "container_path": inside, "mode": mode})
    return mounts


_SYSTEM_DIRS = frozenset({"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc",
                          "proc", "sys", "dev", "run", "boot", "var"})


def _mount_path(name: str, part: str, value: Any) -> str:
    path = _as_str(f"{name}.{part}", value, 1024)
    if not path.startswith("/") or any(ch in path for ch in ":,") or \
            "/../" in path + "/" or "/./" in path + "/":
        raise ValidationError(f"{to_camel(name)}.{part}",
                              f"{path!r} must be an absolute path without ':', ',' or dots")
    return path.rstrip("/") or "/"


_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _as_queue(name: str, value: Any) -> str:
    """A queue's name; which queues exist is the ``queues`` setting's (checked by the
    service)."""
    text = _as_str(name, value, 64)
    if not _QUEUE.fullmatch(text):
        raise ValidationError(name, f"{text!r} is not a queue name (letters, digits, _ and -)")
    return text


def _as_schedule(name: str, value: Any) -> str:
    text = _as_str(name, value, 256).strip()
    parse_schedule(text, datetime.now(UTC))  # a 400 naming what is wrong
    return text


def _optional(convert: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def wrapped(name: str, value: Any) -> Any:
        return None if value is None or value == "" else convert(name, value)

    return wrapped


# field -> (converter, default); the user-settable part of an actor.
ACTOR_INPUT: dict[str, tuple[Callable[[str, Any], Any], Any]] = {
    "image": (_as_image, None),
    "name": (_optional(lambda n, v: _as_str(n, v, 256)), None),
    "description": (lambda n, v: _as_str(n, v, 4096, lines=True) if v is not None else "", ""),
    "stateless": (as_bool, True),
    "privileged": (as_bool, False),
    "default_environment": (_as_env, {}),
    "use_container_uid": (as_bool, False),
    "max_workers": (_optional(lambda n, v: as_int(n, v, 0, 10_000)), None),
    "min_workers": (lambda n, v: as_int(n, v, 0, 10_000), 0),
    "mem_limit": (_optional(_as_mem_limit), None),
    "max_cpus": (_optional(lambda n, v: as_int(n, v, MAX_CPUS_MIN)), None),
    "max_run_time": (_optional(lambda n, v: as_int(n, v, 1, MAX_SECONDS)), None),
    "hints": (_as_str_list, []),
    "link": (lambda n, v: _as_str(n, v, 256) if v else "", ""),
    "webhook": (lambda n, v: _as_str(n, v, 2048) if v else "", ""),
    "token": (as_bool, True),
    "log_ex": (_optional(lambda n, v: as_int(n, v, 1, MAX_SECONDS)), None),
    "cron_schedule": (_optional(lambda n, v: _as_schedule(n, v)), None),
    "cron_on": (as_bool, False),
    "mounts": (_as_mounts, []),
    "queue": (lambda n, v: _as_queue(n, v) if v not in (None, "") else "default", "default"),
}
# Accepted for Abaco compatibility but computed by the platform.
IGNORED_INPUT = {"id", "owner", "status", "status_message", "create_time", "last_update_time",
                  "revision", "cron_next_ex", "tenant", "_links", "links", "force",
                  "run_as_executor", "gid", "uid", "tasdir", "api_server", "db_id"}


def normalize_keys(body: Mapping[str, Any]) -> dict[str, Any]:
    """Accept camelCase or snake_case request fields; return snake_case."""
    return {to_snake(key): value for key, value in body.items()}


def validate_actor_input(
    body: Mapping[str, Any], existing: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check a POST/PUT body and return the user fields of the actor, defaults filled in.

    On update (``existing`` given) fields absent from the body keep their value.
    """
    data = normalize_keys(body)
    unknown = sorted(set(data) - set(ACTOR_INPUT) - IGNORED_INPUT)
    if unknown:
        raise ValidationError(to_camel(unknown[0]), "is not an actor field")
    result: dict[str, Any] = {}
    for name, (convert, default) in ACTOR_INPUT.items():
        if name in data:
            result[name] = convert(name, data[name])
        elif existing is not None and name in existing:
            result[name] = existing[name]
        else:
            result[name] = default
    if not result["image"]:
        raise ValidationError("image", "is required")
    if result["cron_on"] and not result["cron_schedule"]:
        raise ValidationError("cronOn", "needs a cronSchedule")
    if not result["stateless"] and (result["max_workers"] or 1) > 1:
        raise ValidationError("maxWorkers", "a stateful actor has exactly one worker")
    return result


SUMMARY_FIELDS = ("id", "status", "start_time", "finish_time", "message_received_time")


def execution_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """The short form used in execution lists."""
    return {key: record.get(key) for key in SUMMARY_FIELDS}


_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def mem_bytes(limit: str | None) -> int | None:
    """``'512m'`` -> bytes (Docker's units: powers of 1024); None stays None."""
    if not limit:
        return None
    text = str(limit).strip().lower()
    unit = text[-1] if text[-1] in _UNITS else ""
    return int(text[: len(text) - len(unit)]) * _UNITS[unit]
