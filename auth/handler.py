"""Lambda entry point for ``POST /v1/login``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from auth.http import handle_login_event
from auth.login import LoginService
from auth.settings import AuthSettings

__all__ = ["clear_caches", "lambda_handler", "login_service"]


@lru_cache(maxsize=1)
def login_service() -> LoginService:
    """The process's login service, built once from the environment."""
    return LoginService(AuthSettings.from_env())


def clear_caches() -> None:
    """Forget the cached service (tests that change the environment)."""
    login_service.cache_clear()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway proxy handler."""
    service = login_service()
    return handle_login_event(event, service, allowed_origin=service.settings.allowed_origin)
