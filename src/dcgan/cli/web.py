"""`dcgan serve`: a local web page to explore a trained generator (samples, arithmetic, walks, filters, uploads)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dcgan.cli.common import positive_int


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
    p.add_argument("--no-ema", action="store_true", help="use the raw generator even if an EMA copy exists")
    p.add_argument("--benchmark", action="store_true", help="time the page's requests over local HTTP, print a table and exit")  # fmt: skip
    p.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from dcgan.web.explorer import Explorer
    from dcgan.web.server import create_app, is_local

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
    app = create_app(explorer, local_only=is_local(args.host))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
