"""The channels API over HTTPS, SigV4-signed (``execute-api``) with awscrt."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from client_sdk._errors import AccessDenied, BadRequest, CursorExpired, ServiceUnavailable
from client_sdk._http import InFlight, request_json
from client_sdk._session import CredentialProvider

__all__ = ["ChannelsApi"]


def _retry_after(headers: Any) -> float | None:
    """``Retry-After`` in seconds (1 to 300), or None when absent or not a number of seconds."""
    text = str(headers.get("retry-after") or "").strip()
    if not text.isascii() or not text.isdigit():
        return None
    return float(min(300, max(1, int(text))))


class ChannelsApi:
    """``head`` and ``changes`` of a channel, as the signed-in identity."""

    def __init__(
        self,
        credentials: CredentialProvider,
        context: ssl.SSLContext | None,
        region: str,
        api_url: str,
    ) -> None:
        self.credentials = credentials
        self.context = context
        self.region = region
        self.api_url = api_url.rstrip("/")
        self.calls = 0
        self.in_flight = InFlight()

    def close(self) -> None:
        """End the requests under way (a long-poll among them) and refuse new ones."""
        self.in_flight.abort()

    def _sign(self, method: str, url: str) -> dict[str, str]:
        from awscrt import auth, http

        creds = self.credentials.get()
        parts = urlsplit(url)
        host = parts.netloc
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        request = http.HttpRequest(method, path, http.HttpHeaders([("host", host)]))
        config = auth.AwsSigningConfig(
            algorithm=auth.AwsSigningAlgorithm.V4,
            signature_type=auth.AwsSignatureType.HTTP_REQUEST_HEADERS,
            credentials_provider=auth.AwsCredentialsProvider.new_static(
                creds.access_key_id, creds.secret_access_key, creds.session_token
            ),
            region=self.region,
            service="execute-api",
        )
        auth.aws_sign_request(request, config).result(10)
        return {name: value for name, value in request.headers}

    def _get(self, path: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        url = f"{self.api_url}{path}"
        if params:
            url += "?" + urlencode(params)
        for attempt in range(2):
            headers = self._sign("GET", url)
            try:
                response = request_json(
                    "GET",
                    url,
                    headers=headers,
                    context=self.context,
                    timeout=timeout,
                    in_flight=self.in_flight,
                )
            except OSError as exc:
                raise ServiceUnavailable(f"GET {url}: {exc}") from exc
            self.calls += 1
            body = response.body if isinstance(response.body, dict) else {}
            message = str(body.get("message") or f"HTTP {response.status}")
            if response.status == 200:
                return body
            if response.status == 410:
                raise CursorExpired(message, int(body.get("head", 0)), int(body.get("epoch", 0)))
            if response.status == 403 and attempt == 0 and "expired" in message.lower():
                self.credentials.invalidate()
                continue
            if response.status == 403:
                raise AccessDenied(message)
            if response.status in (400, 404):
                raise BadRequest(message)
            raise ServiceUnavailable(
                message, _retry_after(response.headers), str(body.get("error") or "")
            )
        raise ServiceUnavailable("the API kept refusing fresh credentials")  # pragma: no cover

    @staticmethod
    def _path(channel: str) -> str:
        return "/v1/channels/" + "/".join(quote(part, safe="") for part in channel.split("/"))

    def head(self, channel: str) -> dict[str, Any]:
        """``{"channel", "head", "epoch"}``."""
        return self._get(self._path(channel), {}, 30.0)

    def changes(
        self, channel: str, after: int, limit: int = 1000, wait: float = 0, epoch: int | None = None
    ) -> dict[str, Any]:
        """Changes after ``after`` (long-polls up to ``wait`` seconds when none are there)."""
        params: dict[str, Any] = {"after": after, "limit": limit}
        if wait:
            params["wait"] = int(wait)
        if epoch is not None:
            params["epoch"] = epoch
        return self._get(self._path(channel) + "/changes", params, 30.0 + wait)
