"""The ``abaco`` command: up, down, status, and the long-running processes."""

from __future__ import annotations

import argparse
import sys

from jobs.errors import AbacoError
from jobs.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="abaco", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack (reuses what already runs)")
    sub.add_parser("down", help="stop what 'abaco up' started")
    sub.add_parser("status", help="say what runs where")
    sub.add_parser("scheduler", help="run the scheduler in the foreground")
    worker = sub.add_parser("worker", help="run one worker in the foreground")
    worker.add_argument("--tenant", required=True)
    worker.add_argument("--actor", required=True)
    worker.add_argument("--worker-id", required=True)
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except AbacoError as exc:
        print(f"abaco {args.command}: {exc.message}", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    from launcher import stack

    settings = load_settings()
    if args.command == "up":
        stack.up(settings)
    elif args.command == "down":
        stack.down(settings)
    elif args.command == "status":
        print("\n".join(stack.status(settings)))
    elif args.command == "scheduler":
        from scheduler.loop import main as scheduler_main

        scheduler_main()
    elif args.command == "worker":
        from jobs.worker import main as worker_main

        worker_main(["--tenant", args.tenant, "--actor", args.actor,
                     "--worker-id", args.worker_id])
    return 0


if __name__ == "__main__":
    sys.exit(main())
