"""ServiceAccount tokens in the apiserver: the authenticator, TokenRequest and TokenReview.

- `serviceaccounts/<name>/token` (TokenRequest, authentication.k8s.io/v1, create only): a signed token for the
  ServiceAccount, for the requested audiences (default: the API's, i.e. the issuer) and duration (default one
  hour, at least ten minutes), optionally bound to a Pod or Secret (name, uid checked). A node (system:node:X)
  may only ask for tokens bound to a pod running on it (Kubernetes' NodeRestriction).
- The authenticator: a JWT from our issuer authenticates as `system:serviceaccount:NS:NAME` (groups
  system:serviceaccounts and system:serviceaccounts:NS) while it is unexpired, meant for the API's audiences,
  and the ServiceAccount and the bound object still exist with the uids it names (looked up in the watch
  cache, then in etcd when the cache does not have it yet).
- `tokenreviews` (create only): says who a token authenticates as, for the audiences asked about.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from aiohttp import web

from pklib.api.timefmt import format_time, now_rfc3339, parse_time
from pklib.resources import PODS, SECRETS, SELFSUBJECTREVIEWS, SERVICEACCOUNTS, TOKENREVIEWS

from . import bodies
from .auth import User, authenticate_token, Authenticator
from .authz.authorizer import AUTHENTICATED, CURRENT
from .authz.node import node_name_of
from .kinds.fields import Cause, Path, invalid, not_supported, required
from .satokens import (DEFAULT_EXPIRATION, MAX_EXPIRATION, MIN_EXPIRATION, BoundObject, InvalidToken, Issuer,
                       TokenClaims, Validator)
from .status import StatusError, forbidden, invalid as invalid_status, json_response, method_not_allowed, not_found
from .handlers_objects import Objects

log = logging.getLogger("apiserver.serviceaccounts")
Obj = dict[str, Any]
AUTH_GROUP = "authentication.k8s.io"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
CREDENTIAL_EXTRA = "authentication.kubernetes.io/credential-id"
# Deleted pods' tokens keep working this long after deletionTimestamp (Kubernetes' validator allows 60 s).
DELETED_GRACE = 60
_BINDABLE = {"Pod": PODS, "Secret": SECRETS}


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _invalid(kind: str, name: str, causes: list[Cause]) -> StatusError:
    """422 worded as Kubernetes words it for a kind of a named group: `TokenRequest.authentication.k8s.io "x" ...`."""
    err = invalid_status(kind, name, [{"reason": c["type"], "message": c["message"], "field": c["field"]}
                                      for c in causes], AUTH_GROUP)
    err.message = err.message.replace(f'{kind} "', f'{kind}.{AUTH_GROUP} "', 1)
    return err


class ServiceAccounts:
    """Issues and checks service-account tokens; `issuer` None: this apiserver cannot issue (only check)."""

    def __init__(self, issuer: Issuer | None, validator: Validator, objects: Objects) -> None:
        self.issuer = issuer
        self.validator = validator
        self.audiences = validator.issuers  # --api-audiences defaults to the issuers, as in Kubernetes
        self._lookup = objects.lookup  # the watch cache, else etcd

    # -- authentication ----------------------------------------------------------------------------------

    async def check(self, token: str, audiences: tuple[str, ...]) -> User:
        """The user a valid token authenticates as; InvalidToken with the reason otherwise."""
        claims = self.validator.validate(token, audiences)
        sa = await self._lookup(SERVICEACCOUNTS, claims.namespace, claims.name)
        if sa is None:
            raise InvalidToken(f'serviceaccounts "{claims.name}" not found')
        if claims.uid and _dict(sa.get("metadata")).get("uid") != claims.uid:
            raise InvalidToken(f"service account UID ({claims.uid}) does not match claim "
                               f"({_dict(sa.get('metadata')).get('uid')})")
        if claims.bound is not None:
            await self._check_bound(claims)
        return self._user(claims)

    async def _check_bound(self, claims: TokenClaims) -> None:
        assert claims.bound is not None
        res = _BINDABLE.get(claims.bound.kind)
        if res is None:
            raise InvalidToken(f"service account token is bound to an unsupported kind {claims.bound.kind}")
        obj = await self._lookup(res, claims.namespace, claims.bound.name)
        if obj is None:
            raise InvalidToken(f'{res.plural} "{claims.bound.name}" not found')
        meta = _dict(obj.get("metadata"))
        if meta.get("uid") != claims.bound.uid:
            raise InvalidToken(f"{claims.bound.kind} UID ({claims.bound.uid}) does not match claim "
                               f"({meta.get('uid')})")
        deleted = parse_time(meta.get("deletionTimestamp"))
        if deleted is not None and deleted.timestamp() < self.validator.clock() - DELETED_GRACE:
            raise InvalidToken(f"{claims.bound.kind} \"{claims.bound.name}\" is being deleted")

    @staticmethod
    def _user(claims: TokenClaims) -> User:
        extra: list[tuple[str, tuple[str, ...]]] = []
        if claims.bound is not None and claims.bound.kind == "Pod":
            extra += [(POD_NAME_EXTRA, (claims.bound.name,)), (POD_UID_EXTRA, (claims.bound.uid,))]
        if claims.credential_id:
            extra.append((CREDENTIAL_EXTRA, (f"JTI={claims.credential_id}",)))
        return User(claims.username, claims.uid, claims.groups, tuple(extra))

    async def authenticate(self, token: str) -> User | None:
        """The request authenticator: None for tokens that are not ours, or that do not (any longer) work."""
        if not self.validator.looks_like_ours(token):
            return None
        try:
            return await self.check(token, self.audiences)
        except InvalidToken as e:
            log.debug("service-account token refused: %s", e)
            return None

    # -- TokenRequest ------------------------------------------------------------------------------------

    async def token_request(self, namespace: str, name: str, body: Obj) -> Obj:
        if self.issuer is None:
            raise StatusError(404, "NotFound", "the server could not find the requested resource")
        spec = _dict(body.get("spec"))
        causes: list[Cause] = []
        audiences = spec.get("audiences") or list(self.audiences)
        if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
            causes.append(invalid(Path("spec").child("audiences"), audiences, "must be a list of non-empty strings"))
        expiration = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
        if not isinstance(expiration, int) or isinstance(expiration, bool):
            causes.append(invalid(Path("spec").child("expirationSeconds"), expiration, "must be an integer"))
        elif expiration < MIN_EXPIRATION:
            causes.append(invalid(Path("spec").child("expirationSeconds"), expiration,
                                  "may not specify a duration less than 10 minutes"))
        elif expiration > MAX_EXPIRATION:
            causes.append(invalid(Path("spec").child("expirationSeconds"), expiration,
                                  "may not specify a duration larger than 2^32 seconds"))
        ref = spec.get("boundObjectRef")
        ref_path = Path("spec").child("boundObjectRef")
        if ref is not None:
            ref = _dict(ref)
            if ref.get("kind") not in _BINDABLE:
                causes.append(not_supported(ref_path.child("kind"), ref.get("kind"), list(_BINDABLE)))
            elif ref.get("apiVersion", "v1") != "v1":
                causes.append(not_supported(ref_path.child("apiVersion"), ref.get("apiVersion"), ["v1"]))
            if not ref.get("name"):
                causes.append(required(ref_path.child("name")))
        if causes:
            raise _invalid("TokenRequest", name, causes)
        ctx = CURRENT.get()
        node = node_name_of(ctx.user) if ctx is not None else None
        if node is not None and ref is None:  # NodeRestriction: a node gets tokens only for the pods it runs
            raise forbidden(f"node {node!r} requested token not bound to a pod")
        sa = await self._lookup(SERVICEACCOUNTS, namespace, name)
        if sa is None:
            raise not_found(SERVICEACCOUNTS.plural, name)
        bound = await self._bound_object(namespace, name, ref) if ref is not None else None
        assert isinstance(expiration, int)
        token, exp = self.issuer.issue(namespace, name, str(_dict(sa.get("metadata")).get("uid") or ""),
                                       audiences, expiration, bound)
        out_spec: Obj = {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": None}
        if ref is not None:
            out_spec["boundObjectRef"] = {"kind": ref["kind"], "apiVersion": "v1", "name": ref["name"],
                                          "uid": bound.uid if bound else ""}
        return {"kind": "TokenRequest", "apiVersion": f"{AUTH_GROUP}/v1",
                "metadata": {"name": name, "namespace": namespace, "creationTimestamp": now_rfc3339()},
                "spec": out_spec, "status": {"token": token,
                           "expirationTimestamp": format_time(dt.datetime.fromtimestamp(exp, dt.timezone.utc))}}

    async def _bound_object(self, namespace: str, sa_name: str, ref: Obj) -> BoundObject:
        kind, name = str(ref["kind"]), str(ref["name"])
        res = _BINDABLE[kind]
        obj = await self._lookup(res, namespace, name)
        if obj is None:
            raise not_found(res.plural, name)
        meta = _dict(obj.get("metadata"))
        uid = str(meta.get("uid") or "")
        if ref.get("uid") and ref["uid"] != uid:
            raise StatusError(409, "Conflict", f"the UID in the bound object reference ({ref['uid']}) does not "
                                               f"match the UID in record. The object might have been deleted "
                                               f"and then recreated")
        spec = _dict(obj.get("spec"))
        if kind == "Pod" and (spec.get("serviceAccountName") or "default") != sa_name:
            raise StatusError(400, "BadRequest", f'cannot bind token for serviceaccount "{sa_name}" to pod running '
                                                 f'with different serviceaccount name.')
        ctx = CURRENT.get()
        node = node_name_of(ctx.user) if ctx is not None else None
        if node is not None:
            if kind != "Pod":
                raise forbidden(f"node {node!r} requested token not bound to a pod")
            if spec.get("nodeName") != node:
                raise forbidden(f"node {node!r} requested token bound to a pod scheduled on a different node")
        return BoundObject(kind, name, uid)

    # -- TokenReview ------------------------------------------------------------------------------------

    async def token_review(self, body: Obj, others: list[Authenticator]) -> Obj:
        spec = _dict(body.get("spec"))
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise _invalid("TokenReview", "", [required(Path("spec").child("token"))])
        wanted = spec.get("audiences") or list(self.audiences)
        audiences = tuple(a for a in wanted if isinstance(a, str)) if isinstance(wanted, list) else ()
        status: Obj = {"user": {}}
        try:
            if self.validator.looks_like_ours(token):
                user: User | None = await self.check(token, audiences)
                status["audiences"] = [a for a in audiences]
            else:
                user = await authenticate_token(others, token)
                if user is not None:
                    status["audiences"] = list(audiences)
            if user is None:
                raise InvalidToken("invalid bearer token")
            status["authenticated"] = True
            groups = list(user.groups) if AUTHENTICATED in user.groups else [*user.groups, AUTHENTICATED]
            status["user"] = {"username": user.name, "uid": user.uid, "groups": groups}
            if user.extra:
                status["user"]["extra"] = {k: list(v) for k, v in user.extra}
        except InvalidToken as e:
            status["error"] = f"[invalid bearer token, {e}]" if str(e) != "invalid bearer token" else str(e)
        out = dict(body)
        out["apiVersion"], out["kind"] = f"{AUTH_GROUP}/v1", "TokenReview"
        out["metadata"] = {**_dict(body.get("metadata")), "creationTimestamp": None}
        out["status"] = status
        return out

    def routes(self, others: list[Authenticator]) -> list[web.RouteDef]:
        async def post_body(request: web.Request) -> Obj:
            if request.method != "POST":
                raise method_not_allowed(request.method)
            body = await bodies.read_object(request)
            if not isinstance(body, dict):
                raise StatusError(400, "BadRequest", "the body of the request must be an object")
            return body

        async def token(request: web.Request) -> web.StreamResponse:
            body = await post_body(request)
            out = await self.token_request(request.match_info["namespace"], request.match_info["name"], body)
            return json_response(out, 201)

        async def review(request: web.Request) -> web.StreamResponse:
            return json_response(await self.token_review(await post_body(request), others), 201)

        return [web.route("*", SERVICEACCOUNTS.path("{namespace}", "{name}", "token"), token),
                web.route("*", TOKENREVIEWS.path(), review)]


def self_subject_review_routes() -> list[web.RouteDef]:
    """SelfSubjectReview (`kubectl auth whoami`): who the request authenticated as."""
    async def whoami(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise method_not_allowed(request.method)
        body = await bodies.read_object(request, optional=True) or {}
        ctx = CURRENT.get()
        info: Obj = {"username": "system:anonymous", "groups": ["system:masters"]}
        if ctx is not None:
            info = {"username": ctx.user.name, "groups": list(ctx.user.groups)}
            if ctx.user.uid:
                info["uid"] = ctx.user.uid
            if ctx.user.extra:
                info["extra"] = {k: list(v) for k, v in ctx.user.extra.items()}
        out = {"apiVersion": f"{AUTH_GROUP}/v1", "kind": "SelfSubjectReview",
               "metadata": {**_dict(_dict(body).get("metadata")), "creationTimestamp": None},
               "status": {"userInfo": info}}
        return json_response(out, 201)
    return [web.route("*", SELFSUBJECTREVIEWS.path(), whoami)]
