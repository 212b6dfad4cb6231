"""Service-account tokens for projected volumes (Kubernetes' kubelet token manager).

A `serviceAccountToken` projection is filled with a token the kubelet asks the apiserver for through
TokenRequest, bound to the pod (so it stops working when the pod is deleted). Tokens are cached per
(pod, audience, duration) and fetched again once 80 % of their lifetime or 24 hours have passed, or when the
wall clock was stepped back by more than the apiserver's leeway since (it would refuse the token as not valid
yet until the clock caught up; Kubernetes' kubelet keeps it); the volume refresh of running pods (podworkers)
then writes the new one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from pklib.api.timefmt import parse_time
from pklib.client import Client
from pklib.errors import ApiError, ConnectionFailed
from pklib.resources import SERVICEACCOUNTS

from kubelet.env import ConfigError

MAX_AGE = 24 * 3600.0
STEPPED_BACK = 60.0  # the apiserver accepts a token's nbf this far in its future (apiserver/satokens.LEEWAY)


@dataclass(frozen=True)
class _Token:
    value: str
    issued: float
    expires: float

    def needs_refresh(self, now: float) -> bool:
        return (now > self.issued + 0.8 * (self.expires - self.issued) or now > self.issued + MAX_AGE
                or now < self.issued - STEPPED_BACK)


def _expiry(text: Any, fallback: float) -> float:
    parsed = parse_time(text) if isinstance(text, str) else None
    return parsed.timestamp() if parsed is not None else fallback


class TokenManager:
    def __init__(self, client: Client, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._tokens: dict[tuple[str, str, int], _Token] = {}  # (pod uid, audience, seconds) -> token

    async def token(self, pod: dict[str, Any], audience: str, expiration_seconds: int) -> str:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        key = (meta["uid"], audience, expiration_seconds)
        now = self.clock()
        cached = self._tokens.get(key)
        if cached is not None and not cached.needs_refresh(now):
            return cached.value
        sa = spec.get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [], "expirationSeconds": expiration_seconds,
                         "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                                            "uid": meta["uid"]}}}
        try:
            out = await self.client.request("POST", SERVICEACCOUNTS.path(meta["namespace"], sa, "token"), body=body)
        except (ApiError, ConnectionFailed) as e:
            if cached is not None and now < cached.expires:
                return cached.value  # keep using the one we have until it expires
            message = e.message if isinstance(e, ApiError) else str(e)
            raise ConfigError(f'failed to fetch token: serviceaccounts "{sa}" token: {message}') from None
        status = out.get("status") or {}
        token = _Token(str(status.get("token") or ""), now,
                       _expiry(status.get("expirationTimestamp"), now + expiration_seconds))
        self._tokens[key] = token
        return token.value

    def forget(self, uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
