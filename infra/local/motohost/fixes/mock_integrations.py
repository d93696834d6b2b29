"""``AWS::ApiGateway::Method`` with a ``MOCK`` integration deploys through CloudFormation.

moto 5.2.5's ``Method.create_from_cloudformation_json`` reads the integration's
``IntegrationHttpMethod`` and ``Uri`` as required keys, so a template whose method has a
``MOCK`` integration (the CORS preflights: ``OPTIONS`` answered by API Gateway itself) fails
to deploy with ``KeyError: 'IntegrationHttpMethod'``. AWS requires neither for ``MOCK`` (the
CloudFormation reference: "if you specify MOCK, this property is optional"), and moto's own
``put_integration`` accepts a ``MOCK`` integration without them.

The fix wraps ``create_from_cloudformation_json`` so that a missing ``IntegrationHttpMethod``
or ``Uri`` is passed on as None instead of failing; every other integration is unchanged
(``put_integration`` still refuses an ``AWS_PROXY`` integration without them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply", "apply_mock_integrations_fix"]


def apply_mock_integrations_fix() -> None:
    """Let a method's integration omit ``IntegrationHttpMethod`` and ``Uri`` (idempotent)."""
    from moto.apigateway.models import Method

    if getattr(Method, "_tidings_mock_fixed", False):
        return
    original = Method.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kw: Any
    ) -> Any:
        properties = dict(cloudformation_json.get("Properties") or {})
        integration = dict(properties.get("Integration") or {})
        integration.setdefault("IntegrationHttpMethod", None)
        integration.setdefault("Uri", None)
        properties["Integration"] = integration
        spec = {**cloudformation_json, "Properties": properties}
        return original(cls, resource_name, spec, *args, **kw)

    Method.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign,assignment]
    Method._tidings_original_create_from_cloudformation_json = original  # type: ignore[attr-defined]
    Method._tidings_mock_fixed = True  # type: ignore[attr-defined]


apply = apply_mock_integrations_fix
