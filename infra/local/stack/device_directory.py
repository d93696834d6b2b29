"""Who a presented X.509 certificate belongs to, asked of the IoT control plane.

:class:`IotDeviceDirectory` is the :class:`~infra.local.awsauth.devices.DeviceDirectory` of
the local stack: it asks the IoT control plane (moto locally, through boto3 and the calls AWS
IoT has) what AWS IoT Core and its credentials provider know when a device connects:

- ``DescribeCertificate`` by the certificate's id (the SHA-256 of its DER): its status, and
  its PEM, whose DER must be the one presented (an id names one certificate, but a stored
  certificate is compared, not trusted by its name);
- ``ListPrincipalThings``: the things attached to the certificate;
- ``ListAttachedPolicies`` and ``GetPolicy``: the IoT policy documents attached to it.

Answers are kept for :attr:`IotDeviceDirectory.cache_s` seconds. Once started
(:meth:`IotDeviceDirectory.start`), a background thread describes every certificate looked
up so far (at most :attr:`IotDeviceDirectory.max_watched`, the most recently looked up)
again every :attr:`IotDeviceDirectory.poll_interval_s` seconds and calls each listener with
the id of a certificate whose status, things or policies changed, or that was deleted, so a
service can close the connections that certificate holds. AWS IoT applies such changes to
live connections too (an ``INACTIVE`` certificate's connections are closed).

The control plane's failures are :class:`DeviceDirectoryError`, never a raw ``ClientError``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.local.awsauth.devices import Device, certificate_id

__all__ = ["DeviceDirectoryError", "IotDeviceDirectory"]

log = logging.getLogger("tidings.devices")


class DeviceDirectoryError(Exception):
    """The IoT control plane could not be asked (unreachable, refused, malformed answer)."""


@dataclass(frozen=True)
class _Entry:
    device: Device | None
    expires: float


class IotDeviceDirectory:
    """The IoT control plane as a :class:`~infra.local.awsauth.devices.DeviceDirectory`.

    ``iot_client`` is a boto3 ``iot`` client (thread-safe, as boto3 clients are). ``clock``
    is injectable for tests of the cache.
    """

    def __init__(
        self,
        iot_client: Any,
        *,
        cache_s: float = 5.0,
        poll_interval_s: float = 1.0,
        max_watched: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iot = iot_client
        self.cache_s = cache_s
        """How long a lookup's answer is kept (the watcher refreshes what it watches)."""
        self.poll_interval_s = poll_interval_s
        """How often the watcher describes the watched certificates again."""
        self.max_watched = max_watched
        """The most certificates the watcher follows (the most recently looked up)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _Entry] = {}
        self._watched: OrderedDict[str, tuple[bytes, Device]] = OrderedDict()
        self._listeners: list[Callable[[str], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ DeviceDirectory
    def lookup(self, der: bytes) -> Device | None:
        """The registered certificate with this DER, or None when it is not registered.

        Raises :class:`DeviceDirectoryError` when the control plane cannot be asked.
        """
        cert_id = certificate_id(der)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(cert_id)
            if entry is not None and entry.expires > now:
                if entry.device is not None:
                    self._watched.move_to_end(cert_id)
                return entry.device
        device = self._describe(cert_id, der)
        with self._lock:
            self._cache[cert_id] = _Entry(device, self._clock() + self.cache_s)
            if cert_id in self._watched:
                # only the watcher moves what a change is measured from, so a change this
                # lookup saw first is still reported
                self._watched.move_to_end(cert_id)
            elif device is not None:
                self._watched[cert_id] = (der, device)
                while len(self._watched) > self.max_watched:
                    self._watched.popitem(last=False)
            self._purge_expired(now)
        return device

    def peek(self, der: bytes) -> tuple[bool, Device | None]:
        """``(True, device)`` when the cache holds a fresh answer for ``der``; else
        ``(False, None)`` (:meth:`lookup` would ask the control plane)."""
        cert_id = certificate_id(der)
        with self._lock:
            entry = self._cache.get(cert_id)
            if entry is None or entry.expires <= self._clock():
                return False, None
            if entry.device is not None:
                self._watched.move_to_end(cert_id)
            return True, entry.device

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(certificate_id)`` when a watched certificate's status, things or
        policies changed, or it was deleted (from the watcher's thread)."""
        with self._lock:
            self._listeners.append(listener)

    # ------------------------------------------------------------------ the watcher
    def start(self) -> IotDeviceDirectory:
        """Start the watcher (a daemon thread); returns the directory."""
        with self._lock:
            if self._thread is not None:
                return self
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._watch, daemon=True, name="device-directory"
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the watcher and wait for it (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout=max(5.0, self.poll_interval_s * 2))

    def __enter__(self) -> IotDeviceDirectory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_now(self) -> list[str]:
        """Describe every watched certificate again, now; call the listeners with the ids
        that changed or were deleted, and return those ids (the watcher's one pass)."""
        with self._lock:
            watched = list(self._watched.items())
        changed: list[str] = []
        for cert_id, (der, before) in watched:
            try:
                after = self._describe(cert_id, der)
            except DeviceDirectoryError as exc:
                log.warning("could not describe certificate %s: %s", cert_id, exc)
                continue
            with self._lock:
                if cert_id not in self._watched:
                    continue  # evicted meanwhile
                if after is None:
                    del self._watched[cert_id]
                else:
                    self._watched[cert_id] = (der, after)
                self._cache[cert_id] = _Entry(after, self._clock() + self.cache_s)
            if after != before:
                changed.append(cert_id)
        if changed:
            with self._lock:
                listeners = list(self._listeners)
            for cert_id in changed:
                for listener in listeners:
                    try:
                        listener(cert_id)
                    except Exception:
                        log.exception("a device directory listener failed for %s", cert_id)
        return changed

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.check_now()
            except Exception:  # the watcher must outlive one bad pass
                log.exception("the device directory's watcher failed one pass")

    # ------------------------------------------------------------------ control plane
    def _describe(self, cert_id: str, der: bytes) -> Device | None:
        """The device with this id whose stored certificate is ``der``, asked now."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            try:
                description = self.iot.describe_certificate(certificateId=cert_id)[
                    "certificateDescription"
                ]
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return None
                raise
            if _der_of(str(description.get("certificatePem", ""))) != der:
                return None
            arn = str(description["certificateArn"])
            things = self._things(arn)
            policies = self._policies(arn)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return None  # deleted between two calls
            raise DeviceDirectoryError(f"the IoT control plane refused: {exc}") from exc
        except (BotoCoreError, KeyError, ValueError) as exc:
            raise DeviceDirectoryError(f"the IoT control plane could not be asked: {exc}") from exc
        return Device(
            certificate_id=cert_id,
            certificate_arn=arn,
            status=str(description["status"]),
            things=things,
            policies=policies,
            common_name=_common_name(der),
        )

    def _things(self, arn: str) -> tuple[str, ...]:
        things: list[str] = []
        token: str | None = None
        while True:
            page = self.iot.list_principal_things(
                principal=arn, **({"nextToken": token} if token else {})
            )
            things.extend(str(name) for name in page.get("things", []))
            token = page.get("nextToken")
            if not token:
                return tuple(sorted(things))

    def _policies(self, arn: str) -> tuple[Mapping[str, Any], ...]:
        names: list[str] = []
        marker: str | None = None
        while True:
            page = self.iot.list_attached_policies(
                target=arn, **({"marker": marker} if marker else {})
            )
            names.extend(str(p["policyName"]) for p in page.get("policies", []))
            marker = page.get("nextMarker")
            if not marker:
                break
        documents: list[Mapping[str, Any]] = []
        for name in sorted(set(names)):
            document = self.iot.get_policy(policyName=name)["policyDocument"]
            documents.append(json.loads(document) if isinstance(document, str) else document)
        return tuple(documents)

    def _purge_expired(self, now: float) -> None:
        """Drop expired answers about certificates nobody watches (call with the lock)."""
        if len(self._cache) <= 2 * self.max_watched:
            return
        for cert_id in [k for k, e in self._cache.items() if e.expires <= now]:
            if cert_id not in self._watched:
                del self._cache[cert_id]


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _der_of(pem: str) -> bytes | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        return x509.load_pem_x509_certificate(pem.encode("utf-8")).public_bytes(
            serialization.Encoding.DER
        )
    except ValueError:
        return None


def _common_name(der: bytes) -> str:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
    except ValueError:
        return ""
    return str(names[0].value) if names else ""
