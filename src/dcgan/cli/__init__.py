"""The `dcgan` command: thin. Each sub-command module parses its flags, builds the config and calls the library.

A sub-command module exposes `register(subparsers)`, which adds its parser and sets `func` to a function that
takes the parsed arguments and returns an exit code. Errors a user can cause (`DcganError`) end in one sentence
on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from dcgan.errors import DcganError

#: Sub-command modules under dcgan.cli, in the order `dcgan --help` lists them.
COMMAND_MODULES = [
    "train",
    "sample",
    "latent",
    "inspection",
    "evaluate",
    "extractor",
    "probe",
    "dedup",
    "web",
    "export",
    "tune",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcgan",
        description="Train, sample, measure and take apart DCGANs (Radford, Metz & Chintala, 2015).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"dcgan.cli.{name}").register(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    try:
        return int(args.func(args) or 0)
    except DcganError as exc:
        code = getattr(exc, "signum", None)
        print(f"{'' if code else 'error: '}{exc}", file=sys.stderr)
        return 128 + code if code else 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
