"""The authorizer chain and what writes of RBAC objects check (escalation prevention).

The chain is Kubernetes' with --authorization-mode=RBAC: members of system:masters may do anything (the
superuser group), then RBAC decides from the policy cache; no rule allows it → 403 with Kubernetes' message.
The user of the request being served sits in a context variable, so that the RBAC kinds' create/update
hooks can check that a user grants only permissions they hold (or may `escalate`/`bind`).
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Callable

from ..status import StatusError
from . import node, rbac
from .rbac import Attributes, Decision, Rule, UserInfo

SUPERUSER_GROUP = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

PolicyGetter = Callable[[], rbac.PolicySource]


class Authorizer:
    """system:masters, then the Node authorizer (when given the graph of pods), then RBAC."""

    def __init__(self, policy: PolicyGetter, nodes: node.NodeGraph | None = None) -> None:
        self.policy = policy
        self.nodes = nodes

    def authorize(self, attrs: Attributes) -> Decision:
        if SUPERUSER_GROUP in attrs.user.groups:
            return Decision(True, "")
        if self.nodes is not None:
            decided = node.authorize(self.nodes, attrs)
            if decided is not None:
                return decided
        return rbac.authorize(self.policy(), attrs)

    def rules_for(self, user: UserInfo, namespace: str) -> tuple[list[Rule], list[str]]:
        if SUPERUSER_GROUP in user.groups:
            return [Rule(("*",), ("*",), ("*",)), Rule(("*",), non_resource_urls=("*",))], []
        return rbac.rules_for(self.policy(), user, namespace)


@dataclass(frozen=True)
class RequestAuth:
    user: UserInfo
    authorizer: Authorizer


CURRENT: contextvars.ContextVar[RequestAuth | None] = contextvars.ContextVar("pkube_request_auth", default=None)


def _group_resource(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def forbidden_error(resource: str, group: str, name: str, message: str) -> StatusError:
    """Kubernetes' errors.NewForbidden: `pods "x" is forbidden: ...`, `pods is forbidden: ...`, `forbidden: ...`."""
    if not resource:
        text = f"forbidden: {message}"
    elif name:
        text = f'{_group_resource(resource, group)} "{name}" is forbidden: {message}'
    else:
        text = f"{_group_resource(resource, group)} is forbidden: {message}"
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if resource:
        details["kind"] = resource
    return StatusError(403, "Forbidden", text, details or None)


def forbidden_message(attrs: Attributes) -> str:
    user = attrs.user.name
    if not attrs.resource_request:
        return f'User "{user}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if attrs.namespace:
        return (f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" '
                f'in the namespace "{attrs.namespace}"')
    return f'User "{user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" at the cluster scope'


def denied(attrs: Attributes, reason: str) -> StatusError:
    message = forbidden_message(attrs) + (f": {reason}" if reason else "")
    if not attrs.resource_request:
        return forbidden_error("", "", "", message)
    return forbidden_error(attrs.resource, attrs.api_group, attrs.name, message)


# -- escalation prevention (pkg/registry/rbac/{role,clusterrole,rolebinding,clusterrolebinding}/policybased) --

def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _checked_writer(obj: dict[str, Any], verb: str, plural: str, target: str | None = None
                    ) -> tuple[RequestAuth, str, str] | None:
    """The writer of an RBAC object, with the object's namespace and name, when its rights must be checked:
    None for no authenticated request, a superuser, or one the RBAC verb lets through (`escalate` on the role
    itself, `bind` on the role a binding refers to: resource `plural` named `target`)."""
    ctx = CURRENT.get()
    if ctx is None or SUPERUSER_GROUP in ctx.user.groups:
        return None
    meta = _meta(obj)
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    special = Attributes(verb, True, namespace, rbac.RBAC_GROUP, "v1", plural, "", name if target is None else target,
                         user=ctx.user)
    return None if ctx.authorizer.authorize(special).allowed else (ctx, namespace, name)


def confirm_role_write(plural: str, obj: dict[str, Any]) -> None:
    """A Role/ClusterRole may only hold rules its writer holds, unless the writer may `escalate` it."""
    writer = _checked_writer(obj, "escalate", plural)
    if writer is not None:
        ctx, namespace, name = writer
        wanted = [Rule.of(r) for r in obj.get("rules") or () if isinstance(r, dict)]
        _confirm_covered(ctx, namespace, wanted, plural, name)


def confirm_binding_write(plural: str, obj: dict[str, Any]) -> None:
    """A binding may only grant a role whose permissions its writer holds, unless the writer may `bind` it."""
    ref = obj.get("roleRef") or {}
    role_plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
    writer = _checked_writer(obj, "bind", role_plural, str(ref.get("name") or ""))
    if writer is None:
        return
    ctx, namespace, name = writer
    try:
        wanted = rbac.role_ref_rules(ctx.authorizer.policy(), ref, namespace)
    except rbac.RoleNotFound as e:
        raise forbidden_error(plural, rbac.RBAC_GROUP, name, str(e)) from None
    _confirm_covered(ctx, namespace, list(wanted), plural, name)


def _confirm_covered(ctx: RequestAuth, namespace: str, wanted: list[Rule], plural: str, name: str) -> None:
    owner, errors = ctx.authorizer.rules_for(ctx.user, namespace)
    missing = rbac.covers(owner, wanted)
    if missing:
        raise forbidden_error(plural, rbac.RBAC_GROUP, name, rbac.escalation_message(ctx.user, missing, errors))
