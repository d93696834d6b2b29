"""MQTT over mutual TLS for X.509 devices, as AWS IoT Core serves it on 8883 and on 443.

AWS IoT Core accepts device certificates two ways: on port 8883, where every connection is
MQTT over mutual TLS, and on port 443 when the client offers the ALPN protocol
``x-amzn-mqtt-ca`` (port 443 without it is HTTPS and WebSocket). This module holds the parts
that do no I/O:

- :func:`mtls_context` — the TLS server context for device connections: TLS 1.2 or later, a
  client certificate chaining to the device CA required (``CERT_REQUIRED``), ALPN
  ``x-amzn-mqtt-ca`` acknowledged when offered;
- :func:`offered_alpn` — the ALPN protocols a ClientHello offers, read from the raw bytes
  before TLS starts, so the 443 listener can pick the mutual-TLS context for device clients
  and keep the HTTPS/WebSocket context (no certificate request at all) for everyone else;
- :func:`device_credential` — the :class:`StoredCredential` the broker authorises a device
  with, with the policy variables AWS IoT sets for a certificate connection.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.awsauth.devices import Device
from infra.local.net.certs import TlsFiles

__all__ = [
    "MQTT_ALPN",
    "NEED_MORE",
    "device_credential",
    "mtls_context",
    "offered_alpn",
]

MQTT_ALPN = "x-amzn-mqtt-ca"
"""The ALPN protocol that asks AWS IoT Core's port 443 for MQTT over mutual TLS."""

NEED_MORE = None
"""What :func:`offered_alpn` answers while the ClientHello is still incomplete."""

MAX_CLIENT_HELLO_BYTES = 64 * 1024
"""A ClientHello still incomplete after this many bytes is not read further."""

_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01
_ALPN_EXTENSION = 0x0010


def mtls_context(tls: TlsFiles, device_ca_file: Path) -> ssl.SSLContext:
    """The server context for MQTT over mutual TLS: the gateway's server certificate, and a
    client certificate that chains to ``device_ca_file`` required."""
    context = tls.mutual_tls_context(device_ca_file)
    context.set_alpn_protocols([MQTT_ALPN])
    return context


def offered_alpn(data: bytes) -> tuple[str, ...] | None:
    """The ALPN protocols offered by the ClientHello at the start of ``data``.

    ``None`` (:data:`NEED_MORE`) while the ClientHello has not fully arrived; ``()`` when it
    offers none, or when ``data`` is not a TLS ClientHello at all (the TLS library then
    refuses it with its own error).
    """
    body = bytearray()
    offset = 0
    while True:
        if len(data) < offset + 5:
            return NEED_MORE if len(data) < MAX_CLIENT_HELLO_BYTES else ()
        if data[offset] != _HANDSHAKE_RECORD:
            return ()
        length = int.from_bytes(data[offset + 3 : offset + 5], "big")
        if len(data) < offset + 5 + length:
            return NEED_MORE if len(data) < MAX_CLIENT_HELLO_BYTES else ()
        body += data[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if len(body) >= 4:
            if body[0] != _CLIENT_HELLO:
                return ()
            needed = 4 + int.from_bytes(body[1:4], "big")
            if len(body) >= needed:
                return _alpn_in_client_hello(bytes(body[4:needed]))
        if length == 0:
            return ()


def _alpn_in_client_hello(hello: bytes) -> tuple[str, ...]:
    try:
        at = 2 + 32  # legacy_version, random
        at += 1 + hello[at]  # legacy_session_id
        at += 2 + int.from_bytes(hello[at : at + 2], "big")  # cipher_suites
        at += 1 + hello[at]  # legacy_compression_methods
        if at + 2 > len(hello):
            return ()
        end = min(len(hello), at + 2 + int.from_bytes(hello[at : at + 2], "big"))
        at += 2
        while at + 4 <= end:
            kind = int.from_bytes(hello[at : at + 2], "big")
            size = int.from_bytes(hello[at + 2 : at + 4], "big")
            at += 4
            if kind == _ALPN_EXTENSION:
                return _protocol_names(hello[at + 2 : at + size])
            at += size
    except IndexError:
        return ()
    return ()


def _protocol_names(data: bytes) -> tuple[str, ...]:
    names = []
    at = 0
    while at < len(data):
        size = data[at]
        names.append(data[at + 1 : at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    return tuple(names)


def device_credential(device: Device, client_id: str) -> StoredCredential:
    """What the broker authorises a device's connection with, once its client id is known.

    The certificate's IoT policies are the one policy set. As AWS IoT does for a certificate
    connection, ``iot:Connection.Thing.ThingName`` is set only when the client id is the name
    of a thing attached to the certificate, and ``iot:Connection.Thing.IsAttached`` says
    whether it is; ``iot:Certificate.Subject.CommonName`` is the certificate's CN. The
    principal is the certificate id (the ``principalIdentifier`` of lifecycle events).
    """
    variables = {"iot:Connection.Thing.IsAttached": "false"}
    if client_id and client_id in device.things:
        variables["iot:Connection.Thing.ThingName"] = client_id
        variables["iot:Connection.Thing.IsAttached"] = "true"
    if device.common_name:
        variables["iot:Certificate.Subject.CommonName"] = device.common_name
    return StoredCredential(
        access_key_id=f"x509:{device.certificate_id}",
        secret_access_key="",
        principal=device.certificate_id,
        policy_sets=(tuple(device.policies),),
        variables=variables,
        arn=device.certificate_arn,
    )
