"""The authorization middleware: impersonation, then the authorizer's decision on what the request does.

It runs after authentication (auth.py put the user on the request). Paths that authentication leaves open
(/healthz, /livez, /readyz, /version) stay open here too: Kubernetes allows exactly those to everyone through
system:public-info-viewer, and pkube answers them before any credential is looked at.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable

from aiohttp import web

from ..auth import USER, User
from ..status import StatusError, bad_request, status_response
from . import requestinfo
from .authorizer import AUTHENTICATED, CURRENT, UNAUTHENTICATED, Authorizer, RequestAuth, denied
from .rbac import SERVICE_ACCOUNT_PREFIX, Attributes, UserInfo

log = logging.getLogger("apiserver.authz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AUTH_USER = "pkube.authz.user"  # the UserInfo the request acts as (after impersonation)
ANONYMOUS = "system:anonymous"
_EXTRA_PREFIX = "impersonate-extra-"


def user_info(user: User) -> UserInfo:
    anonymous = user.name == ANONYMOUS  # only ever in system:unauthenticated (auth.ANONYMOUS)
    groups = user.groups if anonymous or AUTHENTICATED in user.groups else (*user.groups, AUTHENTICATED)
    return UserInfo(user.name, user.uid, groups, dict(user.extra))


def attributes_for(user: UserInfo, info: requestinfo.RequestInfo) -> Attributes:
    return Attributes(**vars(info), user=user)


def impersonate(request: web.Request, actor: UserInfo, authorizer: Authorizer) -> UserInfo:
    """The user named by Impersonate-* headers, if `actor` may impersonate every part of it (403 otherwise)."""
    headers = request.headers
    name = headers.get("Impersonate-User")
    groups = headers.getall("Impersonate-Group", [])
    uid = headers.get("Impersonate-Uid")
    extra: dict[str, tuple[str, ...]] = {}
    for key in {k.lower() for k in headers if k.lower().startswith(_EXTRA_PREFIX)}:
        extra[key[len(_EXTRA_PREFIX):]] = tuple(headers.getall(key))
    if name is None:
        if groups or uid is not None or extra:
            raise bad_request("requested impersonation of groups, uid or extra without impersonating a user")
        return actor
    checks: list[Attributes] = []
    if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
        _, _, sa_namespace, sa_name = name.split(":")
        checks.append(Attributes("impersonate", True, sa_namespace, "", "v1", "serviceaccounts", "", sa_name,
                                 user=actor))
        if not groups:
            groups = ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}"]
    else:
        checks.append(Attributes("impersonate", True, "", "", "v1", "users", "", name, user=actor))
    for group in headers.getall("Impersonate-Group", []):
        checks.append(Attributes("impersonate", True, "", "", "v1", "groups", "", group, user=actor))
    if uid is not None:
        checks.append(Attributes("impersonate", True, "", "authentication.k8s.io", "v1", "uids", "", uid, user=actor))
    for key, values in extra.items():
        for value in values:
            checks.append(Attributes("impersonate", True, "", "authentication.k8s.io", "v1", "userextras",
                                     key, value, user=actor))
    for attrs in checks:
        decision = authorizer.authorize(attrs)
        if not decision.allowed:
            raise denied(attrs, decision.reason)
    if name == ANONYMOUS:
        groups = [*groups, UNAUTHENTICATED] if UNAUTHENTICATED not in groups else groups
    elif AUTHENTICATED not in groups:
        groups = [*groups, AUTHENTICATED]
    return UserInfo(name, uid or "", tuple(groups), extra)


def middleware(authorizer: Authorizer) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        authenticated: User | None = request.get(USER)
        if authenticated is None:  # an open path: authentication let it through without a user
            return await handler(request)
        try:
            user = impersonate(request, user_info(authenticated), authorizer)
            info = requestinfo.parse(request.method, request.path, request.query)
            attrs = attributes_for(user, info)
            decision = authorizer.authorize(attrs)
            if not decision.allowed:
                log.info("forbidden: %s %s for %s (groups %s)", request.method, request.path, user.name,
                         ",".join(user.groups))
                raise denied(attrs, decision.reason)
        except StatusError as e:
            return status_response(e)
        request[AUTH_USER] = user
        token = CURRENT.set(RequestAuth(user, authorizer))
        try:
            return await handler(request)
        finally:
            CURRENT.reset(token)
    return authorize
