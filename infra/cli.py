"""The tidings command: run Tidings on this machine, deploy it to AWS, manage its users.

Every command's help is plain prose (``tidings COMMAND --help``); a failure is one line on
stderr that says what to do, and the exit status says what kind of failure it was
(:data:`EXIT_CODES`, shown in ``tidings --help`` and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["EXIT_CODES", "main", "tidings_version"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "done (up and gateway: stopped with Ctrl-C or SIGTERM)",
    EXIT_FAILED: "the command failed; the line on stderr says why and what to do",
    EXIT_USAGE: "the command line or the configuration is wrong (an unknown option, a "
    "missing argument, no AWS region, an unreadable credentials file)",
    EXIT_INTERRUPTED: "interrupted with Ctrl-C before it was done",
}
"""Exit status → what it means: the contract scripts can rely on."""

DESCRIPTION = """\
Tidings pushes DynamoDB changes to browsers, phones and devices over AWS IoT Core.
This command runs the whole AWS path on this machine (up, demo, gateway), deploys it
to an AWS account (deploy, destroy) and manages the users who sign in (users).
Run tidings COMMAND --help for what a command does and its options."""


def _epilog() -> str:
    import textwrap

    width = max(len(str(code)) for code in EXIT_CODES)
    lines = [
        textwrap.fill(
            meaning,
            width=86,
            initial_indent=f"  {code:>{width}}  ",
            subsequent_indent=" " * (width + 4),
        )
        for code, meaning in EXIT_CODES.items()
    ]
    return "exit status:\n" + "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit status 2) that says where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}; see {self.prog} --help\n")


def tidings_version() -> str:
    """This installation's version: the package metadata, or in a checkout that was never
    installed, the version its pyproject.toml names."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tidings")
    except PackageNotFoundError:
        pass
    import tomllib

    from infra.data_files import code_root

    try:
        project = tomllib.loads((code_root() / "pyproject.toml").read_text("utf-8"))["project"]
        if project.get("name") == "tidings":
            return f"{project['version']} (not installed: a checkout)"
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        pass
    return "unknown (not installed)"


def _command(commands: Any, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def _gateway_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=8443, help="the TLS port to listen on (default 8443)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".tidings/local"),
        metavar="DIR",
        help="where the CA and the server certificate are kept (default .tidings/local)",
    )
    parser.add_argument(
        "--region",
        default="us-east-1",
        help="the AWS region the endpoint signs for, as clients name it (default us-east-1)",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="a JSON file of the credentials to accept and their policies (default: none)",
    )
    parser.add_argument(
        "--max-connection-s",
        type=float,
        default=24 * 3600.0,
        metavar="SECONDS",
        help="close a WebSocket connection after this many seconds (default 86400, as AWS)",
    )
    parser.add_argument(
        "--publish-rate",
        type=float,
        default=100.0,
        metavar="PER_SECOND",
        help="publishes allowed per second per connection (default 100, as AWS; 0: no limit)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tidings",
        description=DESCRIPTION,
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"tidings {tidings_version()}",
        help="print the version of tidings and exit",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log every connection and request, and show where an unexpected error happened",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", title="commands"
    )

    up = _command(
        commands,
        "up",
        "run the whole AWS path on this machine, from the template",
        "Start the local stack: the tables, streams, functions, sign-in, HTTP API and AWS IoT\n"
        "endpoint of the template, on 127.0.0.1, until Ctrl-C. It writes the settings other\n"
        "shells need (endpoints, a developer key) to STATE_DIR/local.env. Needs the local\n"
        "extra: pip install 'tidings[local]'.",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".tidings"),
        metavar="DIR",
        help="where the stack keeps its certificates and settings file (default .tidings)",
    )
    up.add_argument(
        "--region", default="us-east-1", help="the AWS region to pretend to be (default us-east-1)"
    )
    up.add_argument(
        "--stage",
        default="dev",
        help="the template's Stage parameter: topics are tidings/STAGE/... (default dev)",
    )
    up.add_argument(
        "--port",
        type=int,
        default=8443,
        help="the AWS IoT endpoint's port; the API, sign-in, AWS services, the web page, MQTT "
        "over mutual TLS for devices and the IoT credentials provider take the next six "
        "(default 8443)",
    )
    up.add_argument(
        "--template",
        type=Path,
        default=None,
        metavar="FILE",
        help="a CloudFormation template to run instead of the one tidings ships",
    )

    demo = _command(
        commands,
        "demo",
        "start the local stack and show two users receiving their changes",
        "Start the local stack, sign two users of two tenants in, write items and show each\n"
        "change arriving with its latency, and one user refused the other's channels. Exits 0\n"
        "only if everything arrived once and every refusal happened. Needs the local extra.",
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the stack keeps its files and the functions' log (default: a new "
        "temporary folder)",
    )
    demo.add_argument(
        "--web",
        action="store_true",
        help="serve the demo page and keep writing changes for it until Ctrl-C: open the "
        "printed URL and sign in as alice or bob",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8443,
        help="with --web: the AWS IoT endpoint's port; the API, sign-in, AWS services, the "
        "web page, MQTT over mutual TLS and the credentials provider take the next six "
        "(default 8443: the page at http://127.0.0.1:8447/); 0 picks free ports",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --web: stop after this many seconds (default: at Ctrl-C)",
    )

    gateway = _command(
        commands,
        "gateway",
        "run only the local AWS IoT Core endpoint",
        "Run the local AWS IoT Core endpoint on its own: MQTT 3.1.1 and 5 over a SigV4-signed\n"
        "WebSocket, and the iot-data HTTPS API, accepting the credentials of --credentials.",
    )
    _gateway_args(gateway)

    deploy = _command(
        commands,
        "deploy",
        "deploy the template to AWS",
        "Build the Lambda package, upload it, create a change set for the template, show it\n"
        "and execute it, printing the stack's events and then its outputs. Credentials come\n"
        "from the standard AWS settings.",
    )
    deploy.add_argument("--stack", required=True, help="the CloudFormation stack's name")
    deploy.add_argument(
        "--region", default=None, help="the AWS region (default: the one your AWS settings name)"
    )
    deploy.add_argument(
        "--stage",
        default="dev",
        help="the template's Stage parameter: topics are tidings/STAGE/... (default dev)",
    )
    deploy.add_argument(
        "--dry-run", action="store_true", help="show the change set, then delete it unapplied"
    )

    destroy = _command(
        commands,
        "destroy",
        "delete a deployed stack",
        "Delete a stack that tidings deploy created, and wait until it is gone.",
    )
    destroy.add_argument("--stack", required=True, help="the CloudFormation stack's name")
    destroy.add_argument(
        "--region", default=None, help="the AWS region (default: the one your AWS settings name)"
    )

    from infra.users_command import add_users_parser

    add_users_parser(commands, epilog=_epilog())
    from infra.devices_command import add_devices_parser

    add_devices_parser(commands, epilog=_epilog())
    from infra.cost_command import add_cost_parser

    add_cost_parser(commands, epilog=_epilog())
    from infra.greengrass_command import add_greengrass_parser

    add_greengrass_parser(commands, epilog=_epilog())
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tidings`` console script; returns the exit status."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except Exception as exc:
        if args.verbose:
            raise
        return _fail(
            f"unexpected {type(exc).__name__}: {exc}; run tidings -v {args.command} ... "
            "to see where it happened, and report it"
        )


def _run(args: argparse.Namespace) -> int:
    if args.command == "gateway":
        return _run_gateway(args)
    if args.command == "demo":
        return _run_local(args, _demo)
    if args.command == "up":
        return _run_local(args, _up)
    if args.command in ("deploy", "destroy"):
        return _run_deploy(args)
    if args.command == "users":
        from infra.users_command import run_users

        return run_users(args)
    if args.command == "devices":
        from infra.devices_command import run_devices

        return run_devices(args)
    if args.command == "cost":
        from infra.cost_command import run_cost

        return run_cost(args)
    if args.command == "greengrass":
        from infra.greengrass_command import run_greengrass

        return run_greengrass(args)
    return EXIT_USAGE  # pragma: no cover - argparse refuses unknown commands


def _fail(message: object, status: int = EXIT_FAILED) -> int:
    """Print ``tidings: <message>`` as one line on stderr; returns ``status``."""
    print(f"tidings: {' '.join(str(message).split())}", file=sys.stderr)
    return status


_LOCAL_MODULES = ("moto", "werkzeug", "flask", "flask_cors", "responses", "xmltodict")


def _run_local(args: argparse.Namespace, run: Any) -> int:
    """Run ``up`` or ``demo``, turning the local stack's start-up failures into one line."""
    from infra.local.motohost.fixes import MotoVersionError
    from infra.local.stack.template_model import TemplateError

    try:
        return int(run(args))
    except MotoVersionError as exc:
        return _fail(exc)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _LOCAL_MODULES:
            raise
        return _fail(
            f"tidings {args.command} needs moto ({exc.name} is missing): install tidings "
            "with its local extra, pip install 'tidings[local]'"
        )
    except TemplateError as exc:
        given = getattr(args, "template", None) is not None
        return _fail(f"the template cannot be run: {exc}{'; check --template' if given else ''}")
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")


def _demo(args: argparse.Namespace) -> int:
    from infra.demo import run_demo, run_web_demo

    if args.web:
        stopped = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopped.set())
        return run_web_demo(args.state_dir, port=args.port, duration_s=args.duration, stop=stopped)
    return run_demo(args.state_dir)


def _up(args: argparse.Namespace) -> int:
    from infra.local.stack.local_stack import LocalStack, StackConfig, freeze_process_heap

    options = {"template": args.template} if args.template else {}
    config = StackConfig(
        # absolute, so the settings file's paths (the CA file) work from any folder
        state_dir=args.state_dir.resolve(),
        region=args.region,
        stage=args.stage,
        gateway_port=args.port,
        api_port=args.port + 1,
        identity_port=args.port + 2,
        moto_port=args.port + 3,
        web_port=args.port + 4,
        mqtt_port=args.port + 5,
        credentials_port=args.port + 6,
        **options,
    )
    stack = LocalStack(config)
    stack.start()
    freeze_process_heap()  # this process owns the stack: its start-up heap is for good
    print(f"Tidings local stack is up (stage {config.stage}, region {config.region}):")
    print(f"  API             {stack.api_url}")
    print(f"  IoT (MQTT/WSS)  wss://localhost:{stack.iot_port}/mqtt")
    print(f"  Cognito/STS     {stack.identity_url}")
    print(f"  AWS services    {stack.moto_url} (moto)")
    print(f"  CA file         {stack.ca_file}")
    print(f"  Web page        {stack.web_url}  (the demo page; docs/WEB.md)")
    print(f"Settings for other shells: source {config.env_file}")
    print("Ctrl-C to stop.", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    print("stopping ...", flush=True)
    stack.stop()
    return EXIT_OK


def _run_deploy(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from infra.deploy import DeployError, deploy, destroy, plan_deploy

    try:
        # boto3 reads AWS_DEFAULT_REGION and the config file; AWS_REGION is the other
        # standard name (Lambda and the AWS CLI v2 read it), so it is honoured here too
        region = args.region or os.environ.get("AWS_REGION") or boto3.session.Session().region_name
        if not region:
            return _fail(
                "no AWS region: pass --region, set AWS_REGION, or name one in your AWS config",
                EXIT_USAGE,
            )
        if args.command == "destroy":
            destroy(args.stack, region)
            return EXIT_OK
        account = boto3.client("sts", region_name=region).get_caller_identity()["Account"]
        from infra.deploy import iot_data_endpoint

        plan = plan_deploy(
            args.stack, region, args.stage, account, iot_endpoint=iot_data_endpoint(region)
        )
        deploy(plan, dry_run=args.dry_run)
    except NoCredentialsError:
        return _fail(
            "no AWS credentials: run aws configure, or set AWS_PROFILE or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    except (DeployError, ClientError, BotoCoreError) as exc:
        return _fail(exc)
    return EXIT_OK


def _run_gateway(args: argparse.Namespace) -> int:
    from infra.local.awsauth.credential_store import CredentialFileError, CredentialStore
    from infra.local.iot.broker import BrokerConfig
    from infra.local.iot.gateway import Gateway, GatewayConfig, describe

    try:
        store = (
            CredentialStore.from_file(args.credentials) if args.credentials else CredentialStore()
        )
    except CredentialFileError as exc:
        return _fail(exc, EXIT_USAGE)
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
                return _fail(
                    f"port {args.port} on 127.0.0.1 is already in use; "
                    "stop what holds it or pass --port"
                )
            where = f"{exc.filename}: " if exc.filename else ""
            return _fail(f"{where}{exc.strerror or exc}")
        print(describe(gateway), flush=True)
        print(f"CA file for clients: {gateway.ca_file}", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        await gateway.stop()
        return EXIT_OK

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve())
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
