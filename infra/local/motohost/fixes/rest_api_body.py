"""An ``AWS::ApiGateway::RestApi`` defined by its OpenAPI ``Body`` deploys through CloudFormation.

moto 5.2.5's ``RestAPI.create_from_cloudformation_json`` reads ``Name``, ``Description`` and
``EndpointConfiguration`` only: the ``Body`` (the template's ``infra/openapi.yaml``, included
with ``AWS::Include``) is dropped, so the API has no resources or methods and the template's
``AWS::ApiGateway::Deployment`` fails with ``NoMethodDefined``. AWS imports the body as the
API's definition (its paths, methods, integrations and authorisation).

The fix wraps ``create_from_cloudformation_json``: when the properties carry a ``Body``
(intrinsic functions already resolved by moto's CloudFormation), the new API is given it with
moto's own ``put_rest_api`` (``mode="overwrite"``, as ``PutRestApi`` would), so its
resources and methods exist as on AWS. An API without a ``Body`` is created as before.
``put_rest_api`` passes a ``mock`` integration on without ``uri`` and ``httpMethod`` (AWS
needs neither for ``MOCK``), which ``put_integration`` takes as required arguments: they
default to None, as the REST call and :mod:`.mock_integrations` already pass them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply", "apply_rest_api_body_fix"]


def apply_rest_api_body_fix() -> None:
    """Import a CloudFormation RestApi's ``Body`` into the new API (idempotent)."""
    from moto.apigateway.models import APIGatewayBackend, RestAPI, apigateway_backends

    if getattr(RestAPI, "_tidings_body_fixed", False):
        return
    original = RestAPI.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]
    original_put_integration = APIGatewayBackend.put_integration

    def put_integration(
        self: Any,
        function_id: str,
        resource_id: str,
        method_type: str,
        integration_type: str,
        uri: str | None = None,
        integration_method: str | None = None,
        **kw: Any,
    ) -> Any:
        return original_put_integration(
            self,
            function_id,
            resource_id,
            method_type,
            integration_type,
            uri,  # type: ignore[arg-type]
            integration_method,  # type: ignore[arg-type]
            **kw,
        )

    def create_from_cloudformation_json(
        cls: Any,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kw: Any,
    ) -> Any:
        api = original(cls, resource_name, cloudformation_json, account_id, region_name, **kw)
        body = (cloudformation_json.get("Properties") or {}).get("Body")
        if isinstance(body, dict):
            backend = apigateway_backends[account_id][region_name]
            backend.put_rest_api(api.id, body, fail_on_warnings=False, mode="overwrite")
        return api

    APIGatewayBackend.put_integration = put_integration  # type: ignore[method-assign,assignment]
    RestAPI.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)  # type: ignore[method-assign,assignment,arg-type]
    RestAPI._tidings_original_create_from_cloudformation_json = original  # type: ignore[attr-defined]
    RestAPI._tidings_body_fixed = True  # type: ignore[attr-defined]


apply = apply_rest_api_body_fix
