"""Just enough HTTP/1.1 for the local endpoints: parse a request head, render a response.

Pure functions; the connection code feeds them bytes and writes what they return.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

__all__ = [
    "MAX_HEAD_BYTES",
    "HttpError",
    "Request",
    "error_response",
    "json_response",
    "parse_request_head",
    "render_response",
]

MAX_HEAD_BYTES = 16 * 1024


class HttpError(Exception):
    """A request the server answers with ``status`` and ``{"error", "message"}``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


@dataclass(frozen=True)
class Request:
    """A parsed request head."""

    method: str
    target: str
    raw_path: str
    raw_query: str
    version: str
    headers: tuple[tuple[str, str], ...]

    @property
    def path(self) -> str:
        """The path with percent-escapes decoded."""
        return unquote(self.raw_path)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (name case-insensitive)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return default

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    @property
    def keep_alive(self) -> bool:
        """Whether the client wants the connection kept open after the response."""
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


def parse_request_head(head: bytes) -> Request:
    """Parse the bytes before the blank line; raises :class:`HttpError` (400) when malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "bad_request", "request head is not text") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad_request", "the request line must be 'METHOD /path HTTP/1.1'")
    method, target, version = parts
    if not target.startswith("/"):
        raise HttpError(400, "bad_request", "the request target must be an absolute path")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise HttpError(400, "bad_request", f"malformed header line {line[:60]!r}")
        headers.append((name, value.strip()))
    raw_path, _, raw_query = target.partition("?")
    return Request(method.upper(), target, raw_path, raw_query, version, tuple(headers))


def render_response(
    status: int,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    keep_alive: bool = True,
) -> bytes:
    """The bytes of a complete HTTP/1.1 response."""
    reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    if status != 101:
        lines.append(f"content-length: {len(body)}")
        lines.append(f"connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(
    status: int,
    payload: Any,
    extra_headers: Sequence[tuple[str, str]] = (),
    *,
    keep_alive: bool = True,
) -> bytes:
    """A JSON response."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [("content-type", "application/json"), *extra_headers]
    return render_response(status, headers, body, keep_alive=keep_alive)


def error_response(
    status: int,
    error: str,
    message: str,
    extra_headers: Sequence[tuple[str, str]] = (),
    *,
    keep_alive: bool = True,
) -> bytes:
    """The standard error body ``{"error", "message"}``."""
    return json_response(
        status, {"error": error, "message": message}, extra_headers, keep_alive=keep_alive
    )
