"""`cio-mavera webhooks serve|work|backfill|dead-letters`: the reporting-webhook receiver, the queue
worker, the delivery-history backfill of the event log, and the signed bodies neither could use."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys

import uvicorn

from ..connect import connect
from ..customerio.values import to_unix
from ..errors import ConfigError
from ..eventlog.backfill import backfill_deliveries
from ..jobs.retention.watch import ResearchLoop
from ..receiver.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_S, WEBHOOK_PATH, create_app
from ..receiver.dead_letters import replay_dead_letters
from ..receiver.intake import event_log_dir, intake_mode, open_intake_queue, receiver_secret
from ..receiver.server import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_HEADER_BYTES,
    ConnectionLimits,
    default_max_connections,
    receiver_config,
)
from ..receiver.worker import default_consumer, run_worker
from ..settings import Settings, load_settings

log = logging.getLogger("cio_mavera.receiver")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `webhooks serve`, `webhooks work` and `webhooks dead-letters` to the CLI."""
    parser = subparsers.add_parser("webhooks", help="receive Customer.io reporting webhooks and process them")
    sub = parser.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)

    serve = sub.add_parser("serve", help="run the signed-webhook receiver (verifies, dedups, enqueues)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    serve.add_argument("--queue", metavar="URL", default=None,
                       help="sqlite:///path or redis://host:port/db (default: CIO_MAVERA_REDIS_URL if set, "
                            "else sqlite under <data dir>/queue/webhooks.sqlite3, <data dir>/sandbox/queue/ "
                            "in sandbox mode)")
    serve.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE_S, metavar="S",
                       help=f"accepted clock skew of X-CIO-Timestamp in seconds (default {DEFAULT_TOLERANCE_S})")
    serve.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
                       help=f"reject larger bodies with 413 (default {DEFAULT_MAX_BODY_BYTES})")
    serve.add_argument("--max-header-bytes", type=int, default=DEFAULT_MAX_HEADER_BYTES, metavar="N",
                       help=f"reject larger request headers with 431 (default {DEFAULT_MAX_HEADER_BYTES})")
    serve.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S, metavar="S",
                       help=f"close connections whose headers take longer (default {DEFAULT_HEADER_TIMEOUT_S:g})")
    serve.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S",
                       help=f"close connections whose body takes longer (default {DEFAULT_BODY_TIMEOUT_S:g})")
    serve.add_argument("--max-connections", type=int, default=None, metavar="N",
                       help=f"connections kept open at most (default {default_max_connections()}: 512 or "
                            "the open-file limit minus 64)")
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

    backfill = sub.add_parser("backfill", help="fill the event log with delivery history from Customer.io "
                              "deliveries exports (one per campaign and newsletter), for the days before the "
                              "receiver started")
    backfill.add_argument("--days", type=float, default=90.0, metavar="N",
                          help="days of history before --until (default 90; Customer.io exports at most 12 months)")
    backfill.add_argument("--until", default=None, metavar="TIME",
                          help="end of the period, ISO date/time or unix seconds (default: the earliest webhook in "
                               "the log, i.e. when the receiver started; now if the log is empty)")
    backfill.add_argument("--campaign", type=int, action="append", default=None, metavar="ID",
                          help="backfill this campaign (repeatable; default: every campaign and newsletter)")
    backfill.add_argument("--newsletter", type=int, action="append", default=None, metavar="ID",
                          help="backfill this newsletter (repeatable; with --campaign only, none)")
    backfill.set_defaults(handler=backfill_command)

    dead = sub.add_parser("dead-letters", help="list or replay signed bodies the receiver or worker could not use")
    dead_sub = dead.add_subparsers(dest="dead_letters_command", metavar="ACTION", required=True)
    listing = dead_sub.add_parser("list", help="print the dead letters waiting (key, when, stage, reason)")
    listing.add_argument("--queue", metavar="URL", default=None, help="same as for `serve`")
    listing.add_argument("--replayed", action="store_true", help="list those already replayed instead")
    listing.add_argument("--json", action="store_true", help="one JSON object per line, body included")
    listing.set_defaults(handler=dead_letters_list_command)
    replay = dead_sub.add_parser("replay", help="queue again the dead letters the parser now reads")
    replay.add_argument("--queue", metavar="URL", default=None, help="same as for `serve`")
    replay.add_argument("keys", nargs="*", metavar="KEY",
                        help="replay only these (a unique prefix of the key is enough; default: all)")
    replay.add_argument("--dry-run", action="store_true", help="report what would be replayed, change nothing")
    replay.set_defaults(handler=dead_letters_replay_command)


def _limits(args: argparse.Namespace) -> ConnectionLimits:
    try:
        return ConnectionLimits(
            max_header_bytes=args.max_header_bytes, header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            max_connections=args.max_connections if args.max_connections is not None else default_max_connections(),
        )
    except ValueError as exc:
        raise ConfigError(f"--max-header-bytes, --header-timeout, --body-timeout, --max-connections: {exc}") from None


def serve_command(args: argparse.Namespace) -> int:
    """Run the receiver under uvicorn, with connection limits, until interrupted."""
    settings = load_settings()
    secret = receiver_secret(settings, args.insecure_skip_verify)  # live without a secret stops here
    limits = _limits(args)
    mode = intake_mode(settings)
    if args.insecure_skip_verify:
        print("WARNING: --insecure-skip-verify: webhook signatures are NOT checked; anyone who can reach "
              f"{args.host}:{args.port} can inject events. Never use this in production.", file=sys.stderr)
    elif settings.webhook_secret is None:
        print("sandbox mode: CIO_WEBHOOK_SECRET is not set, verifying with the public sandbox key; "
              "events are kept apart under <data dir>/sandbox/", file=sys.stderr)
    queue = open_intake_queue(settings, args.queue)
    try:
        app = create_app(queue, secret, tolerance_s=args.tolerance, max_body_bytes=args.max_body_bytes,
                         verify=not args.insecure_skip_verify)
        print(f"receiving {mode} webhooks on http://{args.host}:{args.port}{WEBHOOK_PATH} -> {queue.describe()} "
              f"(headers <= {limits.max_header_bytes} B in {limits.header_timeout_s:g} s, body in "
              f"{limits.body_timeout_s:g} s, <= {limits.max_connections} connections)", file=sys.stderr, flush=True)
        config = receiver_config(app, host=args.host, port=args.port, limits=limits, access_log=args.access_log)
        uvicorn.Server(config).run()
    finally:
        queue.close()
    return 0


def work_command(args: argparse.Namespace) -> int:
    """Drain the queue into the event log (forever, or once with --once)."""
    settings = load_settings()
    if args.batch < 1:
        raise ConfigError("--batch must be at least 1")
    research = _research_loop(args, settings)
    queue = open_intake_queue(settings, args.queue)
    events = event_log_dir(settings)
    try:
        total = run_worker(queue, events, consumer=args.consumer or default_consumer(),
                           batch=args.batch, once=args.once, after_batch=research)
        dead = queue.dead_count()
    finally:
        queue.close()
        if research is not None:
            research.close()
            print(f"research: {research.evaluations} evaluation(s), {research.budget.spent} credits spent",
                  file=sys.stderr)
    print(f"wrote {total} new events to {events}", file=sys.stderr)
    if dead:
        print(f"{dead} dead letter(s) waiting: cio-mavera webhooks dead-letters list", file=sys.stderr)
    return 0


def backfill_command(args: argparse.Namespace) -> int:
    """Backfill the event log from deliveries exports and print what was added."""
    settings = load_settings()
    if args.days <= 0:
        raise ConfigError("--days must be positive")
    until = to_unix(args.until, "--until") if args.until is not None else None
    conn = connect("customerio", settings=settings)
    events = event_log_dir(settings)
    print(f"backfilling {events} with {args.days:g} days of deliveries exports ({conn.describe()})",
          file=sys.stderr, flush=True)

    def progress(source: str, deliveries: int, written: int) -> None:
        print(f"  {source}: {deliveries} deliveries, {written} new events", file=sys.stderr, flush=True)

    chosen = args.campaign is not None or args.newsletter is not None
    result = backfill_deliveries(conn, events, days=args.days, until=until,
                                 campaign_ids=args.campaign or ([] if chosen else None),
                                 newsletter_ids=args.newsletter or ([] if chosen else None), on_source=progress)
    print(f"backfilled {result.written} events from {result.deliveries} deliveries of {len(result.campaigns)} "
          f"campaign(s) and {len(result.newsletters)} newsletter(s), {_when(result.start)} to {_when(result.until)} UTC, in {result.seconds:.1f} s; "
          f"{result.already_reported} already reported by webhooks, {result.outside_period} outside the period"
          + (f", {result.dead} not storable" if result.dead else ""), file=sys.stderr)
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
    return ResearchLoop(conn, event_log_dir(settings), max_credits=args.max_credits,
                        interval_s=args.research_interval, cooldown_hours=args.cooldown_hours)


def _when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def dead_letters_list_command(args: argparse.Namespace) -> int:
    """Print the dead letters: a table, or JSON lines with the raw body."""
    queue = open_intake_queue(load_settings(), args.queue)
    try:
        letters = queue.dead_letters(replayed=args.replayed)
    finally:
        queue.close()
    if args.json:
        for letter in letters:
            print(json.dumps({
                "key": letter.key, "reason": letter.reason, "detail": letter.detail, "stage": letter.stage,
                "event_id": letter.event_id, "received_at": letter.received_at, "dead_at": letter.dead_at,
                "replayed_at": letter.replayed_at, "body": letter.payload.decode("utf-8", "backslashreplace"),
            }, ensure_ascii=False))
        return 0
    print(f"{len(letters)} dead letter(s){' replayed' if args.replayed else ' waiting'} in {queue.describe()}")
    for letter in letters:
        print(f"{letter.key[:12]}  {_when(letter.dead_at)}  {letter.stage:<8}  {letter.reason:<14}  "
              f"{len(letter.payload):>7} B  {letter.detail}")
    return 0


def dead_letters_replay_command(args: argparse.Namespace) -> int:
    """Queue again what the parser now reads; exit 1 when some asked-for letters still fail."""
    queue = open_intake_queue(load_settings(), args.queue)
    try:
        result = replay_dead_letters(queue, args.keys or None, dry_run=args.dry_run)
    finally:
        queue.close()
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(result.replayed)} dead letter(s); {len(result.still_failing)} still fail")
    for key, why in result.still_failing.items():
        print(f"  {key[:12]}  {why}")
    if not args.dry_run and result.replayed:
        print("the worker (cio-mavera webhooks work) moves them into the event log")
    return 1 if args.keys and result.still_failing else 0
