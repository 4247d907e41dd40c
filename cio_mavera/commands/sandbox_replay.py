"""`cio-mavera sandbox replay-webhooks`: send the sandbox workspace's signed webhook stream to a receiver."""

from __future__ import annotations

import argparse
import json
import sys

from ..customerio.webhooks import SANDBOX_WEBHOOK_SECRET, webhook_secret_for
from ..sandbox.webhooks import replay, webhook_stream
from ..settings import load_settings


def register_replay(sandbox_subparsers: argparse._SubParsersAction) -> None:
    """Add `replay-webhooks` under the `sandbox` command (called by commands/sandbox.py)."""
    parser = sandbox_subparsers.add_parser(
        "replay-webhooks",
        help="POST the sandbox workspace's signed reporting-webhook stream to a receiver",
        description="Signs with CIO_WEBHOOK_SECRET, or the public sandbox key "
                    f"{SANDBOX_WEBHOOK_SECRET!r} when it is unset and the mode is sandbox. "
                    "Prints a JSON summary (sent, acknowledged, failed, by status).",
    )
    parser.add_argument("--url", required=True,
                        help="receiver endpoint, e.g. http://127.0.0.1:8787/webhooks/customerio")
    parser.add_argument("--seed", type=int, default=None, help="workspace seed (default CIO_MAVERA_SANDBOX_SEED or 7)")
    parser.add_argument("--customers", type=int, default=None,
                        help="workspace size (default CIO_MAVERA_SANDBOX_CUSTOMERS or 5000)")
    parser.add_argument("--events", type=int, default=5000, help="requests to send (default 5000)")
    parser.add_argument("--rate", type=float, default=None, help="requests per second (default: no limit)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.set_defaults(handler=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    """Generate the stream, send it, print the summary; exit 1 when any request failed."""
    settings = load_settings()
    secret = webhook_secret_for(settings)
    seed = settings.sandbox_seed if args.seed is None else args.seed
    customers = settings.sandbox_customers if args.customers is None else args.customers
    events = webhook_stream(seed=seed, customers=customers, n_events=args.events)
    summary = replay(args.url, events, secret, rate=args.rate, concurrency=args.concurrency)
    summary.update(seed=seed, customers=customers)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0 if summary["failed"] == 0 else 1
