"""The moto service that answers a host name, looked up once and remembered.

moto 5.2.5's server works out the service of every request under one process-wide lock, and
that lookup lists moto's package folder on disk and tries a few hundred URL patterns: about
1 ms per request with every other request waiting. In AWS a host name is a service's
endpoint: it always names the same service.

The fix wraps ``DomainDispatcherApplication.get_backend_for_host`` so that the answer for a
host name is kept (for up to 1,000 host names) and moto's lookup runs once per host.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply", "apply_routing_fix"]


def apply_routing_fix() -> None:
    """Remember which moto service answers each host name (idempotent).

    moto's server works out the service of every request under one process-wide lock, and
    that lookup lists moto's package folder on disk and tries a few hundred URL patterns:
    about 1 ms per request with every other request waiting. A host name always maps to the
    same service, so the answer is kept.
    """
    from moto.moto_server import werkzeug_app

    dispatcher: Any = werkzeug_app.DomainDispatcherApplication
    if getattr(dispatcher, "_tidings_fixed", False):
        return
    original = dispatcher.get_backend_for_host
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        try:
            return known[host]
        except KeyError:
            backend = original(self, host)
            if len(known) < 1000:  # the host comes from the request: keep the cache bounded
                known[host] = backend
            return backend

    dispatcher.get_backend_for_host = get_backend_for_host
    dispatcher._tidings_original_get_backend_for_host = original  # for the comparing test
    dispatcher._tidings_fixed = True


apply = apply_routing_fix
