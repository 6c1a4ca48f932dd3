"""The local embedded stack: ``abaco up``, ``abaco down``, ``abaco status``.

Starts, in order, Redis (AOF on), an S3 endpoint that keeps its data on disk and
refuses requests not signed with its generated key (pys3local), OpenBao (raft
storage, initialised and unsealed here, keys kept 0600 under the data dir), a
Docker engine when none answers, then the API
(gunicorn, gevent workers) and the scheduler. A component that already answers
on its address is reused; a port held by something else is a one-line error
naming the setting to change. Started processes leave pid files under
``{data_dir}/run`` and logs under ``{data_dir}/logs``; ``abaco down`` stops
exactly those. A component we started that died is started again: what it left
behind (the live members of its session, such as gunicorn workers orphaned by a
killed master) is killed first and its port awaited with a deadline; one that
lives but stops answering is stopped and started again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from jobs.settings import Settings
from launcher.components import (  # noqa: F401 - re-exported for callers of launcher.stack
    ApiComponent,
    Component,
    DockerComponent,
    RedisComponent,
    S3Component,
    SchedulerComponent,
    VaultComponent,
    over_local_socket,
)
from launcher.processes import (  # noqa: F401 - re-exported for callers of launcher.stack
    PROGRAM_MARKERS,
    Paths,
    StackError,
    _alive,
    _terminate,
    pid_alive,
    port_open,
    recorded_pid,
    session_members,
    stop_processes,
    wait_for,
    with_local_secrets,
)

COMPONENTS: list[type[Component]] = [RedisComponent, S3Component, VaultComponent,
                                     DockerComponent, ApiComponent, SchedulerComponent]


def up(settings: Settings, say: Callable[[str], None] = print) -> Settings:
    """Bring up every component, reporting progress; return the settings children got."""
    paths = Paths(settings.data_dir)
    paths.make()
    settings = with_local_secrets(settings)
    for number, kind in enumerate(COMPONENTS, start=1):
        if kind is ApiComponent:
            settings = with_local_secrets(settings)  # the vault token exists by now
            settings = over_local_socket(settings, paths)  # for the API and what it starts
        component = kind(settings, paths)
        say(f"[{number}/{len(COMPONENTS)}] {component.name:<9} starting...")
        try:
            outcome = component.up()
        except StackError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure becomes one named line
            raise StackError(f"{component.name} could not start: {exc}") from exc
        say(f"[{number}/{len(COMPONENTS)}] {component.name:<9} {outcome}")
    say(f"abaco is up: {settings.api_url}/actors (logs in {paths.logs})")
    return settings


STOP_ORDER = ["scheduler", "api", "vault", "s3", "redis", "dockerd"]


def down(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Stop what ``up`` started: scheduler, workers, api, vault, s3, redis, dockerd."""
    paths = Paths(settings.data_dir)
    for name in STOP_ORDER:
        pid = pid_alive(paths, name)
        if pid is not None:
            grace = settings.drain_timeout_s + 10 if name == "scheduler" else 20.0
            _terminate(pid, name, say, grace)
        elif name != "dockerd" and (dead := recorded_pid(paths.run / f"{name}.pid")):
            # It died before us; what it forked may live on (orphaned gunicorn workers).
            leftovers = session_members(dead, PROGRAM_MARKERS.get(name, name))
            stop_processes(leftovers, grace_s=0)
            if leftovers:
                say(f"{name:<10} killed {len(leftovers)} leftover process(es) of pid {dead}")
        (paths.run / f"{name}.pid").unlink(missing_ok=True)
        if name == "scheduler":
            _stop_workers(paths, settings.drain_timeout_s + 10, say)


def _stop_workers(paths: Paths, grace_s: float, say: Callable[[str], None]) -> None:
    """SIGTERM the workers left behind and wait for them, before their services go."""
    pids = [pid for f in sorted((paths.run / "workers").glob("*.pid"))
            if (pid := pid_alive(paths, "worker", f)) is not None]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not any(_alive(pid) for pid in pids), grace_s, "workers")
    except StackError:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid_file in (paths.run / "workers").glob("*.pid"):
        pid_file.unlink(missing_ok=True)
    if pids:
        say(f"{'workers':<10} stopped {len(pids)}")


def status(settings: Settings) -> list[str]:
    """One line per component: running or not, where, and whether we started it."""
    paths = Paths(settings.data_dir)
    settings = with_local_secrets(settings)
    lines = []
    for kind in COMPONENTS:
        component = kind(settings, paths)
        try:
            running = component.answers()
        except StackError as exc:
            running, note = False, exc.message
        else:
            note = ""
        pid = pid_alive(paths, component.name)
        where = "{}:{}".format(*component.address) if component.address[1] else ""
        owner = f"pid {pid}" if pid else "not started by abaco"
        state = "running" if running else "down"
        lines.append(f"{component.name:<10} {state:<8} {where:<22} {owner} {note}".rstrip())
    workers = paths.run / "workers"
    files = list(workers.glob("*.pid")) if workers.exists() else []
    count = sum(1 for f in files if pid_alive(paths, "worker", f) is not None)
    lines.append(f"{'workers':<10} {count} local worker process(es) running")
    return lines
