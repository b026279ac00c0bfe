"""`failover mock-provider`: serve one mock provider with uvicorn until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import sys

from proxy.errors import ConfigError
from proxy.listen import ensure_can_listen
from proxy.mock.app import MockApp
from proxy.mock.settings import config_from_args, faults_from_args


def run_mock_provider(args: argparse.Namespace) -> int:
    import uvicorn

    try:
        config, faults = config_from_args(args), faults_from_args(args)
    except ValueError as exc:
        raise ConfigError(f"mock-provider: {exc}") from exc
    ensure_can_listen(args.host, args.port)
    print(
        f"mock provider {config.name!r} on http://{args.host}:{args.port}/v1 (fault: {faults.fault})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        MockApp(config, faults),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,  # a stalled answer must not keep the process alive
    )
    return 0
