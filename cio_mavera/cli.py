"""The `cio-mavera` command line: one sub-command module per area under `cio_mavera.commands`."""

from __future__ import annotations

import argparse
import logging
import sys

from .commands import batch, demo, pull, run, sandbox, webhooks
from .errors import CioMaveraError

# Each module registers its own sub-commands, listed in this order by --help.
COMMAND_MODULES = (demo, run, batch, pull, sandbox, webhooks)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="cio-mavera",
        description="Customer.io + Mavera research kit: pull data, run report jobs, serve webhooks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and retries")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except CioMaveraError as exc:
        print(f"cio-mavera: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cio-mavera: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
