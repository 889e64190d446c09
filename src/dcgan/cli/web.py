"""`dcgan serve`: a local web page to explore a trained generator (samples, arithmetic, walks, filters, uploads)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dcgan.cli.common import non_negative_int, positive_float, positive_int


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="a web page to explore a trained generator")
    p.add_argument("run", type=Path, metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    p.add_argument("--threads", type=positive_int, default=min(2, os.cpu_count() or 1), help="CPU threads for the model (default: up to 2)")  # fmt: skip
    p.add_argument("--workers", type=positive_int, help="requests that run the model at once (default: one per CPU core, 2 to 8)")  # fmt: skip
    p.add_argument("--queue", type=non_negative_int, default=32, help="requests that may wait for a worker; one more is answered 503 (default 32)")  # fmt: skip
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECONDS", help="time limit of a request, waiting included (default 30)")  # fmt: skip
    p.add_argument("--project-queue", type=non_negative_int, default=2, help="projections that may wait while one runs (default 2)")  # fmt: skip
    p.add_argument("--project-timeout", type=positive_float, default=120.0, metavar="SECONDS", help="time limit of a projection, waiting included; its optimisation stops there (default 120)")  # fmt: skip
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA copy exists")
    p.add_argument("--benchmark", action="store_true", help="time the page's requests over local HTTP, print a table and exit")  # fmt: skip
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from dcgan.web.explorer import Explorer
    from dcgan.web.limits import ServerLimits, default_workers
    from dcgan.web.server import create_app, is_local

    limits = ServerLimits(
        workers=args.workers or default_workers(), queue=args.queue, timeout_s=args.timeout,
        project_queue=args.project_queue, project_timeout_s=args.project_timeout,
    )  # fmt: skip
    torch.set_num_threads(args.threads)
    explorer = Explorer.from_checkpoint(args.run, ema=not args.no_ema)
    if args.benchmark:
        from dcgan.web.timing import measure, table

        print(
            f"{explorer.name} (step {explorer.step}), {args.threads} CPU thread(s); 5 timed calls after a warm-up, one projection:"
        )
        print(table(measure(explorer)))
        return 0
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Serving {explorer.name} (step {explorer.step}) at http://{host}:{args.port}/", flush=True)
    if is_local(args.host):
        print(f"Listening on {args.host} only: the page is reachable from this machine alone.", flush=True)
    else:
        print(
            f"warning: --host {args.host} makes the page reachable from other machines; it has no login, so anyone "
            "who can reach this address can use the model and this CPU.",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"Up to {limits.workers} requests at once and {limits.queue} waiting ({limits.timeout_s:g} s each), "
        f"one projection at a time and {limits.project_queue} waiting ({limits.project_timeout_s:g} s each); "
        "beyond that the server answers 503.",
        flush=True,
    )
    app = create_app(explorer, local_only=is_local(args.host), limits=limits)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
