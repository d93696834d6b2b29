"""The AWS IoT credentials provider: a device's X.509 certificate in, a role's credentials out.

On AWS a device calls ``GET https://<prefix>.credentials.iot.<region>.amazonaws.com/
role-aliases/<alias>/credentials`` over mutual TLS with its certificate, optionally naming
its thing in the ``x-amzn-iot-thingname`` header, and gets the temporary credentials of the
role the alias points to::

    {"credentials": {"accessKeyId": "ASIA…", "secretAccessKey": "…",
                     "sessionToken": "…", "expiration": "2026-11-29T06:00:00Z"}}

Locally, :class:`CredentialsProvider` serves the same request on 127.0.0.1 with the stack's
server certificate, and accepts only client certificates that chain to the device CA
(:class:`~infra.local.awsauth.devices.DeviceCA`). Who the certificate belongs to comes from a
:class:`~infra.local.awsauth.devices.DeviceDirectory`; the role aliases are given (the stack
builds them from the template's ``AWS::IoT::RoleAlias``).

The checks run in the order AWS answers them (measured against AWS by awslabs'
aws-iot-core-credential-provider-session-helper, ``docs/dev_notes.md``):

1. a certificate the directory does not know, or one that is not ``ACTIVE``: 403
   ``{"message": "Certificate is invalid on this endpoint"}`` (``x-amzn-ErrorType:
   AccessDeniedException``);
2. an ``x-amzn-iot-thingname`` the certificate is not attached to: 403 ``Invalid thing name
   passed``. The header is optional, as on AWS: without it the credentials carry no
   ``credentials-iot:ThingName``, so a role policy that uses it allows nothing;
3. IoT policies of the certificate that do not allow ``iot:AssumeRoleWithCertificate`` on
   ``arn:aws:iot:<region>:<account>:rolealias/<alias>``: 403 ``Access Denied`` (evaluated
   before the alias is looked up, as on AWS);
4. an alias that does not exist: 404 ``Role alias does not exist``;
5. a role ARN that names no role: 400 ``Unable to assume the role, or the role to assume does
   not exist``; an alias whose duration exceeds the role's ``MaxSessionDuration``: 400 ``The
   requested CredentialDurationSeconds exceeds the MaxSessionDuration set for the role``.

The statuses and messages are AWS's as measured there; of the ``x-amzn-ErrorType`` values
only ``AccessDeniedException`` (for the invalid certificate) was recorded, the others
(``ResourceNotFoundException`` for 404, ``InvalidRequestException`` for 400) are this
emulation's choice. The IoT policies are evaluated with the certificate's variables
(``iot:Certificate.Subject.CommonName``) only: AWS documents ``iot:Connection.Thing.*`` as
MQTT-only and ``credentials-iot:*`` as IAM-only.

A certificate that does not chain to the device CA, an expired one, or none at all fails the
TLS handshake. Errors are ``{"message": …}`` with ``x-amzn-ErrorType`` and
``x-amzn-RequestId`` headers. A method other than GET is a 405, any other path a 404, an
oversized request line or header a 414/431, a body over 64 KiB a 413 (in the same error
shape; AWS's answers to these were not measured).

The credentials go into the shared :class:`~infra.local.awsauth.credential_store
.CredentialStore` with the role's policies and the variables ``credentials-iot:ThingName``
(when a thing was named) and ``credentials-iot:AwsCertificateId`` (``credentials-iot:
ThingTypeName`` is not set: the device directory knows no thing types); their ARN is
``arn:aws:sts::<account>:assumed-role/<role name>/<certificate id>`` (the credentials
provider names the session after the certificate). As on AWS, they stay valid until they
expire even if the certificate is deactivated meanwhile.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from infra.local.awsauth.credential_store import CredentialStore, PolicyDocument, StoredCredential
from infra.local.awsauth.devices import Device, DeviceDirectory, certificate_id
from infra.local.awsauth.iam_policy import PolicyError, is_allowed
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.net.certs import TlsFiles
from infra.local.net.http_server import (
    HTTP_REFUSAL_TYPES,
    HttpRefusal,
    RefusingRequestHandler,
    TlsThreadingHTTPServer,
)
from infra.local.net.service import ServerThread

__all__ = [
    "THING_NAME_HEADER",
    "CredentialsProvider",
    "CredentialsProviderError",
    "RoleAlias",
]

log = logging.getLogger("tidings.credentials")

THING_NAME_HEADER = "x-amzn-iot-thingname"
THING_NAME_KEY = "credentials-iot:ThingName"
CERTIFICATE_ID_KEY = "credentials-iot:AwsCertificateId"
MIN_DURATION_S = 900
MAX_DURATION_S = 43200
DEFAULT_DURATION_S = 3600
IAM_DEFAULT_MAX_SESSION_S = 3600
MAX_BODY_BYTES = 64 * 1024
"""A GET has no body; a small one is read and ignored, a larger one refused (413)."""

_PATH = re.compile(r"/role-aliases/([^/]+)/credentials")
_ROLE_ARN = re.compile(r"arn:aws[\w-]*:iam::[0-9]{12}:role/(?:[\w+=,.@-]+/)*([\w+=,.@-]{1,64})")


class CredentialsProviderError(Exception):
    """A refused credentials request: HTTP ``status``, ``error_type``
    (``x-amzn-ErrorType``) and AWS's ``message``."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def _invalid_certificate() -> CredentialsProviderError:
    return CredentialsProviderError(
        403, "AccessDeniedException", "Certificate is invalid on this endpoint"
    )


def _invalid_thing_name() -> CredentialsProviderError:
    return CredentialsProviderError(403, "AccessDeniedException", "Invalid thing name passed")


def _access_denied() -> CredentialsProviderError:
    return CredentialsProviderError(403, "AccessDeniedException", "Access Denied")


def _no_such_alias() -> CredentialsProviderError:
    return CredentialsProviderError(404, "ResourceNotFoundException", "Role alias does not exist")


@dataclass(frozen=True)
class RoleAlias:
    """One ``AWS::IoT::RoleAlias``: the role it points to and how long credentials last."""

    role_arn: str
    role_policy_documents: Sequence[PolicyDocument]
    """The IAM policy documents of the role (what the credentials may do)."""
    duration_s: int = DEFAULT_DURATION_S
    """``CredentialDurationSeconds``: 900-43200, 3600 by default."""
    role_max_session_s: int = IAM_DEFAULT_MAX_SESSION_S
    """The role's ``MaxSessionDuration`` (IAM's default is 3600): AWS refuses to issue
    credentials for an alias whose duration exceeds it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "role_policy_documents", tuple(self.role_policy_documents))
        if not MIN_DURATION_S <= self.duration_s <= MAX_DURATION_S:
            raise ValueError(
                f"CredentialDurationSeconds must be {MIN_DURATION_S}-{MAX_DURATION_S}, "
                f"not {self.duration_s}"
            )


class _Issuer:
    """The provider's decisions, without HTTP: who asks, for which alias, what they get."""

    def __init__(
        self,
        devices: DeviceDirectory,
        role_aliases: Mapping[str, RoleAlias],
        credentials: CredentialStore,
        *,
        region: str,
        account_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.devices = devices
        self.role_aliases = dict(role_aliases)
        self.credentials = credentials
        self.region = region
        self.account_id = account_id
        self.clock = clock

    def alias_arn(self, alias: str) -> str:
        """``arn:aws:iot:<region>:<account>:rolealias/<alias>``."""
        return f"arn:aws:iot:{self.region}:{self.account_id}:rolealias/{alias}"

    def issue(self, der: bytes, alias: str, thing_names: Sequence[str]) -> StoredCredential:
        """Credentials of ``alias``'s role for the certificate ``der``, or
        :class:`CredentialsProviderError` (the checks and their order: the module doc)."""
        device = self.devices.lookup(der)
        if device is None or not device.active:
            raise _invalid_certificate()
        thing = self._thing(device, thing_names)
        if not self._may_assume(device, alias):
            raise _access_denied()
        role_alias = self.role_aliases.get(alias)
        if role_alias is None:
            raise _no_such_alias()
        role = _ROLE_ARN.fullmatch(role_alias.role_arn)
        if role is None:
            raise CredentialsProviderError(
                400,
                "InvalidRequestException",
                "Unable to assume the role, or the role to assume does not exist",
            )
        if role_alias.duration_s > role_alias.role_max_session_s:
            raise CredentialsProviderError(
                400,
                "InvalidRequestException",
                "The requested CredentialDurationSeconds exceeds the MaxSessionDuration set "
                "for the role",
            )
        variables = {CERTIFICATE_ID_KEY: device.certificate_id}
        if thing is not None:
            variables[THING_NAME_KEY] = thing
        role_name = role.group(1)
        credential = mint_temporary_credential(
            f"{role_name}/{device.certificate_id}",
            [list(role_alias.role_policy_documents)],
            lifetime_s=float(role_alias.duration_s),
            variables=variables,
            now=float(int(self.clock())),  # whole seconds: "expiration" is exact
        )
        credential = replace(
            credential,
            arn=f"arn:aws:sts::{self.account_id}:assumed-role/{role_name}/{device.certificate_id}",
        )
        self.credentials.put(credential)
        return credential

    @staticmethod
    def _thing(device: Device, thing_names: Sequence[str]) -> str | None:
        """The thing the request names (None: no header), or "Invalid thing name passed"."""
        if not thing_names:
            return None
        if len(set(thing_names)) != 1 or thing_names[0] not in device.things:
            raise _invalid_thing_name()
        return thing_names[0]

    def _may_assume(self, device: Device, alias: str) -> bool:
        """Whether the certificate's IoT policies allow ``iot:AssumeRoleWithCertificate``.

        Only the certificate's own variables resolve here: AWS documents the thing policy
        variables (``iot:Connection.Thing.*``) as available over MQTT only, and the
        ``credentials-iot:*`` ones in IAM policies only.
        """
        variables = {"iot:Certificate.Subject.CommonName": device.common_name}
        try:
            return is_allowed(
                [device.policies], "iot:AssumeRoleWithCertificate", self.alias_arn(alias), variables
            )
        except PolicyError as exc:
            log.warning(
                "certificate %s: an IoT policy cannot be evaluated: %s", device.certificate_id, exc
            )
            return False


def _iso(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch or 0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Handler(RefusingRequestHandler):
    issuer: _Issuer  # set on the subclass each provider makes
    allowed_methods = "GET"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, error_type: str, message: str, *, close: bool = False) -> None:
        headers = {"x-amzn-ErrorType": error_type}
        if close:
            self.close_connection = True
            headers["Connection"] = "close"
        self._json(status, {"message": message}, headers)

    def refuse(self, status: int, message: str) -> None:
        """HTTP-level refusals (method, request line, headers, body) as ``{"message"}``."""
        if status >= 500:
            self._error(500, "InternalFailureException", "An unexpected error has occurred.")
        else:
            error_type = HTTP_REFUSAL_TYPES.get(status, "BadRequestException")
            self._error(status, error_type, message, close=True)

    def do_GET(self) -> None:
        try:
            self.read_body(MAX_BODY_BYTES)  # read so the next request starts where it should
        except HttpRefusal as exc:
            self.refuse(exc.status, exc.message)
            return
        match = _PATH.fullmatch(urlsplit(self.path).path)
        if match is None:
            self._error(
                404,
                "ResourceNotFoundException",
                "No such path: send GET /role-aliases/<role alias>/credentials.",
            )
            return
        alias = unquote(match.group(1))
        connection = self.connection
        der = (
            connection.getpeercert(binary_form=True)
            if isinstance(connection, ssl.SSLSocket)
            else None
        )
        try:
            if not der:  # unreachable with CERT_REQUIRED; refused rather than trusted
                raise _invalid_certificate()
            credential = self.issuer.issue(
                der, alias, self.headers.get_all(THING_NAME_HEADER) or []
            )
        except CredentialsProviderError as exc:
            log.debug("credentials for role alias %r refused: %s", alias, exc)
            self._error(exc.status, exc.error_type, exc.message)
            return
        log.debug(
            "credentials for role alias %r issued to certificate %s",
            alias,
            certificate_id(der),
        )
        self._json(
            200,
            {
                "credentials": {
                    "accessKeyId": credential.access_key_id,
                    "secretAccessKey": credential.secret_access_key,
                    "sessionToken": credential.session_token,
                    "expiration": _iso(credential.expiration),
                }
            },
            {},
        )


class CredentialsProvider(ServerThread):
    """``with CredentialsProvider(devices, aliases, store, tls, device_ca) as p: p.url``

    Serves the AWS IoT credentials provider over HTTPS (mutual TLS) on 127.0.0.1.
    """

    name = "IoT credentials provider"

    def __init__(
        self,
        devices: DeviceDirectory,
        role_aliases: Mapping[str, RoleAlias],
        credentials: CredentialStore,
        tls: TlsFiles,
        device_ca_file: str | Path,
        *,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        request_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.credentials = credentials
        self.issuer = _Issuer(
            devices,
            role_aliases,
            credentials,
            region=region,
            account_id=account_id,
            clock=clock,
        )
        self._tls = tls
        self._device_ca_file = Path(device_ca_file)
        self._port = port
        self._request_timeout_s = request_timeout_s

    def _bind(self) -> TlsThreadingHTTPServer:
        issuer, timeout = self.issuer, self._request_timeout_s

        class Handler(_Handler):
            pass

        Handler.issuer = issuer
        Handler.request_timeout_s = timeout
        context = self._tls.mutual_tls_context(self._device_ca_file)
        server = TlsThreadingHTTPServer(("127.0.0.1", self._port), Handler, context)
        server.handshake_timeout_s = timeout
        return server

    def start(self) -> Self:
        """Serve in a background thread; returns this service."""
        super().start()
        log.info("IoT credentials provider on %s", self.url)
        return self

    @property
    def endpoint(self) -> str:
        """``localhost:<port>``: what ``DescribeEndpoint(iot:CredentialProvider)`` names
        (a host on AWS; here the port too)."""
        return f"localhost:{self.port}"

    @property
    def url(self) -> str:
        """``https://localhost:<port>``: credentials at ``/role-aliases/<alias>/credentials``."""
        return f"https://{self.endpoint}"

    def alias_arn(self, alias: str) -> str:
        """The ARN an IoT policy must allow ``iot:AssumeRoleWithCertificate`` on."""
        return self.issuer.alias_arn(alias)
