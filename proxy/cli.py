"""The `failover` command: one entry point, one subcommand per process of SPEC section 2.

Each subcommand lives in its own module and is imported only when it runs, so `failover --help`
stays fast. A `GatewayError` becomes one line on stderr and an exit code (2 for configuration,
1 otherwise); anything else is a bug and keeps its traceback. `--config` may come before or after
the subcommand; `failover` alone prints the commands.

SIGTERM and SIGHUP end every command but `serve` (whose server handles its own signals) the way
Ctrl-C does: the stack unwinds, so children are stopped and an embedded PostgreSQL this process
started is stopped at exit instead of being left running.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from proxy.errors import ConfigError, GatewayError

Handler = Callable[[argparse.Namespace], int]
CONFIG_HELP = "TOML config (default: $FAILOVER_CONFIG, else failover.toml)"
# Commands whose own server installs the signal handlers it needs (graceful shutdown, reload).
OWN_SIGNALS = frozenset({"serve"})

# subcommand -> "module:function"; the function takes the parsed arguments and returns an exit code.
COMMANDS = {
    "serve": "proxy.http.server:run_serve",
    "health": "health.worker:run_health",
    "migrate": "proxy.store.migrate:run_migrate",
    "sync": "proxy.commands.sync:run_sync",
    "check": "proxy.commands.check:run_check",
    "explain": "proxy.commands.explain:run_explain",
    "usage": "proxy.commands.usage:run_usage",
    "mock-provider": "proxy.mock.cli:run_mock_provider",
    "demo": "proxy.commands.demo:run_demo",
}


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the proxy")
    p.add_argument("--host", default=None, help="bind address (overrides [proxy] host)")
    p.add_argument("--port", type=int, default=None, help="port (overrides [proxy] port)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")


def _add_health(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="run the health worker")
    p.add_argument("--once", action="store_true", help="probe every offer once, then exit")
    p.add_argument("--interval", type=float, default=None, help="seconds between rounds")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")


def _add_catalog(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("migrate", help="apply the SQL migrations")
    p = sub.add_parser("sync", help="sync providers and models into the catalog")
    p.add_argument("--providers", nargs="+", default=None, metavar="SLUG", help="only these providers")
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    sub.add_parser("check", help="run the ten database checks")
    p = sub.add_parser("explain", help="show the ranked failover order for a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print the guide's JSON shape")
    p = sub.add_parser("usage", help="requests, cost and tokens by key, model, provider or day")
    p.add_argument("--since", default=None, help="ISO 8601 time (default: 24 hours before --until)")
    p.add_argument("--until", default=None, help="ISO 8601 time (default: now)")
    p.add_argument("--group-by", default="key", help="up to two of key,model,provider,day (default: key)")
    p.add_argument("--key", default=None, help="only this client key name")
    p.add_argument("--json", action="store_true", help="print GET /admin/usage's JSON shape")


def _add_mock(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from proxy.mock.settings import help_epilog  # a light module: `failover --help` stays fast

    p = sub.add_parser(
        "mock-provider",
        help="run an OpenAI-compatible fake provider with fault modes",
        epilog=help_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", default="mock", help="name echoed in answers (which provider served)")
    p.add_argument("--models", default="gpt-4,gpt-3.5-turbo", help="comma-separated model ids it lists")
    p.add_argument("--listing", choices=("openai", "openrouter", "together"), default="openai")
    p.add_argument("--fault", default="none", help="one of the faults below (default: none)")
    p.add_argument("--status", type=int, default=500, help="status for --fault status")
    p.add_argument("--retry-after", default="1", help="Retry-After value for --fault rate_limit")
    p.add_argument("--fail-rate", type=float, default=1.0, help="share of requests the fault hits (0-1)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="added before every answer")
    p.add_argument("--first-byte-ms", type=float, default=0.0, help="delay before the first byte")
    p.add_argument("--chunk-interval-ms", type=float, default=0.0, help="delay between stream chunks")
    p.add_argument("--chunks", type=int, default=5, help="content chunks in a streamed answer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="failover", description="Gatewayz failover proxy")
    parser.add_argument("--config", default=None, help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_serve(sub)
    _add_health(sub)
    _add_catalog(sub)
    _add_mock(sub)
    p = sub.add_parser("demo", help="embedded Postgres, mock providers, the proxy, a scripted failover")
    p.add_argument("--once", action="store_true", help="run the script once and exit")
    for command in sub.choices.values():
        # after the subcommand too; SUPPRESS keeps a `--config` given before it when this one is absent
        command.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parser


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the main thread is, so that every `finally` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signum)


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP unwind the main thread like Ctrl-C (the default would end the process on
    the spot: no `finally`, no `atexit`, children and an embedded PostgreSQL left running)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)


def resolve(command: str) -> Handler:
    module_name, func_name = COMMANDS[command].split(":")
    handler: Handler = getattr(importlib.import_module(module_name), func_name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command not in OWN_SIGNALS:
        stop_on_signals()
    try:
        return resolve(args.command)(args)
    except ConfigError as exc:
        print(f"failover: configuration error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"failover {args.command}: {exc}", file=sys.stderr)
        return 1
    except Stopped as exc:
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
