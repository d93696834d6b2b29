"""A local Greengrass v2 core device: the nucleus stand-in running one component from its recipe.

:class:`LocalCore` puts together what a nucleus gives a component, for a core device made
with ``tidings devices add``: its one MQTT connection to AWS IoT as the core's thing
(:class:`~infra.local.greengrass.mqtt_bridge.MqttBridge`, mutual TLS to the gateway), the IPC
server (:class:`~infra.local.greengrass.nucleus.LocalNucleus`, authorising with the recipe's
``accessControl``), the token exchange service
(:class:`~infra.local.greengrass.token_exchange.TokenExchangeService`, credentials from the
AWS IoT credentials provider with the core's certificate), and the component itself: a
process started with the recipe's ``Run`` command (its variables interpolated) in its own
work folder, with the variables a nucleus sets (``SVCUID``,
``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, ``AWS_CONTAINER_CREDENTIALS_FULL_URI``,
``AWS_CONTAINER_AUTHORIZATION_TOKEN``, ``AWS_IOT_THING_NAME``, ``AWS_REGION``,
``GG_ROOT_CA_PATH``) and none of the developer's AWS keys.

Recipes are read as Greengrass reads them (YAML or JSON): ``ComponentName``,
``ComponentConfiguration.DefaultConfiguration`` (with ``accessControl``), and the first
Linux manifest's ``Lifecycle.Run`` (text, or ``{Script: …}``). The variables
``{configuration:/key}``, ``{iot:thingName}``, ``{artifacts:path}`` and ``{work:path}`` are
interpolated (``{iot:thingName}`` in access-control resources too); the ``Install`` step is not
run (the component's packages are the developer's own environment here).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import yaml

from infra.local.greengrass.mqtt_bridge import MqttBridge
from infra.local.greengrass.nucleus import LocalNucleus
from infra.local.greengrass.token_exchange import CoreCertificate, TokenExchangeService

__all__ = ["ComponentRecipe", "LocalCore", "RecipeError"]

_VARIABLE = re.compile(r"\{([a-zA-Z]+):([^{}]*)\}")
_DROPPED_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)
"""The developer's AWS keys: a component signs with the token exchange service's only."""


class RecipeError(ValueError):
    """A recipe this core cannot run; the message says what to fix."""


@dataclass(frozen=True)
class ComponentRecipe:
    """What the local core needs of a component recipe."""

    name: str
    version: str
    default_configuration: Mapping[str, Any]
    run: str
    folder: Path
    """The recipe's folder: ``{artifacts:path}`` locally."""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ComponentRecipe:
        """Read a recipe file; :class:`RecipeError` when it lacks what a component needs."""
        source = Path(path)
        try:
            document = yaml.safe_load(source.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RecipeError(f"{source} cannot be read as a recipe: {exc}") from exc
        if not isinstance(document, dict):
            raise RecipeError(f"{source} is not a recipe: a YAML or JSON object was expected")
        name = document.get("ComponentName")
        if not isinstance(name, str) or not name:
            raise RecipeError(f"{source} has no ComponentName")
        configuration = (document.get("ComponentConfiguration") or {}).get(
            "DefaultConfiguration"
        ) or {}
        if not isinstance(configuration, dict):
            raise RecipeError(f"{source}: DefaultConfiguration must be an object")
        run = None
        for manifest in document.get("Manifests") or []:
            platform = (manifest or {}).get("Platform") or {}
            if platform.get("os", "linux") not in ("linux", "*", "all"):
                continue
            step = ((manifest or {}).get("Lifecycle") or {}).get("Run")
            run = step.get("Script") if isinstance(step, dict) else step
            break
        if not isinstance(run, str) or not run.strip():
            raise RecipeError(f"{source} has no Linux manifest with a Lifecycle Run step")
        return cls(
            name=name,
            version=str(document.get("ComponentVersion") or "0.0.0"),
            default_configuration=configuration,
            run=run,
            folder=source.resolve().parent,
        )

    def configuration(self, overrides: Mapping[str, str]) -> dict[str, Any]:
        """The default configuration with ``overrides`` (top-level keys) merged over it."""
        merged = dict(self.default_configuration)
        merged.update(overrides)
        return merged

    def access_control(
        self, configuration: Mapping[str, Any], thing_name: str
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """The configuration's ``accessControl``, ``{iot:thingName}`` interpolated."""
        raw = configuration.get("accessControl") or {}
        text = json.dumps(raw).replace("{iot:thingName}", thing_name)
        access = json.loads(text)
        if not isinstance(access, dict):
            raise RecipeError(f"{self.name}: accessControl must be an object")
        return access

    def run_command(
        self, configuration: Mapping[str, Any], *, thing_name: str, work_path: Path
    ) -> str:
        """The ``Run`` step with its recipe variables interpolated (each value shell-quoted)."""

        def value(match: re.Match[str]) -> str:
            kind, key = match.group(1), match.group(2)
            if kind == "configuration":
                found: Any = configuration
                for part in key.strip("/").split("/"):
                    if not isinstance(found, Mapping) or part not in found:
                        raise RecipeError(
                            f"{self.name}: the Run step names {{configuration:{key}}}, which "
                            "the configuration does not have"
                        )
                    found = found[part]
                text = found if isinstance(found, str) else json.dumps(found)
            elif (kind, key) == ("iot", "thingName"):
                text = thing_name
            elif (kind, key) == ("artifacts", "path"):
                text = str(self.folder)
            elif (kind, key) == ("work", "path"):
                text = str(work_path)
            else:
                raise RecipeError(f"{self.name}: the recipe variable {match.group(0)} is unknown")
            return shlex.quote(text)

        return _VARIABLE.sub(value, self.run)


@dataclass
class _Running:
    process: subprocess.Popen[bytes]
    log: IO[bytes]


@dataclass
class LocalCore:
    """One core device running one component: ``with LocalCore(...) as core:
    core.start_component()``."""

    core: CoreCertificate
    recipe: ComponentRecipe
    mqtt_host: str
    mqtt_port: int
    credentials_url: str
    region: str
    work_dir: Path
    overrides: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    """More variables for the component (e.g. ``TIDINGS_CA_FILE`` for the local API's CA)."""

    def __post_init__(self) -> None:
        self.svcuid = secrets.token_urlsafe(24)
        self.configuration = self.recipe.configuration(self.overrides)
        self.access = self.recipe.access_control(self.configuration, self.core.thing_name)
        self.component_work = self.work_dir / "work" / self.recipe.name
        self.log_file = self.work_dir / "logs" / f"{self.recipe.name}.log"
        self.command = self.recipe.run_command(
            self.configuration, thing_name=self.core.thing_name, work_path=self.component_work
        )
        self.bridge = MqttBridge(
            self.mqtt_host,
            self.mqtt_port,
            client_id=self.core.thing_name,
            ca_file=self.core.ca_file,
            cert_file=self.core.cert_file,
            key_file=self.core.key_file,
        )
        self.token_exchange = TokenExchangeService(self.core, self.credentials_url, [self.svcuid])
        # a Unix socket's path is limited to 107 bytes: a short folder of its own
        self._socket_dir = ""
        self.nucleus: LocalNucleus | None = None
        self._running: _Running | None = None

    def start(self) -> Self:
        """Connect the bridge (``ConnectionError`` when the gateway refuses the core), start
        the token exchange service and the IPC server."""
        self.component_work.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.bridge.start()
        try:
            self.token_exchange.start()
            self._socket_dir = tempfile.mkdtemp(prefix="gg-", dir="/tmp")
            self.nucleus = LocalNucleus(
                os.path.join(self._socket_dir, "ipc.socket"),
                {self.recipe.name: (self.svcuid, self.access)},
                self.bridge,
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def component_environment(self) -> dict[str, str]:
        """The variables the component process runs with."""
        if self.nucleus is None:
            raise RuntimeError("start() the core first")
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_VARIABLES}
        env["PATH"] = os.pathsep.join(
            [os.path.dirname(sys.executable), env.get("PATH", "/usr/bin:/bin")]
        )
        env.update(self.nucleus.component_environment(self.recipe.name))
        env.update(
            {
                "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.token_exchange.uri,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN": self.svcuid,
                "AWS_IOT_THING_NAME": self.core.thing_name,
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "GG_ROOT_CA_PATH": str(self.core.ca_file),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.environment)
        return env

    def start_component(self) -> subprocess.Popen[bytes]:
        """Start the component's Run step (``sh -c``, in its work folder, logging to
        :attr:`log_file`); ``RuntimeError`` if it already runs."""
        if self._running is not None and self._running.process.poll() is None:
            raise RuntimeError(f"{self.recipe.name} is already running")
        log = open(self.log_file, "ab")  # noqa: SIM115 (closed in stop_component)
        # a one-line step is exec'd: the process is the component's own (its signals, its
        # exit status); a script runs under sh, its process group stopped as a whole
        one_line = "\n" not in self.command.strip()
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {self.command.strip()}" if one_line else self.command],
            cwd=self.component_work,
            env=self.component_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._running = _Running(process, log)
        return process

    @property
    def component(self) -> subprocess.Popen[bytes] | None:
        """The component's process (None before the first start)."""
        return None if self._running is None else self._running.process

    def stop_component(self, *, kill: bool = False, timeout: float = 15.0) -> int | None:
        """Stop the component (SIGTERM, as the nucleus does, then SIGKILL after ``timeout``;
        ``kill``: SIGKILL at once, as a crash); returns its exit status."""
        running, self._running = self._running, None
        if running is None:
            return None
        process = running.process
        try:
            if process.poll() is None:
                group = os.getpgid(process.pid)
                os.killpg(group, signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(group, signal.SIGKILL)
                    process.wait(timeout)
        except ProcessLookupError:
            pass
        finally:
            running.log.close()
        return process.returncode

    def stop(self) -> None:
        """Stop the component, the IPC server, the token exchange service and the bridge."""
        self.stop_component()
        if self.nucleus is not None:
            self.nucleus.stop()
            self.nucleus = None
        self.token_exchange.stop()
        self.bridge.stop()
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
