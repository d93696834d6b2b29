"""The CORS headers the HTTP API's Lambda answers carry, so a page on the allowed origin can
read them (``Access-Control-Allow-Origin``) and their ``Retry-After``.

API Gateway answers the preflights itself (the template's ``OPTIONS`` methods, ``MOCK``
integrations), and a ``MOCK`` answer is static: so the API allows one origin, or ``*``
(template parameter ``AllowedOrigins``, passed to the functions as ``TIDINGS_ALLOWED_ORIGIN``).
"""

from __future__ import annotations

__all__ = ["EXPOSED_HEADERS", "cors_headers"]

EXPOSED_HEADERS = ("Retry-After",)
"""Response headers a page may read besides the CORS-safelisted ones."""


def cors_headers(allowed_origin: str) -> dict[str, str]:
    """The headers for every answer; none when no origin is allowed (``""``)."""
    if not allowed_origin:
        return {}
    return {
        "Access-Control-Allow-Origin": allowed_origin,
        "Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS),
    }
