"""iot-data Publish as one SigV4-signed HTTPS POST, without botocore's per-call pipeline.

The publisher sends up to a hundred QoS 1 publishes per batch, and in Lambda CPU is scarce
(512 MB is about a third of a vCPU). A boto3 ``iot-data`` call spends about 1.2 ms of CPU on
this machine (parameter handling, endpoint rules, user agent, event hooks, signing, parsing),
this client about 0.65 ms: the same request (``POST /topics/<topic>?qos=<qos>``, botocore's
``SigV4Auth`` with the ``iotdata`` signing name), sent on a urllib3 pool. Everything is
resolved the standard way, through a botocore session: region, endpoint
(``AWS_ENDPOINT_URL_IOT_DATA_PLANE`` or AWS's ``data-ats`` endpoint), refreshable credentials
and the CA bundle (``AWS_CA_BUNDLE``). Throttling, 5xx and connection errors are retried
(3 attempts, jittered backoff); any other answer raises :class:`~backend.errors.PublishError`.

Connections are kept alive in a small pool of ``http.client`` connections (a connection
the server closed while idle is noticed before reuse). ``publish(..., on_sent=f)`` calls
``f()`` once the request has left, before waiting for the answer: the publisher starts the
next publish of a channel only then, so several can be in flight while they still reach the
endpoint in ``seq`` order.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from botocore.utils import percent_encode

from backend.errors import ConfigurationError, PublishError
from backend.signed_http import CONNECTION_ERRORS, RETRYABLE_STATUS, SignedPoster

__all__ = ["SignedPublishClient"]


class SignedPublishClient:
    """``publish(topic=, qos=, payload=)`` with the call shape of boto3's iot-data client."""

    reports_sent = True  # publish() takes on_sent (see the module's notes)

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Any,
        *,
        verify: str | bool = True,
        pool_size: int = 10,
        signing_name: str = "iotdata",
        max_attempts: int = 3,
        timeout_s: float = 10.0,
    ) -> None:
        """``credentials`` is a botocore credentials object (``get_frozen_credentials()``)."""
        self._poster = SignedPoster(
            endpoint_url,
            region,
            signing_name,
            credentials,
            verify=verify,
            pool_size=pool_size,
            timeout_s=timeout_s,
        )
        self.max_attempts = max_attempts

    @classmethod
    def from_environment(cls, pool_size: int = 10) -> SignedPublishClient:
        """Region, endpoint, credentials and CA bundle from the standard AWS settings."""
        import botocore.session

        session = botocore.session.get_session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ConfigurationError("no AWS credentials for iot-data Publish")
        client = session.create_client("iot-data")
        verify = session.get_config_variable("ca_bundle") or True
        return cls(
            client.meta.endpoint_url,
            client.meta.region_name,
            credentials,
            verify=verify,
            pool_size=pool_size,
            signing_name=client.meta.service_model.signing_name,
        )

    def publish(
        self, *, topic: str, qos: int, payload: bytes, on_sent: Callable[[], None] | None = None
    ) -> None:
        """Publish ``payload`` to ``topic``; raises :class:`PublishError` when it is refused.

        ``on_sent`` is called once: when the first attempt's request has been written, or
        when the publish ends without that.
        """
        if on_sent is None:
            self._publish(topic, qos, payload, None)
            return
        called = False

        def sent_once() -> None:
            nonlocal called
            if not called:
                called = True
                on_sent()

        try:
            self._publish(topic, qos, payload, sent_once)
        finally:
            sent_once()

    def _publish(
        self, topic: str, qos: int, payload: bytes, on_sent: Callable[[], None] | None
    ) -> None:
        path = f"/topics/{percent_encode(topic)}?qos={int(qos)}"
        for attempt in range(1, self.max_attempts + 1):
            try:
                status, body = self._poster.post(path, payload, on_sent=on_sent)
            except CONNECTION_ERRORS as exc:
                if attempt == self.max_attempts:
                    raise PublishError(f"iot-data Publish to {topic} failed: {exc}") from exc
            else:
                if status < 300:
                    return
                if status not in RETRYABLE_STATUS or attempt == self.max_attempts:
                    raise PublishError(
                        f"iot-data refused the publish to {topic}: HTTP {status} {_message(body)}"
                    )
            time.sleep(random.uniform(0, 0.05 * 2**attempt))


def _message(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(answer, dict):
        return str(answer.get("message") or answer.get("Message") or answer)[:200]
    return str(answer)[:200]
