"""Authentication: X.509 client certificates, then a chain of bearer-token authenticators, as kube-apiserver's
union authenticator.

A client certificate the TLS server verified against --client-ca-file names the user by its CN and the groups by
its Os. The static token file (--token-auth-file) is CSV: `token,user,uid,"group1,group2"` (groups optional);
service-account JWTs are checked by apiserver/serviceaccounts.py, bootstrap tokens (`ID.SECRET`, Secrets of type
bootstrap.kubernetes.io/token in kube-system) here. The first authenticator that knows the token decides; a
token none knows is a 401. Health and version endpoints stay open so that probes and load balancers need no
token; a request without credentials for the cluster-info ConfigMap is system:anonymous (where a joining node
finds the cluster's CA; RBAC lets anonymous read only that).
"""
from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from pklib.api import certificates as certs

from .status import status_response, unauthorized

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
USER = "pkube.user"


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # e.g. the pod a service-account token is bound to


class TokenFileError(ValueError):
    pass


def load_tokens(path: str) -> dict[str, User]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise TokenFileError(f"cannot read token file {path}: {e.strerror}") from None
    tokens: dict[str, User] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].startswith("#"):
            continue
        if len(row) < 3 or not row[0].strip() or not row[1].strip():
            raise TokenFileError(f"{path}:{lineno}: expected token,user,uid[,\"groups\"]")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[row[0].strip()] = User(row[1].strip(), row[2].strip(), groups)
    if not tokens:
        raise TokenFileError(f"{path}: no tokens")
    return tokens


Authenticator = Callable[[str], Awaitable[User | None]]  # bearer token -> its user, None if unknown to it


def static_tokens(tokens: dict[str, User]) -> Authenticator:
    async def authenticate(token: str) -> User | None:
        presented = token.encode()
        user = None
        # Compare in constant time so response timing does not leak token prefixes.
        for known, candidate in tokens.items():
            if hmac.compare_digest(known.encode(), presented):
                user = candidate
        return user
    return authenticate


async def authenticate_token(authenticators: list[Authenticator], token: str) -> User | None:
    for authenticator in authenticators:
        user = await authenticator(token)
        if user is not None:
            return user
    return None


async def _no_secret(namespace: str, name: str) -> dict[str, Any] | None:
    return None


SecretReader = Callable[[str, str], Awaitable[dict[str, Any] | None]]


def bootstrap_tokens(read_secret: SecretReader = _no_secret) -> Authenticator:
    """Kubernetes' bootstrap-token authenticator: `ID.SECRET` is system:bootstrap:ID in system:bootstrappers
    (and the Secret's auth-extra-groups) while its Secret allows authentication and has not expired."""
    async def authenticate(token: str) -> User | None:
        m = certs.BOOTSTRAP_TOKEN_RE.match(token)
        if m is None:
            return None
        token_id, secret = m.groups()
        obj = await read_secret(certs.TOKEN_NAMESPACE, certs.BOOTSTRAP_TOKEN_PREFIX + token_id)
        if obj is None or obj.get("type") != certs.BOOTSTRAP_TOKEN_TYPE or \
                (obj.get("metadata") or {}).get("deletionTimestamp"):
            return None
        data = certs.decode_secret_data(obj)
        if data.get("token-id") != token_id or not hmac.compare_digest(data.get("token-secret", ""), secret):
            return None
        if data.get("usage-bootstrap-authentication") != "true":
            return None
        if certs.bootstrap_token_expired(data, datetime.now(timezone.utc)):
            return None
        extra = [g.strip() for g in data.get("auth-extra-groups", "").split(",") if g.strip()]
        if any(not certs.BOOTSTRAP_GROUP_RE.match(g) for g in extra):
            return None
        return User(certs.BOOTSTRAP_USER_PREFIX + token_id, "", (certs.BOOTSTRAPPERS_GROUP, *extra))
    return authenticate


def certificate_user(request: web.Request) -> User | None:
    """The user of a client certificate the TLS handshake verified (CN = name, O = groups), None without one."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    name, groups = "", []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    return User(name, "", tuple(groups)) if name else None


ANONYMOUS = User("system:anonymous", "", ("system:unauthenticated",))
# Paths a request without credentials may reach as system:anonymous (RBAC decides what it may do there), as
# kubeadm's clusters allow for the cluster-info ConfigMap.
ANONYMOUS_PATHS = frozenset({f"/api/v1/namespaces/{certs.CLUSTER_INFO_NAMESPACE}/configmaps/{certs.CLUSTER_INFO_NAME}"})


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def middleware(authenticators: list[Authenticator]) -> Callable[[web.Request, Handler],
                                                                Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        token = bearer_token(request)
        user = certificate_user(request)
        if user is None and token:
            user = await authenticate_token(authenticators, token)
        elif user is None and request.path in ANONYMOUS_PATHS and request.method == "GET":
            user = ANONYMOUS
        if user is None:
            return status_response(unauthorized())
        request[USER] = user
        return await handler(request)
    return authenticate
