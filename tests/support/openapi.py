"""Checks an HTTP answer of the API against infra/openapi.yaml: its status is one the
operation declares, its declared headers are there and well formed, its content type is the
declared one and its JSON body matches the schema. A mismatch raises :class:`ResponseMismatch`
(an ``AssertionError``), so a test that gets an answer the document does not describe fails.

::

    from tests.support.openapi import checked
    answer = checked(requests.get(url, headers=signed, verify=ca, timeout=30))

A request to a path or method the document does not have (a 404 or 405 of the gateway) is
checked as an error answer: ``{"error", "message"}``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from infra.data_files import OPENAPI, data_file

__all__ = ["ApiDocument", "ResponseMismatch", "api_document", "checked"]

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DOCUMENT_URI = "urn:tidings:openapi"


class ResponseMismatch(AssertionError):
    """An answer the document does not describe; the message says what differs."""


@dataclass(frozen=True)
class Operation:
    """One method of one path of the document."""

    method: str
    path: str  # the document's template, e.g. /v1/channels/{channel+}
    spec: Mapping[str, Any]


class ApiDocument:
    """The OpenAPI document, ready to check answers against."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(dict(document), default_specification=DRAFT4)
        self._registry: Registry[Any] = Registry().with_resource(_DOCUMENT_URI, resource)
        self._paths = [(template, _compile(template)) for template in document["paths"]]

    @classmethod
    def load(cls, path: Path | None = None) -> ApiDocument:
        """The document at ``path`` (default: the ``infra`` package's openapi.yaml)."""
        source = path or data_file(OPENAPI)
        return cls(yaml.safe_load(source.read_text(encoding="utf-8")))

    # ------------------------------------------------------------------ lookup
    def find(self, method: str, path: str) -> tuple[str | None, Operation | None]:
        """(the path template, the operation) serving ``method path``; ``path`` is the
        request's path without the stage. (None, None) if no path matches, (template, None)
        if the path has no such method."""
        for template, pattern in self._paths:
            if pattern.match(path):
                spec = self.document["paths"][template].get(method.lower())
                return template, Operation(method.lower(), template, spec) if spec else None
        return None, None

    def resolve(self, value: Mapping[str, Any]) -> Mapping[str, Any]:
        """``value`` with a ``$ref`` (to this document) followed."""
        seen = 0
        while "$ref" in value:
            ref = str(value["$ref"])
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are supported, not {ref}")
            target: Any = self.document
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            value, seen = target, seen + 1
            if seen > 20:
                raise ValueError(f"reference loop at {ref}")
        return value

    # ------------------------------------------------------------------ checks
    def check(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        """Raise :class:`ResponseMismatch` unless the answer fits the document."""
        where = f"{method.upper()} {path} → {status}"
        template, operation = self.find(method, path)
        lowered = {name.lower(): value for name, value in headers.items()}
        if operation is None:
            # the gateway's own 404 / 405 for what the API does not have
            if status not in (403, 404, 405):
                raise ResponseMismatch(
                    f"{where}: {'no such method on ' + template if template else 'no such path'}"
                    f" in the document, yet answered {status}"
                )
            self._check_json(where, lowered, body, {"$ref": "#/components/schemas/Error"})
            return
        responses = operation.spec.get("responses") or {}
        declared = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        declared = declared or responses.get("default")
        if declared is None:
            raise ResponseMismatch(
                f"{where}: status {status} is not one the document declares for "
                f"{method.upper()} {template} ({', '.join(sorted(responses))})"
            )
        declared = self.resolve(declared)
        for name, header in (declared.get("headers") or {}).items():
            header = self.resolve(header)
            value = lowered.get(name.lower())
            if value is None:
                if header.get("required"):
                    raise ResponseMismatch(f"{where}: the required header {name} is missing")
                continue
            self._validate(where, f"header {name}", value, header.get("schema") or {})
        content = declared.get("content") or {}
        if not content:
            return
        content_type = lowered.get("content-type", "").split(";")[0].strip()
        media = content.get(content_type)
        if media is None:
            raise ResponseMismatch(
                f"{where}: content type {content_type or '(none)'!r} is not one of "
                f"{', '.join(sorted(content))}"
            )
        self._check_json(where, lowered, body, media.get("schema") or {})

    def _check_json(
        self, where: str, headers: Mapping[str, str], body: bytes, schema: Mapping[str, Any]
    ) -> None:
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            raise ResponseMismatch(f"{where}: content type {content_type!r}, not JSON")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ResponseMismatch(
                f"{where}: the body is not JSON ({exc}): {body[:200]!r}"
            ) from None
        self._validate(where, "body", data, schema)

    def _validate(self, where: str, what: str, instance: Any, schema: Mapping[str, Any]) -> None:
        validator = OAS30Validator(_absolute(schema), registry=self._registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            details = "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}"
                for e in errors[:5]
            )
            raise ResponseMismatch(f"{where}: the {what} does not match the document: {details}")

    def check_response(self, response: Any, stage_prefix: str | None = None) -> None:
        """Check a ``requests.Response`` (or a schemathesis one). The request's path loses
        its first segment (the stage) unless ``stage_prefix`` names it (``""``: no stage)."""
        request = response.request
        path = urlsplit(str(request.url)).path
        if stage_prefix is None:
            stage_prefix = "/" + path.strip("/").split("/")[0] if path.count("/") > 1 else ""
        if stage_prefix and path.startswith(stage_prefix + "/"):
            path = path[len(stage_prefix) :]
        headers = {
            str(name): ", ".join(value) if isinstance(value, list) else str(value)
            for name, value in response.headers.items()
        }  # a schemathesis Response holds each header's values in a list
        self.check(
            str(request.method), path, int(response.status_code), headers, bytes(response.content)
        )


def _absolute(value: Any) -> Any:
    """``value`` with its local references (``#/components/...``) made absolute, so that the
    registry resolves them in the document whatever schema they sit in."""
    if isinstance(value, Mapping):
        return {
            key: _DOCUMENT_URI + item
            if key == "$ref" and isinstance(item, str) and item.startswith("#")
            else _absolute(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_absolute(item) for item in value]
    return value


def _compile(template: str) -> re.Pattern[str]:
    parts = []
    for segment in template.strip("/").split("/"):
        if re.fullmatch(r"\{[^{}]+\+\}", segment):
            parts.append(".+")
        elif re.fullmatch(r"\{[^{}]+\}", segment):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    return re.compile(r"\A/" + "/".join(parts) + r"\Z")


@functools.lru_cache(maxsize=1)
def api_document() -> ApiDocument:
    """The ``infra`` package's document, loaded once."""
    return ApiDocument.load()


def checked(response: Any, stage_prefix: str | None = None) -> Any:
    """``response`` (a ``requests.Response``), after checking it against the document."""
    api_document().check_response(response, stage_prefix)
    return response
