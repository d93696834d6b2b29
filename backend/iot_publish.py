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
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.utils import percent_encode

from backend.errors import ConfigurationError, PublishError

__all__ = ["SignedPublishClient"]

_RETRYABLE = {429, 500, 502, 503, 504}


class SignedPublishClient:
    """``publish(topic=, qos=, payload=)`` with the call shape of boto3's iot-data client."""

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
        self.endpoint_url = endpoint_url.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.signing_name = signing_name
        self.max_attempts = max_attempts
        self.timeout = urllib3.Timeout(connect=5.0, read=timeout_s)
        options: dict[str, Any] = {"maxsize": pool_size, "block": False}
        if self.endpoint_url.startswith("https://"):
            if verify is False:
                options["cert_reqs"] = "CERT_NONE"
            else:
                from botocore.httpsession import get_cert_path

                options["cert_reqs"] = "CERT_REQUIRED"
                options["ca_certs"] = verify if isinstance(verify, str) else get_cert_path(True)
        self.pool = urllib3.PoolManager(**options)

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

    def publish(self, *, topic: str, qos: int, payload: bytes) -> None:
        """Publish ``payload`` to ``topic``; raises :class:`PublishError` when it is refused."""
        url = f"{self.endpoint_url}/topics/{percent_encode(topic)}?qos={int(qos)}"
        for attempt in range(1, self.max_attempts + 1):
            request = AWSRequest(method="POST", url=url, data=payload)
            SigV4Auth(
                self.credentials.get_frozen_credentials(), self.signing_name, self.region
            ).add_auth(request)
            try:
                response = self.pool.request(
                    "POST",
                    url,
                    body=payload,
                    headers=dict(request.headers.items()),
                    retries=False,
                    timeout=self.timeout,
                )
            except urllib3.exceptions.HTTPError as exc:
                if attempt == self.max_attempts:
                    raise PublishError(f"iot-data Publish to {topic} failed: {exc}") from exc
            else:
                if response.status < 300:
                    return
                if response.status not in _RETRYABLE or attempt == self.max_attempts:
                    raise PublishError(
                        f"iot-data refused the publish to {topic}: HTTP {response.status} "
                        f"{_message(response.data)}"
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
