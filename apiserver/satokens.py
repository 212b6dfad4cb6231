"""Service-account tokens: signed JWTs as kube-apiserver issues and checks them (pkg/serviceaccount/claims.go).

A token names its issuer (`iss`), subject `system:serviceaccount:<ns>:<name>`, audiences (`aud`), times
(`iat`, `nbf`, `exp`) and, under `kubernetes.io`, the namespace, the ServiceAccount (name, uid) and the object
it is bound to (a Pod or a Secret, name and uid). The signature and times are checked here (pure logic); that
the ServiceAccount and the bound object still exist with those uids is the caller's part (auth.py asks the
watch cache), so a token stops working when its pod or ServiceAccount is deleted.
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from jwt.types import Options
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
CLAIMS_KEY = "kubernetes.io"
MIN_EXPIRATION = 600  # Kubernetes: "may not specify a duration less than 10 minutes"
DEFAULT_EXPIRATION = 3600
MAX_EXPIRATION = 2**32  # Kubernetes' bound (seconds), beyond it the request is invalid
VERIFIED_CACHE_SIZE = 4096  # tokens whose signature was checked, most recently used kept
LEEWAY = 60  # clock skew tolerated on nbf/exp, as Kubernetes' validator allows

# PyJWT checks the signature only: times (with LEEWAY) and audiences are checked by _check, with our clock.
_SIGNATURE_ONLY: Options = {"verify_aud": False, "verify_exp": False, "verify_nbf": False,
                                   "verify_iat": False, "require": ["iss", "sub", "exp"]}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyFileError(ValueError):
    pass


class InvalidToken(Exception):
    """Why a token does not authenticate (the TokenReview's status.error)."""


def _algorithm(key: PublicKey | PrivateKey) -> str:
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return "RS256"
    curve = key.curve.name
    return {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}[curve]


def key_id(public: PublicKey) -> str:
    """Kubernetes' keyIDFromPublicKey: base64url(sha256(DER of the SubjectPublicKeyInfo)), unpadded."""
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")


def load_private_key(path: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not a PEM private key: {e}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyFileError(f"{path}: only RSA and ECDSA keys can sign service-account tokens")
    return key


def load_public_keys(path: str) -> list[PublicKey]:
    """Every public key in a PEM file: PUBLIC KEY blocks, or the public half of a private key (as Kubernetes'
    --service-account-key-file accepts either)."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror}") from None
    keys: list[PublicKey] = []
    for match in _PEM_BLOCK.finditer(text):
        kind, pem = match.group(1), match.group(0)
        try:
            if kind.endswith(b"PRIVATE KEY"):
                loaded: Any = serialization.load_pem_private_key(pem, password=None).public_key()
            elif kind == b"PUBLIC KEY":
                loaded = serialization.load_pem_public_key(pem)
            else:
                continue
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{path}: unreadable key: {e}") from None
        if isinstance(loaded, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            keys.append(loaded)
    if not keys:
        raise KeyFileError(f"{path}: no RSA or ECDSA public key found")
    return keys


@dataclass(frozen=True)
class BoundObject:
    kind: str  # Pod or Secret
    name: str
    uid: str


@dataclass(frozen=True)
class TokenClaims:
    """What a valid token says: who it is for and what must still exist."""
    namespace: str
    name: str  # the ServiceAccount
    uid: str   # the ServiceAccount's uid
    audiences: tuple[str, ...]
    bound: BoundObject | None = None
    node: str = ""
    issued_at: int = 0
    credential_id: str = ""

    @property
    def username(self) -> str:
        return f"{SA_PREFIX}{self.namespace}:{self.name}"

    @property
    def groups(self) -> tuple[str, ...]:
        return (SA_GROUP, f"{SA_GROUP}:{self.namespace}")


def split_username(username: str) -> tuple[str, str] | None:
    """(namespace, name) of `system:serviceaccount:NS:NAME`, None for other users."""
    if not username.startswith(SA_PREFIX):
        return None
    namespace, sep, name = username[len(SA_PREFIX):].partition(":")
    return (namespace, name) if sep and namespace and name and ":" not in name else None


@dataclass
class Issuer:
    """Signs tokens with the --service-account-signing-key-file key, as the first --service-account-issuer."""
    key: PrivateKey
    issuer: str
    clock: Any = field(default=time.time)

    def issue(self, namespace: str, name: str, uid: str, audiences: list[str], expiration_seconds: int,
              bound: BoundObject | None = None) -> tuple[str, int]:
        """(token, expiry as Unix seconds)."""
        now = int(self.clock())
        exp = now + expiration_seconds
        private: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if bound is not None:
            private[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        claims = {"iss": self.issuer, "sub": f"{SA_PREFIX}{namespace}:{name}", "aud": audiences,
                  "iat": now, "nbf": now, "exp": exp, "jti": str(uuid.uuid4()), CLAIMS_KEY: private}
        token = jwt.encode(claims, self.key, algorithm=_algorithm(self.key),  # type: ignore[arg-type]
                           headers={"kid": key_id(self.key.public_key())})
        return token, exp


@dataclass
class Validator:
    """Checks a token's signature (any of the --service-account-key-file keys), issuer, times and audiences.

    A signature, once verified, is remembered (a bounded set of recent tokens, like Kubernetes' cached token
    authenticator): a client sends the same token with every request, and checking RSA on each one would cost
    more than serving it. Times and audiences are checked on every call."""
    keys: list[PublicKey]
    issuers: tuple[str, ...]
    clock: Any = field(default=time.time)
    _by_kid: dict[str, PublicKey] = field(default_factory=dict, init=False, repr=False)
    _verified: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_kid = {key_id(k): k for k in self.keys}

    def looks_like_ours(self, token: str) -> bool:
        """Whether a bearer token is a JWT from one of our issuers (others go to the other authenticators)."""
        if token.count(".") != 2:
            return False
        if token in self._verified:
            return True
        try:
            return jwt.decode(token, options={"verify_signature": False}).get("iss") in self.issuers
        except jwt.PyJWTError:
            return False

    def validate(self, token: str, audiences: tuple[str, ...]) -> TokenClaims:
        """The claims of a valid token meant for one of `audiences`; InvalidToken with the reason otherwise."""
        verified = self._verified.get(token)
        if verified is not None:
            self._verified.move_to_end(token)
            return self._check(verified, audiences)
        claims = self._verify(token)
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return self._check(claims, audiences)

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("invalid bearer token") from None
        claims: dict[str, Any] | None = None
        for key in self._candidates(header.get("kid")):
            try:
                claims = jwt.decode(token, key, algorithms=[_algorithm(key)],  # type: ignore[arg-type]
                                    options=_SIGNATURE_ONLY)
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as e:
                raise InvalidToken(f"invalid bearer token: {e}") from None
        if claims is None:
            raise InvalidToken("invalid bearer token, token could not be verified against any key")
        return claims

    def _candidates(self, kid: Any) -> list[PublicKey]:
        matching = self._by_kid.get(kid) if isinstance(kid, str) else None
        return [matching] if matching is not None else self.keys

    def _check(self, claims: dict[str, Any], audiences: tuple[str, ...]) -> TokenClaims:
        if claims.get("iss") not in self.issuers:
            raise InvalidToken("invalid bearer token, token issuer is not accepted")
        now = self.clock()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not isinstance(exp, (int, float)) or now > exp + LEEWAY:
            raise InvalidToken("service account token has expired")
        if isinstance(nbf, (int, float)) and now < nbf - LEEWAY:
            raise InvalidToken("service account token is not valid yet")
        aud = claims.get("aud")
        token_audiences = tuple(aud) if isinstance(aud, list) else (aud,) if isinstance(aud, str) else ()
        if not set(token_audiences) & set(audiences):
            raise InvalidToken(f"token audiences {list(token_audiences)!r} is invalid for the target audiences "
                               f"{list(audiences)!r}")
        private = claims.get(CLAIMS_KEY)
        if not isinstance(private, dict):
            raise InvalidToken("service account token claims could not be read")
        sa = private.get("serviceaccount") or {}
        split = split_username(str(claims.get("sub") or ""))
        namespace = str(private.get("namespace") or "")
        if split is None or split != (namespace, sa.get("name")):
            raise InvalidToken("service account token claims do not match its subject")
        bound = None
        for kind in ("pod", "secret"):
            ref = private.get(kind)
            if isinstance(ref, dict):
                bound = BoundObject(kind.capitalize(), str(ref.get("name") or ""), str(ref.get("uid") or ""))
                break
        node = private.get("node")
        return TokenClaims(namespace, split[1], str(sa.get("uid") or ""), token_audiences, bound,
                           str(node.get("name") or "") if isinstance(node, dict) else "",
                           int(claims.get("iat") or 0), str(claims.get("jti") or ""))
