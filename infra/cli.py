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
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the stack keeps its files (default: a temporary folder)",
    )
    up = commands.add_parser("up", help="run the whole AWS path locally from the template")
    up.add_argument("--state-dir", type=Path, default=Path(".tidings"))
    up.add_argument("--region", default="us-east-1")
    up.add_argument("--stage", default="dev")
    up.add_argument(
        "--port",
        type=int,
        default=8443,
        help="IoT gateway port; the API, identity and moto use the next three",
    )
    up.add_argument("--template", type=Path, default=None)
    deploy = commands.add_parser("deploy", help="deploy infra/template.yaml to AWS")
    deploy.add_argument("--stack", required=True, help="CloudFormation stack name")
    deploy.add_argument("--region", default=None, help="AWS region (default: your AWS config)")
    deploy.add_argument("--stage", default="dev")
    deploy.add_argument("--dry-run", action="store_true", help="show the change set only")
    destroy = commands.add_parser("destroy", help="delete a deployed stack")
    destroy.add_argument("--stack", required=True)
    destroy.add_argument("--region", default=None)
    from infra.users_command import add_users_parser

    add_users_parser(commands)
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
    if args.command == "up":
        return _run_up(args)
    if args.command in ("deploy", "destroy"):
        return _run_deploy(args)
    if args.command == "users":
        from infra.users_command import run_users

        return run_users(args)
    return 2  # pragma: no cover - argparse refuses unknown commands


def _run_up(args: argparse.Namespace) -> int:
    import threading

    from infra.local.motohost.fixes import MotoVersionError
    from infra.local.stack.local_stack import LocalStack, StackConfig, freeze_process_heap

    options = {"template": args.template} if args.template else {}
    config = StackConfig(
        state_dir=args.state_dir,
        region=args.region,
        stage=args.stage,
        gateway_port=args.port,
        api_port=args.port + 1,
        identity_port=args.port + 2,
        moto_port=args.port + 3,
        **options,
    )
    stack = LocalStack(config)
    try:
        stack.start()
    except OSError as exc:
        print(f"tidings: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except MotoVersionError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 1
    freeze_process_heap()  # this process owns the stack: its start-up heap is for good
    print(f"Tidings local stack is up (stage {config.stage}, region {config.region}):")
    print(f"  API             {stack.api_url}")
    print(f"  IoT (MQTT/WSS)  wss://localhost:{stack.iot_port}/mqtt")
    print(f"  Cognito/STS     {stack.identity_url}")
    print(f"  AWS services    {stack.moto_url} (moto)")
    print(f"  CA file         {stack.ca_file}")
    print(f"Settings for other shells: source {config.env_file}")
    print("Ctrl-C to stop.")
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    print("stopping ...")
    stack.stop()
    return 0


def _run_deploy(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from infra.deploy import DeployError, deploy, destroy, plan_deploy

    try:
        region = args.region or boto3.session.Session().region_name
        if not region:
            print("tidings: no AWS region; pass --region or set AWS_REGION", file=sys.stderr)
            return 2
        if args.command == "destroy":
            destroy(args.stack, region)
            return 0
        account = boto3.client("sts", region_name=region).get_caller_identity()["Account"]
        from infra.deploy import iot_data_endpoint

        plan = plan_deploy(
            args.stack, region, args.stage, account, iot_endpoint=iot_data_endpoint(region)
        )
        deploy(plan, dry_run=args.dry_run)
    except (DeployError, ClientError, BotoCoreError) as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_gateway(args: argparse.Namespace) -> int:
    from infra.local.awsauth.credential_store import CredentialFileError, CredentialStore
    from infra.local.iot.broker import BrokerConfig
    from infra.local.iot.gateway import Gateway, GatewayConfig, describe

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
