"""`cio-mavera webhooks serve|work`: the reporting-webhook receiver and the queue worker."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from ..connect import connect
from ..customerio.webhooks import SANDBOX_WEBHOOK_SECRET, webhook_secret_for
from ..errors import ConfigError
from ..jobs.retention.watch import ResearchLoop
from ..receiver.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_S, WEBHOOK_PATH, create_app
from ..receiver.queues import open_queue
from ..receiver.worker import default_consumer, run_worker
from ..settings import Secret, Settings, load_settings

log = logging.getLogger("cio_mavera.receiver")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `webhooks serve` and `webhooks work` to the CLI."""
    parser = subparsers.add_parser("webhooks", help="receive Customer.io reporting webhooks and process them")
    sub = parser.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)

    serve = sub.add_parser("serve", help="run the signed-webhook receiver (verifies, dedups, enqueues)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    serve.add_argument("--queue", metavar="URL", default=None,
                       help="sqlite:///path or redis://host:port/db (default: CIO_MAVERA_REDIS_URL if set, "
                            "else sqlite under <data dir>/queue/webhooks.sqlite3)")
    serve.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S, metavar="S",
                       help=f"accepted clock skew of X-CIO-Timestamp in seconds (default {DEFAULT_TOLERANCE_S})")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                       help=f"reject larger bodies with 413 (default {DEFAULT_MAX_BODY_BYTES})")
    serve.add_argument("--insecure-skip-verify", action="store_true",
                       help="accept unsigned requests (DANGEROUS: anyone reaching the port can inject events)")
    serve.add_argument("--access-log", action="store_true", help="log every request (slower)")
    serve.set_defaults(handler=serve_command)

    work = sub.add_parser("work", help="drain the queue into the parquet event log under <data dir>/events/")
    work.add_argument("--queue", metavar="URL", default=None, help="same as for `serve`")
    work.add_argument("--consumer", default=None, help="consumer name (default: hostname-pid)")
    work.add_argument("--batch", type=int, default=500, help="events per claim (default 500)")
    work.add_argument("--once", action="store_true", help="drain what is queued now, then exit")
    work.add_argument("--research", action=argparse.BooleanOptionalAction, default=None,
                      help="evaluate retention triggers and ask Mave to research them (default: on when the "
                           "Customer.io and Mavera keys are set, off in sandbox mode)")
    work.add_argument("--max-credits", type=int, default=600, metavar="N",
                      help="the most Mavera credits this worker may spend on research (default 600)")
    work.add_argument("--research-interval", type=float, default=60.0, metavar="S",
                      help="evaluate triggers at most every S seconds, when new events arrived (default 60)")
    work.add_argument("--cooldown-hours", type=float, default=24.0, metavar="H",
                      help="never research the same trigger again within H hours (default 24)")
    work.set_defaults(handler=work_command)


def receiver_secret(settings: Settings, insecure_skip_verify: bool) -> Secret | None:
    """The key to verify with: required in live mode, the public sandbox key in sandbox mode."""
    return None if insecure_skip_verify else webhook_secret_for(settings)


def serve_command(args: argparse.Namespace) -> int:
    """Run the receiver under uvicorn until interrupted."""
    settings = load_settings()
    secret = receiver_secret(settings, args.insecure_skip_verify)
    if args.insecure_skip_verify:
        print("WARNING: --insecure-skip-verify: webhook signatures are NOT checked; anyone who can reach "
              f"{args.host}:{args.port} can inject events. Never use this in production.", file=sys.stderr)
    elif settings.webhook_secret is None:
        print("sandbox mode: CIO_WEBHOOK_SECRET is not set, verifying with the public sandbox key "
              f"{SANDBOX_WEBHOOK_SECRET!r}", file=sys.stderr)
    queue = open_queue(args.queue, data_dir=settings.data_dir, redis_url=settings.redis_url)
    try:
        app = create_app(queue, secret, tolerance_s=args.tolerance, max_body_bytes=args.max_body_bytes,
                         verify=not args.insecure_skip_verify)
        print(f"receiving on http://{args.host}:{args.port}{WEBHOOK_PATH} -> {queue.describe()}",
              file=sys.stderr, flush=True)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                    access_log=args.access_log, lifespan="on", timeout_graceful_shutdown=10)
    finally:
        queue.close()
    return 0


def work_command(args: argparse.Namespace) -> int:
    """Drain the queue into the event log (forever, or once with --once)."""
    settings = load_settings()
    if args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    research = _research_loop(args, settings)
    queue = open_queue(args.queue, data_dir=settings.data_dir, redis_url=settings.redis_url)
    try:
        total = run_worker(queue, settings.data_dir / "events", consumer=args.consumer or default_consumer(),
                           batch=args.batch, once=args.once, after_batch=research)
    finally:
        queue.close()
        if research is not None:
            research.close()
            print(f"research: {research.evaluations} evaluation(s), {research.budget.spent} credits spent",
                  file=sys.stderr)
    print(f"wrote {total} new events to {settings.data_dir / 'events'}", file=sys.stderr)
    return 0


def _research_loop(args: argparse.Namespace, settings: Settings) -> ResearchLoop | None:
    """The trigger/research hook for the worker, or None when research is off."""
    enabled = args.research
    if enabled is None:
        enabled = settings.has("customerio") and settings.has("mavera") and settings.mode != "sandbox"
    if not enabled:
        return None
    if args.max_credits < 0 or args.research_interval < 0 or args.cooldown_hours < 0:
        raise ConfigError("--max-credits, --research-interval and --cooldown-hours must be >= 0")
    conn = connect("customerio", "mavera", settings=settings)
    print(f"research on: triggers every {args.research_interval:g} s at most, budget {args.max_credits} credits, "
          f"cooldown {args.cooldown_hours:g} h ({conn.describe()})", file=sys.stderr)
    return ResearchLoop(conn, settings.data_dir / "events", max_credits=args.max_credits,
                        interval_s=args.research_interval, cooldown_hours=args.cooldown_hours)
