"""`failover serve`: the proxy on uvicorn (uvloop, httptools), one or several worker processes.

With `DATABASE_URL` unset the embedded PostgreSQL is started first and its URL handed to the
workers through the environment. SIGTERM stops accepting connections, lets in-flight requests
finish for up to `shutdown_grace_s`, then the lifespan stops every background task.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

import uvicorn

from proxy.app import GatewayApp, create_app
from proxy.config import load_config
from proxy.database import database_url
from proxy.http_guard import GuardedHttpToolsProtocol


def app_from_environment() -> GatewayApp:
    """The uvicorn factory: config from $FAILOVER_CONFIG, database from $DATABASE_URL."""
    return create_app(load_config())


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("gatewayz.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.config:
        os.environ["FAILOVER_CONFIG"] = str(args.config)
    if config.database_url is None:
        os.environ["DATABASE_URL"] = database_url(config)
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gatewayz-metrics-")
    host = args.host or config.proxy.host
    port = args.port if args.port is not None else config.proxy.port
    configure_logging()
    print(f"failover proxy listening on http://{host}:{port}/v1 ({args.workers} worker(s))", file=sys.stderr)
    uvicorn.run(
        "proxy.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=args.workers,
        loop="uvloop",
        http=GuardedHttpToolsProtocol,  # httptools, with a bound on request heads
        access_log=False,
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(config.proxy.shutdown_grace_s),
        lifespan="on",
    )
    return 0
