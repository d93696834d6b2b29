"""A shorter road through moto for DynamoDB and DynamoDB Streams requests.

moto's server answers every request through its domain dispatcher, a Flask app per service,
a werkzeug request and ``BaseResponse.setup_class``, which among other things parses a JSON
body as a query string and again as form data. For the JSON-protocol calls the local stack
makes most (``PutItem``, ``GetRecords``, ``TransactWriteItems``, ...), that road costs twice
the DynamoDB work itself. :class:`FastLane` sits in front of moto's WSGI app: a ``POST``
whose ``X-Amz-Target`` names DynamoDB or DynamoDB Streams goes to the same moto handler
class and the same ``call_action`` (same backends, parsing of the parameters, errors,
serialisation and headers), with only the attributes those handlers read set up. Anything
else (other services, compressed bodies, query strings) takes moto's usual road.

Signatures and IAM are checked in front of both roads, once, by
:class:`~infra.local.motohost.auth.MotoAuth` (which hands the JSON body it parsed on to here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import urlparse

from infra.local.motohost.auth import PARSED_JSON

__all__ = ["FastLane"]

_log = logging.getLogger("tidings.moto")
_HANDLERS = {
    "DynamoDB_20120810": ("moto.dynamodb.responses", "DynamoHandler"),
    "DynamoDBStreams_20120810": ("moto.dynamodbstreams.responses", "DynamoDBStreamsHandler"),
}
_PATH = "/"


class _Request:
    """What ``BaseResponse.get_region_from_url`` reads of a request."""

    def __init__(self, headers: Any) -> None:
        self.headers = headers


class FastLane:
    """WSGI middleware: DynamoDB and DynamoDB Streams JSON calls go straight to moto's handler."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        """``app`` is moto's WSGI application; it answers everything else."""
        import importlib

        self.app = app
        self._handlers = {
            prefix: getattr(importlib.import_module(module), name)
            for prefix, (module, name) in _HANDLERS.items()
        }
        self._parsers: dict[tuple[str, str], Any] = {}
        self._known: dict[Any, tuple[str, frozenset[str]]] = {}

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Answer a DynamoDB (Streams) call here; hand anything else to moto's app."""
        prefix, _, action = str(environ.get("HTTP_X_AMZ_TARGET", "")).partition(".")
        handler_class = self._handlers.get(prefix)
        if (
            handler_class is None
            or not action
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("HTTP_CONTENT_ENCODING")
            or environ.get("QUERY_STRING")
            or environ.get("PATH_INFO", _PATH) != _PATH
        ):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        document = self._document(handler_class, action, body, environ.get(PARSED_JSON))
        if isinstance(document, tuple):  # refused
            status, headers, content = document
        else:
            try:
                status, headers, content = self._call(
                    handler_class, environ, action, body, document
                )
            except Exception as exc:  # moto's own road answers 500 as well, without a reason
                _log.exception("moto failed on %s.%s", prefix, action)
                status, headers, content = _error(500, "InternalFailure", f"moto failed: {exc!r}")
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        out = [(k, str(v)) for k, v in headers.items() if k.lower() not in _DROPPED]
        out.append(("Content-Length", str(len(data))))
        if not any(k.lower() == "content-type" for k, _ in out):
            out.append(("Content-Type", "application/x-amz-json-1.0"))
        start_response(f"{status} {_reason(int(status))}", out)
        return [data]

    def _document(
        self, handler_class: Any, action: str, body: bytes, parsed: Any = None
    ) -> dict[str, Any] | tuple[int, dict[str, str], str]:
        """The call's JSON body, or AWS's 400 for a call that names no operation or whose
        body is no JSON object (moto's own road answers both with a bare 500). ``parsed``:
        the body as :class:`~infra.local.motohost.auth.MotoAuth` already parsed it."""
        service, operations = self._operations(handler_class)
        if action not in operations:
            return _error(
                400, _CORAL + "UnknownOperationException", f"{action} is not a {service} operation"
            )
        if isinstance(parsed, dict):
            return parsed
        try:
            document = json.loads(body or b"{}")
        except ValueError as exc:
            return _error(400, _CORAL + "SerializationException", f"the body is not JSON: {exc}")
        if not isinstance(document, dict):
            return _error(400, _CORAL + "SerializationException", "the body must be a JSON object")
        return document

    def _operations(self, handler_class: Any) -> tuple[str, frozenset[str]]:
        found = self._known.get(handler_class)
        if found is None:
            from moto.core.utils import get_service_model

            service = handler_class().boto3_service_name
            found = service, frozenset(get_service_model(service).operation_names)
            self._known[handler_class] = found
        return found

    def _call(
        self,
        handler_class: Any,
        environ: dict[str, Any],
        action: str,
        body: bytes,
        document: dict[str, Any],
    ) -> tuple[Any, dict[str, Any], Any]:
        from moto.iam.models import mark_account_as_visited
        from moto.utilities.utils import get_partition
        from werkzeug.datastructures import EnvironHeaders

        handler = handler_class()
        headers = EnvironHeaders(environ)
        url = f"http://{environ.get('HTTP_HOST', 'localhost')}{_PATH}"
        handler.is_werkzeug_request = True
        handler.normalized_request = None
        handler.parsed_url = urlparse(url)
        handler.raw_body = body
        handler.body = body.decode("utf-8")
        handler.form_data = {}
        handler.uri = url
        handler.path = handler.raw_path = _PATH
        handler.querystring = {}
        handler.data = {}
        handler.method = "POST"
        handler.uri_match = {}
        handler.headers = headers
        handler.response_headers = {"server": "amazon.com"}
        handler.region = handler.get_region_from_url(_Request(headers), url)
        handler.partition = get_partition(handler.region)
        if handler.automated_parameter_parsing:
            # moto's JSON parser, given the body already decoded (its parse() decodes again)
            parser = self._parser(handler, action)
            shape = parser.operation_model.input_shape
            handler.params = {} if shape is None else parser._parse_shape(shape, document)
        handler.access_key = handler.get_access_key()
        handler.current_account = handler.get_current_account()
        mark_account_as_visited(
            account_id=handler.current_account,
            access_key=handler.access_key,
            service=handler.service_name,
            region=handler.region,
        )
        result = handler.call_action()
        if len(result) == 2:
            content, new_headers = result
            return int(new_headers.get("status", 200)), dict(new_headers), content
        status, response_headers, content = result
        return status, dict(response_headers), content

    def _parser(self, handler: Any, action: str) -> Any:
        """moto's request parser for one operation (built once: it holds only the model)."""
        key = (handler.boto3_service_name, action)
        parser = self._parsers.get(key)
        if parser is None:
            from moto.core.parse import PROTOCOL_PARSERS
            from moto.core.utils import get_service_model

            model = get_service_model(handler.boto3_service_name)
            parser = PROTOCOL_PARSERS["json"](
                model.operation_model(action), map_type=handler.PROTOCOL_PARSER_MAP_TYPE
            )
            self._parsers[key] = parser
        return parser


_DROPPED = {"status", "content-length"}
_CORAL = "com.amazon.coral.service#"


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], str]:
    body = json.dumps({"__type": code, "message": message})
    return status, {"Content-Type": "application/x-amz-json-1.0"}, body


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
