"""`cio-mavera sandbox serve`: run the local Customer.io + Mavera stand-in in the foreground."""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
from typing import Any

from ..errors import ConfigError, InvalidParameter
from ..sandbox import SandboxConfig
from ..sandbox.server import SandboxServer
from ..sandbox.state import SandboxState
from ..sandbox.workspace.world import WORLD_NAMES, World
from ..settings import parse_instant as _instant
from .sandbox_replay import register_replay

DEFAULT_PORT = 8765


def register(subparsers: Any) -> None:
    """Add the `sandbox` command with its `serve` and `replay-webhooks` actions."""
    parser = subparsers.add_parser(
        "sandbox", help="run the local stand-in for Customer.io and Mavera",
        description="A real HTTP server on loopback that answers like Customer.io (App and Track "
                    "APIs) and Mavera, with a synthetic workspace generated from a seed.")
    actions = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve = actions.add_parser(
        "serve", help="serve the sandbox in the foreground until Ctrl-C",
        description="Prints `export NAME=value` lines for the URLs and keys a client needs "
                    "(eval them in another shell), then serves until Ctrl-C.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"port to bind, 0 for any free one (default {DEFAULT_PORT})")
    serve.add_argument("--seed", type=int, default=7, help="workspace seed (default 7)")
    serve.add_argument("--customers", type=int, default=5000,
                       help="customers in the workspace, up to 1,000,000 (default 5000)")
    serve.add_argument("--latency-ms", type=float, default=0.0,
                       help="delay added to every API response (default 0)")
    serve.add_argument("--app-rps", type=int, default=10,
                       help="App API requests per second before 429 (default 10, as Customer.io)")
    serve.add_argument("--fault-rate", type=float, default=0.0,
                       help="share of API requests answered with a random 500/503 (default 0)")
    serve.add_argument("--force-429-rate", type=float, default=0.0,
                       help="share of App API requests answered 429 regardless of rate (default 0)")
    serve.add_argument("--region", choices=("us", "eu"), default="us",
                       help="region the workspace lives in; keys fail on the other one (default us)")
    serve.add_argument("--credits", type=int, default=None,
                       help="Mavera credits the sandbox key starts with (default 1,000,000)")
    serve.add_argument("--end", default=None, metavar="WHEN",
                       help="when the workspace's history stops: an ISO date (the end of that day) "
                            "or datetime, UTC (default: the start of the current hour)")
    serve.add_argument("--world", choices=WORLD_NAMES, default="realistic",
                       help="how messy the data is: realistic (default) or the tidy clean world")
    serve.add_argument("--knob", action="append", default=[], metavar="PART.NAME=VALUE",
                       help="set one world knob, e.g. campaigns.heterogeneity_cv=0.3 (repeatable; "
                            "the truth at /__sandbox__/truth lists them all)")
    serve.set_defaults(handler=serve_command)
    register_replay(actions)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.customers <= 1_000_000:
        raise InvalidParameter(f"--customers must be between 1 and 1,000,000, got {args.customers}")
    if args.app_rps < 1:
        raise InvalidParameter(f"--app-rps must be at least 1, got {args.app_rps}")
    for name in ("fault_rate", "force_429_rate"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise InvalidParameter(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.latency_ms < 0:
        raise InvalidParameter(f"--latency-ms must not be negative, got {args.latency_ms}")


def _knob(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InvalidParameter(f"--knob needs PART.NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def serve_command(args: argparse.Namespace) -> int:
    """Start the sandbox, print its environment as shell exports, and serve until interrupted."""
    _check(args)
    knobs: dict[str, Any] = dict(seed=args.seed, customers=args.customers, latency_ms=args.latency_ms,
                                 app_rps=args.app_rps, fault_rate=args.fault_rate,
                                 force_429_rate=args.force_429_rate, region=args.region)
    if args.credits is not None:
        knobs["mavera_credits"] = args.credits
    knobs["end"] = _instant("--end", args.end)
    knobs["world"] = World.named(args.world).with_knobs(dict(_knob(k) for k in args.knob))
    state = SandboxState(SandboxConfig(**knobs))
    print(f"sandbox: generating the workspace (seed {args.seed}, {args.customers:,} customers)...",
          file=sys.stderr, flush=True)
    try:
        server = SandboxServer(state, host=args.host, port=args.port).start()  # builds it first
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc.strerror}); "
                          "pick another --port or 0 for any free one") from exc
    public_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    env = {**state.env(f"http://{public_host}:{server.port}"), "CIO_REGION": args.region}
    for name, value in env.items():
        print(f"export {name}={shlex.quote(value)}")
    sys.stdout.flush()
    print(f"sandbox: listening on http://{public_host}:{server.port} (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    stop = threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("sandbox: stopping", file=sys.stderr)
    finally:
        server.stop()
    return 0
