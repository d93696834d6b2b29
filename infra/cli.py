"""The ``tidings`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _gateway_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8443, help="TLS port (default 8443)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".tidings/local"),
        help="where the CA and server certificate live",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--credentials", type=Path, help="JSON file of credentials and their policies to accept"
    )
    parser.add_argument(
        "--max-connection-s",
        type=float,
        default=24 * 3600.0,
        help="close WebSocket connections after this long (AWS: 24 h)",
    )
    parser.add_argument(
        "--publish-rate",
        type=float,
        default=100.0,
        help="publishes per second per connection (AWS: 100; 0 = unlimited)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidings", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    commands = parser.add_subparsers(dest="command", required=True)
    gateway = commands.add_parser("gateway", help="run the local AWS IoT Core endpoint")
    _gateway_args(gateway)
    demo = commands.add_parser("demo", help="start the local stack and run a scripted session")
    demo.add_argument("--state-dir", type=Path, default=Path(".tidings/local"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tidings`` console script."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "gateway":
        return _run_gateway(args)
    if args.command == "demo":
        from infra.demo import run_demo

        return run_demo(args.state_dir)
    return 2  # pragma: no cover - argparse refuses unknown commands


def _run_gateway(args: argparse.Namespace) -> int:
    from infra.local.broker import BrokerConfig
    from infra.local.credential_store import CredentialFileError, CredentialStore
    from infra.local.gateway import Gateway, GatewayConfig, describe

    try:
        store = (
            CredentialStore.from_file(args.credentials) if args.credentials else CredentialStore()
        )
    except CredentialFileError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2
    config = GatewayConfig(
        port=args.port,
        state_dir=args.state_dir,
        broker=BrokerConfig(
            region=args.region,
            max_connection_s=args.max_connection_s,
            publish_rate_per_s=args.publish_rate,
        ),
    )

    async def serve() -> int:
        gateway = Gateway(config, store)
        try:
            await gateway.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                print(
                    f"tidings: port {args.port} on 127.0.0.1 is already in use; "
                    "stop what holds it or pass --port",
                    file=sys.stderr,
                )
                return 1
            raise
        print(describe(gateway), flush=True)
        print(f"CA file for clients: {gateway.ca_file}", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        await gateway.stop()
        return 0

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve())
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
