"""CloudFormation's ``AWS::IoT::Policy`` and ``AWS::IoT::RoleAlias`` as AWS deploys them.

moto 5.2.5 gives neither model (``FakePolicy``, ``FakeRoleAlias``) a physical id, so a
``!Ref`` to one resolves to the Python object itself (a ``!Sub`` writes its repr) and
``DescribeStackResources`` names no ``PhysicalResourceId``. Neither has a ``delete``, so
``DeleteStack`` falls back to ``delete_from_cloudformation_json`` with the template's
properties as written: a name given by ``!Sub`` is still the unresolved ``{"Fn::Sub": ...}``
(``TypeError: unhashable type: 'dict'``), and a generated name is not the one the resource
was created with (``ResourceNotFoundException``); either way the stack is never deleted. And
the policy keeps the template's ``PolicyDocument`` as a dict, so ``GetPolicy`` answers its
Python repr (``{'Version': ...}``), which is not JSON. AWS: ``!Ref`` is the policy's or the
role alias's name, ``DeleteStack`` deletes both, and ``GetPolicy`` answers the document as
the JSON text it was given.

The fix gives both models ``physical_resource_id`` (their name) and a ``delete`` (by that
name), and hands moto a CloudFormation policy document (created or updated) as JSON text, as
``CreatePolicy`` receives it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["apply", "apply_cloudformation_iot_fix"]


def _with_json_document(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    """The resource's spec with its ``PolicyDocument`` as JSON text (a copy)."""
    properties = dict(cloudformation_json.get("Properties") or {})
    document = properties.get("PolicyDocument", {})
    if not isinstance(document, str):
        properties["PolicyDocument"] = json.dumps(document)
    return {**cloudformation_json, "Properties": properties}


def apply_cloudformation_iot_fix() -> None:
    """Physical ids, deletion and JSON documents for CloudFormation's IoT policies and role
    aliases (see the module doc; idempotent)."""
    from moto.iot import models as iot_models

    policy: Any = iot_models.FakePolicy
    alias: Any = iot_models.FakeRoleAlias
    if getattr(policy, "_tidings_cfn_fixed", False):
        return
    original_create = policy.create_from_cloudformation_json.__func__
    original_update = policy.update_from_cloudformation_json.__func__

    def create_from_cloudformation_json(
        cls: Any, resource_name: str, cloudformation_json: dict[str, Any], *args: Any, **kw: Any
    ) -> Any:
        spec = _with_json_document(cloudformation_json)
        return original_create(cls, resource_name, spec, *args, **kw)

    def update_from_cloudformation_json(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        *args: Any,
        **kw: Any,
    ) -> Any:
        spec = _with_json_document(cloudformation_json)
        return original_update(cls, original_resource, new_resource_name, spec, *args, **kw)

    def delete_policy(self: Any, account_id: str, region_name: str) -> None:
        iot_models.iot_backends[account_id][region_name].delete_policy(policy_name=self.name)

    def delete_role_alias(self: Any, account_id: str, region_name: str) -> None:
        backend = iot_models.iot_backends[account_id][region_name]
        backend.delete_role_alias(role_alias_name=self.role_alias)

    policy.create_from_cloudformation_json = classmethod(create_from_cloudformation_json)
    policy.update_from_cloudformation_json = classmethod(update_from_cloudformation_json)
    policy.physical_resource_id = property(lambda self: self.name)
    policy.delete = delete_policy
    alias.physical_resource_id = property(lambda self: self.role_alias)
    alias.delete = delete_role_alias
    policy._tidings_original_create_from_cloudformation_json = original_create
    policy._tidings_cfn_fixed = True


apply = apply_cloudformation_iot_fix
