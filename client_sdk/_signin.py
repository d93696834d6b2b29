"""How a client signs in: one typed value per ``POST /v1/login`` method.

``Password(username, password)``, ``IdToken(token)`` and ``Device(thing_name, secret)`` are
frozen values that hide their secrets from ``repr``, logs and tracebacks. The client keeps
the value and signs in again with it when its OpenID token runs out, so an ``IdToken`` may be
given a function that returns a fresh token each time.

``X509(cert_file, key_file, thing_name, ...)`` is a device with an AWS IoT certificate: it
does not use ``/v1/login`` at all. Its identity is the certificate (MQTT over mutual TLS, the
thing's name as client id) and its AWS credentials come from the AWS IoT credentials
provider; :meth:`X509.from_device_file` reads what ``tidings devices add`` writes.

The 0.x form, a method name and the login fields as keyword arguments
(``connect(url, "password", username=..., password=...)``), is translated here by
:func:`sign_in_from_fields`; it is deprecated.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "LEGACY_FIELDS",
    "LEGACY_OPTIONAL_FIELDS",
    "X509",
    "Device",
    "GreengrassCore",
    "IdToken",
    "Password",
    "SignIn",
    "login_body",
    "sign_in_from_fields",
]

_HIDDEN = "'***'"


def _require_text(owner: str, **values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{owner}: {name} must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError(f"{owner}: {name} is empty")


@dataclass(frozen=True, repr=False)
class Password:
    """Sign in with a Tidings user's name and password (``tidings users add``)."""

    username: str
    password: str

    def __post_init__(self) -> None:
        _require_text("Password", username=self.username, password=self.password)

    def __repr__(self) -> str:
        return f"Password(username={self.username!r}, password={_HIDDEN})"


@dataclass(frozen=True, repr=False)
class IdToken:
    """Sign in with a Cognito user pool or OpenID Connect ID token (a JWT).

    ``token`` is the JWT, or a function returning a current one: the client signs in again
    when its own OpenID token runs out (every hour by default), and an ID token given as a
    string may have expired by then.
    """

    token: str | Callable[[], str]

    def __post_init__(self) -> None:
        if not callable(self.token):
            _require_text("IdToken", token=self.token)

    def current(self) -> str:
        """The token to sign in with now (calls the function when one was given)."""
        token = self.token() if callable(self.token) else self.token
        _require_text("IdToken", token=token)
        return token

    def __repr__(self) -> str:
        return f"IdToken(token={_HIDDEN})"


@dataclass(frozen=True, repr=False)
class Device:
    """Sign in as a registered device (an IoT thing) with its secret."""

    thing_name: str
    secret: str

    def __post_init__(self) -> None:
        _require_text("Device", thing_name=self.thing_name, secret=self.secret)

    def __repr__(self) -> str:
        return f"Device(thing_name={self.thing_name!r}, secret={_HIDDEN})"


DEFAULT_TOPIC_PREFIX = "tidings/dev/"
"""The topic prefix of the ``dev`` stage (``tidings/<stage>/``)."""

_AWS_HOST = re.compile(r"\.iot\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?(?::\d+)?$")


def _region_of(*hosts: str) -> str | None:
    """The region an AWS IoT host name carries (``…-ats.iot.<region>.amazonaws.com``,
    ``….credentials.iot.<region>.amazonaws.com``), or None (``localhost``)."""
    for host in hosts:
        found = _AWS_HOST.search(host)
        if found:
            return found.group(1)
    return None


@dataclass(frozen=True, init=False)
class X509:
    """Sign in as an AWS IoT thing with its X.509 certificate (no ``/v1/login``).

    ``cert_file`` and ``key_file`` are the device's certificate and private key (PEM files);
    ``thing_name`` is the thing the certificate is attached to, and the MQTT client id (the
    thing policy requires it: a second connection with the same thing name takes the first
    one over). ``endpoint`` and ``port`` are AWS IoT's data endpoint (``iot:Data-ATS``) and
    its MQTT over mutual TLS port (8883; 443 works too, with ALPN ``x-amzn-mqtt-ca``).
    ``role_alias`` and ``credentials_endpoint`` (``iot:CredentialProvider``, a host name) are
    where the device exchanges its certificate for the AWS credentials that sign its calls to
    the channels API. ``region`` is read from the AWS host names when not given (it must be
    given for any other endpoint, such as the local stack's ``localhost``).
    ``topic_prefix`` is the stack's ``tidings/<stage>/``. ``ca_file`` is the CA that signs the
    IoT endpoints (AmazonRootCA1; None: ``ClientOptions.ca_file``, then the system store).

    The key is a file name: ``repr`` shows nothing secret.
    """

    cert_file: str
    key_file: str
    thing_name: str
    endpoint: str
    role_alias: str
    credentials_endpoint: str
    port: int
    region: str
    topic_prefix: str
    ca_file: str | None

    def __init__(
        self,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        thing_name: str,
        *,
        endpoint: str,
        role_alias: str,
        credentials_endpoint: str,
        port: int = 8883,
        region: str | None = None,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        cert, key = _path_text("cert_file", cert_file), _path_text("key_file", key_file)
        _require_text(
            "X509",
            thing_name=thing_name,
            endpoint=endpoint,
            role_alias=role_alias,
            credentials_endpoint=credentials_endpoint,
            topic_prefix=topic_prefix,
        )
        if "/" in thing_name or "+" in thing_name or "#" in thing_name:
            raise ValueError(f"X509: thing_name {thing_name!r} is not a thing name")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"X509: port must be a TCP port, not {port!r}")
        if not topic_prefix.endswith("/"):
            raise ValueError(
                f"X509: topic_prefix must end with '/' (tidings/<stage>/), not {topic_prefix!r}"
            )
        host = credentials_endpoint.removeprefix("https://").rstrip("/")
        if not host or "/" in host:
            raise ValueError(
                f"X509: credentials_endpoint is a host name (…credentials.iot.<region>."
                f"amazonaws.com), not {credentials_endpoint!r}"
            )
        found = region if region is not None else _region_of(endpoint, host)
        if found is None:
            raise ValueError(
                f"X509: pass region=: it cannot be told from the endpoint {endpoint!r} "
                "(only from AWS IoT's host names)"
            )
        _require_text("X509", region=found)
        put("cert_file", cert)
        put("key_file", key)
        put("thing_name", thing_name)
        put("endpoint", endpoint)
        put("role_alias", role_alias)
        put("credentials_endpoint", host)
        put("port", port)
        put("region", found)
        put("topic_prefix", topic_prefix)
        put("ca_file", None if ca_file is None else _path_text("ca_file", ca_file))

    @classmethod
    def from_device_file(
        cls,
        device_file: str | os.PathLike[str],
        cert_dir: str | os.PathLike[str] | None = None,
        *,
        region: str | None = None,
        topic_prefix: str | None = None,
        port: int | None = None,
    ) -> X509:
        """The device ``tidings devices add NAME --out DIR`` made: ``DIR/NAME.json``.

        The certificate, key and CA are ``NAME.cert.pem``, ``NAME.private.key`` and
        ``root-ca.pem`` in ``cert_dir`` (default: the file's own directory; no
        ``root-ca.pem`` there: ``ca_file`` is None). The file's ``mqttPort`` is the port.
        ``port=``, ``region=`` and ``topic_prefix=`` win over the file's ``mqttPort``,
        ``region`` and ``topicPrefix``; without either, ``topic_prefix`` is ``tidings/dev/``
        and the region is read from AWS host names (else a ``ValueError``: pass ``region=``).
        """
        path = Path(device_file)
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{path} is not a device file (JSON): {exc}") from exc
        if not isinstance(info, dict):
            raise ValueError(f"{path} is not a device file: a JSON object was expected")
        missing = [
            k
            for k in ("thingName", "endpoint", "roleAlias", "credentialsEndpoint")
            if not info.get(k)
        ]
        if missing:
            raise ValueError(f"{path} has no {', '.join(missing)}")
        name = str(info["thingName"])
        folder = Path(cert_dir) if cert_dir is not None else path.parent
        ca = folder / "root-ca.pem"
        return cls(
            folder / f"{name}.cert.pem",
            folder / f"{name}.private.key",
            name,
            endpoint=str(info["endpoint"]),
            port=port if port is not None else int(info.get("mqttPort") or 8883),
            role_alias=str(info["roleAlias"]),
            credentials_endpoint=str(info["credentialsEndpoint"]),
            region=region if region is not None else (info.get("region") or None),
            topic_prefix=topic_prefix or str(info.get("topicPrefix") or DEFAULT_TOPIC_PREFIX),
            ca_file=ca if ca.is_file() else None,
        )

    @property
    def credentials_url(self) -> str:
        """The credentials provider's URL for the role alias."""
        return f"https://{self.credentials_endpoint}/role-aliases/{self.role_alias}/credentials"


def _path_text(name: str, value: object) -> str:
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"X509: {name} must be a file name, not {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text:
        raise ValueError(f"X509: {name} is empty")
    return text


@dataclass(frozen=True, repr=False)
class GreengrassCore:
    """Run as a component on an AWS IoT Greengrass v2 core device (no ``/v1/login``).

    The core device's thing is the identity: pushes arrive through the nucleus's IPC
    (``SubscribeToIoTCore``; the recipe's ``aws.greengrass.ipc.mqttproxy`` access control
    must allow the channels' topics), and the channels API is signed with the credentials of
    the nucleus's token exchange service (the core's role alias). Make it with
    :meth:`from_environment`, from the variables the nucleus gives a component.

    ``ipc_socket`` and ``svcuid`` are the nucleus's IPC socket and the component's token
    (``AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT``, ``SVCUID``);
    ``credentials_uri`` and ``authorization_token`` the token exchange service's
    (``AWS_CONTAINER_CREDENTIALS_FULL_URI``, ``AWS_CONTAINER_AUTHORIZATION_TOKEN``);
    ``thing_name`` the core device (``AWS_IOT_THING_NAME``; ``things/me/...`` expands to
    it); ``region`` is ``AWS_REGION``. ``repr`` hides both tokens.
    """

    thing_name: str
    region: str
    ipc_socket: str
    svcuid: str
    credentials_uri: str
    authorization_token: str
    topic_prefix: str = DEFAULT_TOPIC_PREFIX

    ENVIRONMENT: ClassVar[Mapping[str, str]] = {
        "ipc_socket": "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT",
        "svcuid": "SVCUID",
        "credentials_uri": "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "authorization_token": "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "thing_name": "AWS_IOT_THING_NAME",
        "region": "AWS_REGION",
    }
    """Each field and the variable the nucleus sets it in."""

    def __post_init__(self) -> None:
        _require_text(
            "GreengrassCore",
            thing_name=self.thing_name,
            region=self.region,
            ipc_socket=self.ipc_socket,
            svcuid=self.svcuid,
            credentials_uri=self.credentials_uri,
            authorization_token=self.authorization_token,
            topic_prefix=self.topic_prefix,
        )
        if not self.topic_prefix.endswith("/"):
            raise ValueError(
                "GreengrassCore: topic_prefix must end with '/' (tidings/<stage>/), "
                f"not {self.topic_prefix!r}"
            )
        if not self.credentials_uri.startswith(("http://", "https://")):
            raise ValueError(
                f"GreengrassCore: credentials_uri must be an http(s) URL, not "
                f"{self.credentials_uri!r}"
            )

    @classmethod
    def from_environment(
        cls, topic_prefix: str = DEFAULT_TOPIC_PREFIX, environ: Mapping[str, str] | None = None
    ) -> GreengrassCore:
        """The core this component runs on, from the nucleus's variables (``os.environ``).

        Raises :class:`ValueError` naming the variables that are missing: the process was not
        started by a nucleus (or its recipe does not declare the token exchange service as a
        dependency, which sets the credentials variables).
        """
        env = os.environ if environ is None else environ
        missing = [name for name in cls.ENVIRONMENT.values() if not env.get(name)]
        if "AWS_REGION" in missing and env.get("AWS_DEFAULT_REGION"):
            missing.remove("AWS_REGION")
        if missing:
            raise ValueError(
                "GreengrassCore: not started by a Greengrass nucleus, these variables are "
                f"missing: {', '.join(missing)} (the credentials ones come from a dependency on "
                "aws.greengrass.TokenExchangeService)"
            )
        values = {field: env.get(name, "") for field, name in cls.ENVIRONMENT.items()}
        values["region"] = values["region"] or env.get("AWS_DEFAULT_REGION", "")
        return cls(**values, topic_prefix=topic_prefix)

    def __repr__(self) -> str:
        return (
            f"GreengrassCore(thing_name={self.thing_name!r}, region={self.region!r}, "
            f"ipc_socket={self.ipc_socket!r}, credentials_uri={self.credentials_uri!r}, "
            f"svcuid={_HIDDEN}, authorization_token={_HIDDEN})"
        )


SignIn = Password | IdToken | Device | X509 | GreengrassCore
"""Any of the sign-in values :meth:`client_sdk.Tidings.connect` accepts."""

LEGACY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "password": ("username", "password"),
    "id_token": ("id_token",),
    "device": ("thing_name", "secret"),
    "x509": (
        "cert_file",
        "key_file",
        "thing_name",
        "endpoint",
        "role_alias",
        "credentials_endpoint",
    ),
}
"""The 0.x ``method`` names and the keyword arguments each needed."""

LEGACY_OPTIONAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "x509": ("port", "region", "topic_prefix"),
}
"""The keyword arguments a 0.x ``method`` may also take (``ca_file`` is an option)."""


def login_body(sign_in: SignIn) -> dict[str, str]:
    """The JSON body of ``POST /v1/login`` for ``sign_in``."""
    if isinstance(sign_in, Password):
        return {"method": "password", "username": sign_in.username, "password": sign_in.password}
    if isinstance(sign_in, IdToken):
        return {"method": "id_token", "id_token": sign_in.current()}
    if isinstance(sign_in, Device):
        return {"method": "device", "thing_name": sign_in.thing_name, "secret": sign_in.secret}
    if isinstance(sign_in, X509 | GreengrassCore):
        raise TypeError(f"{type(sign_in).__name__} does not use /v1/login")
    raise TypeError(
        f"sign in with Password(...), IdToken(...) or Device(...), not {type(sign_in).__name__}"
    )


def sign_in_from_fields(method: str, fields: Mapping[str, Any]) -> SignIn:
    """The 0.x form: ``method`` and its login fields as keyword arguments.

    Raises :class:`ValueError` for an unknown method and :class:`TypeError` for a missing or
    unexpected field (nothing unknown is ever sent to the server).
    """
    expected = LEGACY_FIELDS.get(method)
    if expected is None:
        known = ", ".join(repr(name) for name in LEGACY_FIELDS)
        raise ValueError(f"unknown sign-in method {method!r}; the methods are {known}")
    unexpected = sorted(set(fields) - set(expected) - set(LEGACY_OPTIONAL_FIELDS.get(method, ())))
    if unexpected:
        raise TypeError(f"connect() got an unexpected keyword argument {unexpected[0]!r}")
    missing = [name for name in expected if name not in fields]
    if missing:
        raise TypeError(f"sign-in method {method!r} needs {', '.join(missing)}")
    if method == "password":
        return Password(fields["username"], fields["password"])
    if method == "id_token":
        return IdToken(fields["id_token"])
    if method == "x509":
        return X509(
            fields["cert_file"],
            fields["key_file"],
            fields["thing_name"],
            **{k: v for k, v in fields.items() if k not in ("cert_file", "key_file", "thing_name")},
        )
    return Device(fields["thing_name"], fields["secret"])
