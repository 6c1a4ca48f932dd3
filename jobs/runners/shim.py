"""The prewarm shim: what a prewarmed container runs until its message arrives.

A prewarmed container is created and started before its message, so the container
start (100-200 ms) is off the message path. Its entrypoint is a static busybox
bind-mounted read-only at ``MOUNT``, running ``shim.sh`` with the image's own
entrypoint and command as arguments. The shim reads the execution's environment
from its stdin (a shell script of ``export`` lines, written by the worker through
an attach held since before the start), then ``exec``s the image's command: the
actor's process replaces the shim, as PID 1, with the image untouched.

The script ends with a go line; a delivery cut short (the worker died mid-write,
or the attach closed without one) leaves it unset, and the shim exits with
``UNDELIVERED`` without running the actor; one cut inside a quoted value is a
syntax error, on which the shell exits (``SYNTAX_ERROR``) before the go line
too. Either way nothing but ``export`` ran. A command without a slash is looked
up in ``$PATH`` by the shim itself, since busybox would otherwise run its own
applet of the same name.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from pathlib import Path

MOUNT = "/.abaco-shim"
UNDELIVERED = 199
UNDELIVERED_MESSAGE = "abaco: the execution's environment was not delivered; the actor did not run"
CANNOT_START = 127  # with NOT_STARTED and the reason as the only output
NOT_STARTED = "abaco: could not start the container: "
SYNTAX_ERROR = 2  # with "<shim>: /dev/stdin: line N: syntax error: ..." as the only output
_CUT_SHORT = re.compile(rb"[^\n:]*: /dev/stdin: line \d+: syntax error: [^\n]*")


def start_failure(exit_code: int | None, output: bytes) -> str | None:
    """Why the image's command could not be started, as the shim said (its command
    missing or not executable, as a plain start refuses it); None when it started."""
    text = output.strip().decode("utf-8", "replace")
    if exit_code != CANNOT_START or not text.startswith(NOT_STARTED) or "\n" in text:
        return None
    return text[len("abaco: "):]


def never_ran(exit_code: int | None, output: bytes) -> bool:
    """Did a prewarmed container end in its shim, before the image's command? Only the
    shim's own exits, with only the shim's own words, say so."""
    text = output.strip()
    if exit_code == UNDELIVERED:
        return text == UNDELIVERED_MESSAGE.encode()
    return exit_code == SYNTAX_ERROR and bool(_CUT_SHORT.fullmatch(text))
ENTRYPOINT = [f"{MOUNT}/busybox", "sh", f"{MOUNT}/shim.sh"]

# Variables busybox's shell sets and exports itself: dropped again before the exec
# unless the image or the execution sets them, so the actor sees the environment a
# plain run would.
SHELL_ADDED = ("SHLVL", "PWD", "OLDPWD")

_GO = "_abaco_shim_go"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

SCRIPT = f"""\
# The abaco prewarm shim (see jobs/runners/shim.py): the execution's environment
# arrives on stdin, then the image's own command replaces this shell.
. /dev/stdin
if [ "${_GO}" != 1 ]; then
  echo "{UNDELIVERED_MESSAGE}" >&2
  exit {UNDELIVERED}
fi
unset {_GO}
case $1 in
*/*) _abaco_shim_p=$1 ;;
*) _abaco_shim_p=
   _abaco_shim_ifs=$IFS
   IFS=:
   for _abaco_shim_d in $PATH; do
     if [ -f "${{_abaco_shim_d:-.}}/$1" ] && [ -x "${{_abaco_shim_d:-.}}/$1" ]; then
       _abaco_shim_p=${{_abaco_shim_d:-.}}/$1
       break
     fi
   done
   IFS=$_abaco_shim_ifs
   if [ -z "$_abaco_shim_p" ]; then
     echo "{NOT_STARTED}exec: \\"$1\\": executable file not found in \\$PATH" >&2
     exit {CANNOT_START}
   fi ;;
esac
if [ ! -f "$_abaco_shim_p" ] || [ ! -x "$_abaco_shim_p" ]; then
  echo "{NOT_STARTED}exec: \\"$_abaco_shim_p\\": not an executable file" >&2
  exit {CANNOT_START}
fi
shift
exec "$_abaco_shim_p" "$@" </dev/null
"""


def shell_quote(value: str) -> str:
    """Single quotes keep every byte literal; a quote is closed, escaped and reopened."""
    return "'" + value.replace("'", "'\\''") + "'"


def env_script(env: dict[str, str], image_env: dict[str, str]) -> bytes | None:
    """The delivery: one ``export`` per variable; what the shell set itself put back as
    the image had it (or dropped); then the go line. None when a name cannot be a shell
    variable (Docker allows more): such a run is started the plain way."""
    if any(not _NAME.fullmatch(name) or name.startswith("_abaco_shim_") for name in env):
        return None
    lines = [f"export {name}={shell_quote(value)}\n" for name, value in env.items()]
    for name in SHELL_ADDED:
        if name in env:
            continue
        if name in image_env:
            lines.append(f"export {name}={shell_quote(image_env[name])}\n")
        else:
            lines.append(f"unset {name}\n")
    lines.append(f"{_GO}=1\n")
    try:
        return "".join(lines).encode("utf-8")
    except UnicodeEncodeError:
        return None


def find_busybox(configured: str) -> Path | None:
    """The static busybox to mount: the configured path, else the one on PATH."""
    candidates = [configured] if configured else [shutil.which("busybox") or "",
                                                  "/bin/busybox", "/usr/bin/busybox"]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if path.is_file() and is_static_elf(path):
            return path
    return None


def is_static_elf(path: Path) -> bool:
    """An ELF executable without a program interpreter runs in any image, even one
    with no C library (``FROM scratch``)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False  # 64-bit ELF only
            endian = "<" if header[5] == 1 else ">"
            phoff, = struct.unpack_from(endian + "Q", header, 32)
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    kinds = [struct.unpack_from(endian + "I", table, i * phentsize)[0] for i in range(phnum)]
    return 3 not in kinds  # PT_INTERP


def install(directory: Path, busybox: Path) -> None:
    """Put busybox and the script in ``directory`` (readable by every actor's user).
    A file is replaced only when it differs, and atomically, so a container starting
    meanwhile sees a whole file."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    _put(directory / "busybox", busybox.read_bytes(), 0o755)
    _put(directory / "shim.sh", SCRIPT.encode(), 0o644)


def _put(target: Path, content: bytes, mode: int) -> None:
    try:
        if target.read_bytes() == content:
            return
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    tmp.write_bytes(content)
    os.chmod(tmp, mode)
    os.replace(tmp, target)
