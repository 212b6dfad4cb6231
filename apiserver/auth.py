"""Bearer-token authentication: a chain of authenticators, as kube-apiserver's union authenticator.

The static token file (--token-auth-file) is CSV: `token,user,uid,"group1,group2"` (groups optional);
service-account JWTs are checked by apiserver/serviceaccounts.py. The first authenticator that knows the
token decides; a token none knows is a 401. Health and version endpoints stay open so that probes and load
balancers need no token.
"""
from __future__ import annotations

import csv
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

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
        user = await authenticate_token(authenticators, token) if token else None
        if user is None:
            return status_response(unauthorized())
        request[USER] = user
        return await handler(request)
    return authenticate
