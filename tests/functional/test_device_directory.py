"""``IotDeviceDirectory`` against a moto server (the IoT control plane, the stack's fixes).

Devices are made with the calls one makes on AWS (``CreateThing``,
``CreateKeysAndCertificate`` signed by a device CA, ``CreatePolicy``, ``AttachPolicy``,
``AttachThingPrincipal``); the directory is asked with the certificate's DER, as the
gateway and the credentials provider ask it with the certificate a client presented.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from infra.local.awsauth.devices import DeviceCA, certificate_id
from infra.local.motohost.fixes.iot_device_ca import DEVICE_CA_DIR_ENV
from infra.local.stack.device_directory import DeviceDirectoryError, IotDeviceDirectory
from tests.support.moto_server import free_port, moto_client, moto_server

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
}


@dataclass
class Made:
    thing: str
    policy: str
    der: bytes
    certificate_id: str
    certificate_arn: str


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def iot(moto: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # the in-process moto reads the variable per request, as the stack's moto process does
    monkeypatch.setenv(DEVICE_CA_DIR_ENV, str(DeviceCA.load_or_create(tmp_path).cert_file.parent))
    return moto_client("iot", moto)


def make_device(iot: Any) -> Made:
    name = f"device-{uuid.uuid4().hex[:8]}"
    iot.create_thing(thingName=name)
    made = iot.create_keys_and_certificate(setAsActive=True)
    iot.create_policy(policyName=f"{name}-policy", policyDocument=json.dumps(POLICY))
    iot.attach_policy(policyName=f"{name}-policy", target=made["certificateArn"])
    iot.attach_thing_principal(thingName=name, principal=made["certificateArn"])
    der = x509.load_pem_x509_certificate(made["certificatePem"].encode()).public_bytes(
        serialization.Encoding.DER
    )
    return Made(name, f"{name}-policy", der, made["certificateId"], made["certificateArn"])


class CountingIot:
    """The moto client, counting the calls made through it."""

    def __init__(self, iot: Any) -> None:
        self.iot = iot
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.iot, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            return method(**kwargs)

        return call


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_lookup_describes_the_certificate_its_things_and_policies(iot: Any) -> None:
    made = make_device(iot)
    device = IotDeviceDirectory(iot).lookup(made.der)
    assert device is not None
    assert device.certificate_id == made.certificate_id == certificate_id(made.der)
    assert device.certificate_arn == made.certificate_arn
    assert device.status == "ACTIVE" and device.active
    assert device.things == (made.thing,)
    assert device.policies == (POLICY,)
    assert device.common_name == "AWS IoT Certificate"


def test_an_unregistered_certificate_is_none(iot: Any, tmp_path: Path) -> None:
    pem, _ = DeviceCA.load_or_create(tmp_path / "other").issue("stranger")
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    assert IotDeviceDirectory(iot).lookup(der) is None


def test_a_certificate_whose_stored_der_differs_is_none(iot: Any) -> None:
    """An id names one certificate, but the stored PEM is compared with what was shown."""
    made = make_device(iot)

    class Impostor(CountingIot):
        def describe_certificate(self, **kwargs: Any) -> Any:
            answer = self.iot.describe_certificate(**kwargs)
            other = make_device(self.iot)
            pem = self.iot.describe_certificate(certificateId=other.certificate_id)
            answer["certificateDescription"]["certificatePem"] = pem["certificateDescription"][
                "certificatePem"
            ]
            return answer

    assert IotDeviceDirectory(Impostor(iot)).lookup(made.der) is None


def test_answers_are_kept_for_cache_s(iot: Any) -> None:
    made = make_device(iot)
    counting = CountingIot(iot)
    now = [100.0]
    directory = IotDeviceDirectory(counting, cache_s=2.0, clock=lambda: now[0])
    first = directory.lookup(made.der)
    calls = len(counting.calls)
    assert calls >= 4  # describe, things, attached policies, the policy
    assert directory.lookup(made.der) == first
    assert len(counting.calls) == calls
    iot.update_certificate(certificateId=made.certificate_id, newStatus="INACTIVE")
    now[0] += 2.5
    later = directory.lookup(made.der)
    assert len(counting.calls) == 2 * calls
    assert later is not None and later.status == "INACTIVE" and not later.active


def test_the_watcher_reports_status_thing_policy_changes_and_deletion(iot: Any) -> None:
    made = make_device(iot)
    unchanged = make_device(iot)
    changed: list[str] = []
    directory = IotDeviceDirectory(iot, cache_s=60.0, poll_interval_s=0.05)
    directory.add_listener(changed.append)
    assert directory.lookup(made.der) is not None
    assert directory.lookup(unchanged.der) is not None
    with directory:
        time.sleep(0.2)
        assert changed == []  # nothing changed, nothing reported

        iot.update_certificate(certificateId=made.certificate_id, newStatus="INACTIVE")
        wait_for(lambda: changed == [made.certificate_id])
        device = directory.lookup(made.der)  # the cache follows the watcher
        assert device is not None and device.status == "INACTIVE"

        iot.detach_policy(policyName=made.policy, target=made.certificate_arn)
        wait_for(lambda: len(changed) == 2)
        device = directory.lookup(made.der)
        assert device is not None and device.policies == ()

        iot.detach_thing_principal(thingName=made.thing, principal=made.certificate_arn)
        wait_for(lambda: len(changed) == 3)
        iot.delete_certificate(certificateId=made.certificate_id)
        wait_for(lambda: len(changed) == 4)
        assert directory.lookup(made.der) is None
        time.sleep(0.2)
    assert changed == [made.certificate_id] * 4  # reported once each, never the other one


def test_a_failing_listener_does_not_stop_the_others(iot: Any) -> None:
    made = make_device(iot)
    seen: list[str] = []

    def broken(cert_id: str) -> None:
        raise RuntimeError("listener bug")

    directory = IotDeviceDirectory(iot)
    directory.add_listener(broken)
    directory.add_listener(seen.append)
    directory.lookup(made.der)
    iot.update_certificate(certificateId=made.certificate_id, newStatus="REVOKED")
    assert directory.check_now() == [made.certificate_id]
    assert seen == [made.certificate_id]
    assert directory.check_now() == []


def test_the_watcher_follows_at_most_max_watched_certificates(iot: Any) -> None:
    first, second = make_device(iot), make_device(iot)
    counting = CountingIot(iot)
    directory = IotDeviceDirectory(counting, max_watched=1)
    directory.lookup(first.der)
    directory.lookup(second.der)
    counting.calls.clear()
    iot.update_certificate(certificateId=first.certificate_id, newStatus="INACTIVE")
    assert directory.check_now() == []  # the first is no longer watched
    assert counting.calls.count("describe_certificate") == 1


def test_start_and_stop_a_daemon_thread_idempotently(iot: Any) -> None:
    directory = IotDeviceDirectory(iot, poll_interval_s=0.05)
    before = set(threading.enumerate())
    directory.start()
    directory.start()
    (thread,) = set(threading.enumerate()) - before
    assert thread.daemon and thread.name == "device-directory"
    directory.stop()
    directory.stop()
    assert not thread.is_alive()


def test_an_unreachable_control_plane_is_a_device_directory_error(iot: Any) -> None:
    made = make_device(iot)
    nowhere = moto_client("iot", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DeviceDirectoryError, match="could not be asked"):
        IotDeviceDirectory(nowhere).lookup(made.der)


def test_a_change_a_lookup_saw_first_is_still_reported(iot: Any) -> None:
    """The watcher measures changes from what it last reported, not from the cache."""
    made = make_device(iot)
    directory = IotDeviceDirectory(iot, cache_s=0.0)
    seen: list[str] = []
    directory.add_listener(seen.append)
    directory.lookup(made.der)
    iot.update_certificate(certificateId=made.certificate_id, newStatus="INACTIVE")
    device = directory.lookup(made.der)
    assert device is not None and device.status == "INACTIVE"
    assert directory.check_now() == [made.certificate_id]
    assert seen == [made.certificate_id]
