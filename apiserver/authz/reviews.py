"""authorization.k8s.io/v1 reviews: ask the authorizer a question, store nothing (create only).

SelfSubjectAccessReview: may I do this? SubjectAccessReview: may that user do this? SelfSubjectRulesReview:
what may I do in this namespace? (`kubectl auth can-i`, with `--list` for the last.)
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from pklib.resources import SELFSUBJECTACCESSREVIEWS, SELFSUBJECTRULESREVIEWS, SUBJECTACCESSREVIEWS, Resource

from .. import bodies
from ..kinds.fields import Cause, Path, invalid
from ..status import StatusError, invalid as invalid_status, json_response, method_not_allowed
from .authorizer import CURRENT, Authorizer
from .rbac import Attributes, UserInfo

Obj = dict[str, Any]


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _str(d: Obj, key: str) -> str:
    value = d.get(key)
    return value if isinstance(value, str) else ""


def _spec_causes(spec: Obj) -> list[Cause]:
    res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    path = Path("spec")
    if res is not None and non is not None:
        return [invalid(path.child("nonResourceAttributes"), non,
                        "cannot be specified in combination with resourceAttributes")]
    if res is None and non is None:
        return [invalid(path.child("resourceAttributes"), None,
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    return []


def attributes(user: UserInfo, spec: Obj) -> Attributes:
    res = spec.get("resourceAttributes")
    if isinstance(res, dict):
        return Attributes(_str(res, "verb"), True, _str(res, "namespace"), _str(res, "group"),
                          _str(res, "version"), _str(res, "resource"), _str(res, "subresource"), _str(res, "name"),
                          user=user)
    non = _dict(spec.get("nonResourceAttributes"))
    return Attributes(_str(non, "verb"), False, path=_str(non, "path"), user=user)


def _review_body(res: Resource, body: Obj) -> Obj:
    out = dict(body)
    out["apiVersion"], out["kind"] = res.api_version, res.kind
    meta = _dict(body.get("metadata"))
    out["metadata"] = {**meta, "creationTimestamp": None}
    return out


def _spec_user(spec: Obj) -> UserInfo:
    groups = spec.get("groups") or []
    extra = {k: tuple(v) for k, v in _dict(spec.get("extra")).items() if isinstance(v, list)}
    return UserInfo(_str(spec, "user"), _str(spec, "uid"),
                    tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (), extra)


def _reject(res: Resource, causes: list[Cause]) -> StatusError:
    return invalid_status(res.kind, "", [{"reason": c["type"], "message": c["message"], "field": c["field"]}
                                         for c in causes], res.group)


def routes(authorizer: Authorizer) -> list[web.RouteDef]:
    async def read(request: web.Request, res: Resource) -> tuple[Obj, Obj, UserInfo]:
        if request.method != "POST":
            raise method_not_allowed(request.method)
        body = await bodies.read_object(request)
        if not isinstance(body, dict):
            raise StatusError(400, "BadRequest", "the body of the request must be an object")
        ctx = CURRENT.get()
        caller = ctx.user if ctx is not None else UserInfo("system:anonymous", groups=("system:masters",))
        return body, _dict(body.get("spec")), caller

    async def access(request: web.Request, res: Resource) -> web.StreamResponse:
        """May the caller (a SelfSubjectAccessReview) or the user of the spec (a SubjectAccessReview) do it?"""
        body, spec, caller = await read(request, res)
        causes = _spec_causes(spec)
        user = caller if res is SELFSUBJECTACCESSREVIEWS else _spec_user(spec)
        if not user.name and not user.groups:
            causes.append(invalid(Path("spec").child("user"), user.name, "at least one of user or group must be "
                                                                          "specified"))
        if causes:
            raise _reject(res, causes)
        decision = authorizer.authorize(attributes(user, spec))
        out = _review_body(res, body)
        out["status"] = {"allowed": decision.allowed}
        if decision.reason:
            out["status"]["reason"] = decision.reason
        return json_response(out, 201)

    async def self_access(request: web.Request) -> web.StreamResponse:
        return await access(request, SELFSUBJECTACCESSREVIEWS)

    async def subject_access(request: web.Request) -> web.StreamResponse:
        return await access(request, SUBJECTACCESSREVIEWS)

    async def self_rules(request: web.Request) -> web.StreamResponse:
        res = SELFSUBJECTRULESREVIEWS
        body, spec, caller = await read(request, res)
        rules, errors = authorizer.rules_for(caller, _str(spec, "namespace"))
        resource_rules = [r.to_dict() for r in rules if not r.non_resource_urls]
        non_resource = [{"verbs": list(r.verbs), "nonResourceURLs": list(r.non_resource_urls)}
                        for r in rules if r.non_resource_urls]
        out = _review_body(res, body)
        out["status"] = {"resourceRules": resource_rules, "nonResourceRules": non_resource,
                         "incomplete": bool(errors)}
        if errors:
            out["status"]["evaluationError"] = "; ".join(errors)
        return json_response(out, 201)

    return [web.route("*", SELFSUBJECTACCESSREVIEWS.path(), self_access),
            web.route("*", SUBJECTACCESSREVIEWS.path(), subject_access),
            web.route("*", SELFSUBJECTRULESREVIEWS.path(), self_rules)]
