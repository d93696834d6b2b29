"""``tidings greengrass run RECIPE --core-device FILE``: a Greengrass v2 component, locally.

The core device is a device of the running local stack (``tidings devices add NAME``): its
``NAME.json``, certificate and key. The command plays the nucleus for it
(:class:`~infra.local.greengrass.core.LocalCore`): it connects to the stack's MQTT port as
the core's thing, serves IPC and the token exchange service, and runs the recipe's ``Run``
step with the variables a nucleus sets, in ``WORK_DIR/work/<component>/`` with its log in
``WORK_DIR/logs/<component>.log`` (the layout of ``/greengrass/v2``). The configuration is
the recipe's default with ``apiUrl`` (the stack's, from ``STATE_DIR/local.env``) and
``topicPrefix`` (the device file's) filled in when empty, then each ``--config KEY=VALUE``.

As the nucleus does, a component that exits with an error is started again, up to three
times in a row; it then counts as broken and the command ends with status 1. It ends with 0
on Ctrl-C, SIGTERM or after ``--duration`` seconds, stopping the component with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["GREENGRASS_DESCRIPTION", "add_greengrass_parser", "run_greengrass"]

MAX_ERRORS = 3
"""Errored exits in a row after which the nucleus marks a component BROKEN."""

GREENGRASS_DESCRIPTION = """\
Run a Greengrass v2 component on this machine as a core device of the running local
stack would: the core device is one made with tidings devices add; the command connects
to the stack as its thing over mutual TLS, serves the nucleus's IPC (SubscribeToIoTCore
and PublishToIoTCore under the recipe's access control) and token exchange service, and
runs the recipe's Run step with the nucleus's variables."""


def add_greengrass_parser(commands: Any, *, epilog: str | None = None) -> None:
    """Register ``greengrass run`` on the ``tidings`` subparsers object."""
    greengrass = commands.add_parser(
        "greengrass",
        help="run a Greengrass v2 component locally, as a core device of the local stack",
        description=GREENGRASS_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = greengrass.add_subparsers(
        dest="greengrass_command", required=True, metavar="ACTION", title="actions"
    )
    run = actions.add_parser(
        "run",
        help="run a component's recipe until Ctrl-C",
        description=GREENGRASS_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("recipe", type=Path, help="the component's recipe (YAML or JSON)")
    run.add_argument(
        "--core-device",
        type=Path,
        required=True,
        metavar="FILE",
        help="the core device's NAME.json from tidings devices add (its certificate, key and "
        "root-ca.pem beside it)",
    )
    run.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a top-level configuration key (repeatable), e.g. --config channels=a,b",
    )
    run.add_argument(
        "--work-dir",
        type=Path,
        default=Path(".tidings/greengrass"),
        metavar="DIR",
        help="the core's root: work/<component>/ and logs/ (default .tidings/greengrass)",
    )
    run.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".tidings"),
        metavar="DIR",
        help="the running stack's state folder, which holds local.env (default .tidings)",
    )
    run.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds (default: run until Ctrl-C)",
    )


class GreengrassCommandError(Exception):
    """A mistake the operator can fix; the message says how."""


def _overrides(pairs: list[str]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or "/" in key:
            raise GreengrassCommandError(
                f"--config {pair!r}: write KEY=VALUE with a top-level key, e.g. channels=a,b"
            )
        found[key] = value
    return found


def _device(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GreengrassCommandError(
            f"{path} does not exist; make the core device with tidings devices add NAME "
            "--out DIR, then pass DIR/NAME.json"
        ) from None
    except (OSError, ValueError) as exc:
        raise GreengrassCommandError(f"{path} is not a device file: {exc}") from exc
    missing = [
        key
        for key in ("thingName", "mqttPort", "roleAlias", "credentialsEndpoint")
        if not isinstance(info, dict) or not info.get(key)
    ]
    if missing:
        raise GreengrassCommandError(
            f"{path} has no {', '.join(missing)}: it was not written by tidings devices add "
            "(or the stack was started without the device endpoints)"
        )
    return dict(info)


def run_greengrass(args: argparse.Namespace) -> int:
    """Run ``greengrass run``; returns the exit status (errors go to stderr)."""
    from infra.devices_command import read_settings_file
    from infra.local.greengrass.core import ComponentRecipe, LocalCore, RecipeError
    from infra.local.greengrass.token_exchange import CoreCertificate

    try:
        recipe = ComponentRecipe.load(args.recipe)
        info = _device(args.core_device)
        folder = args.core_device.parent
        name = str(info["thingName"])
        core = CoreCertificate(
            thing_name=name,
            cert_file=folder / f"{name}.cert.pem",
            key_file=folder / f"{name}.private.key",
            ca_file=folder / "root-ca.pem",
        )
        absent = [str(p) for p in (core.cert_file, core.key_file, core.ca_file) if not p.is_file()]
        if absent:
            raise GreengrassCommandError(
                f"the core device's files are missing: {', '.join(absent)}"
            )
        settings_file = args.state_dir / "local.env"
        settings = read_settings_file(settings_file) if settings_file.is_file() else {}
        overrides = _overrides(args.config)
        defaults = recipe.default_configuration
        if not overrides.get("apiUrl") and not defaults.get("apiUrl"):
            if not settings.get("TIDINGS_API_URL"):
                raise GreengrassCommandError(
                    f"no apiUrl: {settings_file} has no TIDINGS_API_URL (is tidings up "
                    "running?); pass --config apiUrl=URL"
                )
            overrides["apiUrl"] = settings["TIDINGS_API_URL"]
        if "topicPrefix" in defaults and "topicPrefix" not in overrides and info.get("topicPrefix"):
            overrides["topicPrefix"] = str(info["topicPrefix"])
        environment = {}
        if settings.get("TIDINGS_CA_FILE"):
            environment["TIDINGS_CA_FILE"] = settings["TIDINGS_CA_FILE"]
        endpoint = str(info["credentialsEndpoint"]).removeprefix("https://").rstrip("/")
        local = LocalCore(
            core=core,
            recipe=recipe,
            mqtt_host="127.0.0.1",
            mqtt_port=int(info["mqttPort"]),
            credentials_url=f"https://{endpoint}/role-aliases/{info['roleAlias']}/credentials",
            region=str(info.get("region") or "us-east-1"),
            work_dir=args.work_dir.resolve(),
            overrides=overrides,
            environment=environment,
        )
    except (GreengrassCommandError, RecipeError) as exc:
        print(f"tidings greengrass: {exc}", file=sys.stderr)
        return 1
    try:
        local.start()
    except ssl.SSLError as exc:
        print(
            f"tidings greengrass: the core device's certificate or key cannot be used "
            f"({core.cert_file}, {core.key_file}): {exc}",
            file=sys.stderr,
        )
        return 1
    except (ConnectionError, OSError) as exc:
        print(
            f"tidings greengrass: the core device {name} cannot connect to the stack's MQTT "
            f"port {info['mqttPort']}: {exc} (is tidings up running, and the device active?)",
            file=sys.stderr,
        )
        return 1
    try:
        return _supervise(local, args.duration)
    finally:
        local.stop()


def _supervise(local: Any, duration: float | None) -> int:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = None if duration is None else time.monotonic() + duration
    print(
        f"tidings greengrass: {local.recipe.name} runs on core {local.core.thing_name}; work "
        f"folder {local.component_work}, log {local.log_file}; Ctrl-C stops it",
        flush=True,
    )
    errors = 0
    try:
        process = local.start_component()
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            status = process.poll()
            if status is None:
                stop.wait(0.2)
                continue
            errors = errors + 1 if status != 0 else 0
            if status == 0:
                print(f"tidings greengrass: {local.recipe.name} finished", flush=True)
                return 0
            if errors >= MAX_ERRORS:
                print(
                    f"tidings greengrass: {local.recipe.name} exited with {status} "
                    f"{errors} times in a row: BROKEN; see {local.log_file}",
                    file=sys.stderr,
                )
                return 1
            print(
                f"tidings greengrass: {local.recipe.name} exited with {status}; starting it again",
                file=sys.stderr,
                flush=True,
            )
            local.stop_component()
            process = local.start_component()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
