"""Service-account token logic without a server: signing and checking JWTs, key files, the ServiceAccount
admission plugin's mutation, and the kubelet's token cache."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apiserver.admission.serviceaccount import MOUNT_PATH, admit_pod
from apiserver.satokens import (BoundObject, InvalidToken, Issuer, KeyFileError, Validator, key_id, load_private_key,
                                load_public_keys, split_username)
from apiserver.status import StatusError
from kubelet.env import ConfigError
from kubelet.tokens import TokenManager
from pklib.errors import ApiError

ISS = "https://kubernetes.default.svc.cluster.local"
NOW = 1_800_000_000.0


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return _rsa()


def _pair(key: Any, now: float = NOW) -> tuple[Issuer, Validator]:
    return Issuer(key, ISS, clock=lambda: now), Validator([key.public_key()], (ISS,), clock=lambda: now)


def test_a_token_carries_kubernetes_claims_and_validates(key: rsa.RSAPrivateKey) -> None:
    issuer, validator = _pair(key)
    token, exp = issuer.issue("ns", "robot", "uid-1", [ISS], 3600, BoundObject("Pod", "p", "pod-uid"))
    assert exp == NOW + 3600
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == key_id(key.public_key())
    body = jwt.decode(token, options={"verify_signature": False})
    assert body["sub"] == "system:serviceaccount:ns:robot" and body["iss"] == ISS and body["aud"] == [ISS]
    assert body["kubernetes.io"] == {"namespace": "ns", "serviceaccount": {"name": "robot", "uid": "uid-1"},
                                     "pod": {"name": "p", "uid": "pod-uid"}}
    claims = validator.validate(token, (ISS,))
    assert (claims.namespace, claims.name, claims.uid) == ("ns", "robot", "uid-1")
    assert claims.bound == BoundObject("Pod", "p", "pod-uid")
    assert claims.username == "system:serviceaccount:ns:robot"
    assert claims.groups == ("system:serviceaccounts", "system:serviceaccounts:ns")
    assert validator.looks_like_ours(token) and not validator.looks_like_ours("static-token")


def test_ecdsa_keys_sign_with_es256() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer, validator = _pair(key)
    token, _ = issuer.issue("ns", "robot", "u", [ISS], 600)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert validator.validate(token, (ISS,)).name == "robot"


@pytest.mark.parametrize("case, reason", [
    ("expired", "service account token has expired"),
    ("not yet", "service account token is not valid yet"),
    ("audience", "token audiences ['vault'] is invalid for the target audiences"),
    ("foreign key", "could not be verified against any key"),
    ("issuer", "token issuer is not accepted"),
    ("tampered", "invalid bearer token"),
])
def test_bad_tokens_are_refused_with_the_reason(key: rsa.RSAPrivateKey, case: str, reason: str) -> None:
    _, validator = _pair(key)
    signers = {"expired": Issuer(key, ISS, clock=lambda: NOW - 3700),
               "not yet": Issuer(key, ISS, clock=lambda: NOW + 600),
               "foreign key": Issuer(_rsa(), ISS), "issuer": Issuer(key, "https://elsewhere")}
    signer = signers.get(case, Issuer(key, ISS, clock=lambda: NOW))
    token, _ = signer.issue("ns", "robot", "u", ["vault"] if case == "audience" else [ISS], 3600)
    if case == "tampered":
        head, body, sig = token.split(".")
        token = ".".join((head, body[:-2] + ("AA" if body[-2:] != "AA" else "BB"), sig))
    with pytest.raises(InvalidToken) as e:
        validator.validate(token, (ISS,))
    assert reason in str(e.value)


def test_expiry_allows_a_minute_of_clock_skew(key: rsa.RSAPrivateKey) -> None:
    token, _ = Issuer(key, ISS, clock=lambda: NOW - 3630).issue("ns", "robot", "u", [ISS], 3600)
    assert Validator([key.public_key()], (ISS,), clock=lambda: NOW).validate(token, (ISS,)).name == "robot"


def test_a_remembered_signature_still_expires(key: rsa.RSAPrivateKey) -> None:
    now = [NOW]
    validator = Validator([key.public_key()], (ISS,), clock=lambda: now[0])
    token, _ = Issuer(key, ISS, clock=lambda: NOW).issue("ns", "robot", "u", [ISS], 3600)
    assert validator.validate(token, (ISS,)).name == "robot"
    assert validator.validate(token, (ISS,)).name == "robot"  # from the cache
    with pytest.raises(InvalidToken, match="token audiences"):
        validator.validate(token, ("vault",))
    now[0] += 3600 + 61
    with pytest.raises(InvalidToken, match="expired"):
        validator.validate(token, (ISS,))


def test_key_files(tmp_path: Path, key: rsa.RSAPrivateKey) -> None:
    private = tmp_path / "sa.key"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "sa.pub"
    other = _rsa().public_key()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    public.write_bytes(b"".join(k.public_bytes(serialization.Encoding.PEM, spki) for k in (key.public_key(), other)))
    assert key_id(load_private_key(str(private)).public_key()) == key_id(key.public_key())
    assert [key_id(k) for k in load_public_keys(str(public))] == [key_id(key.public_key()), key_id(other)]
    assert [key_id(k) for k in load_public_keys(str(private))] == [key_id(key.public_key())]
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(KeyFileError, match="no RSA or ECDSA public key found"):
        load_public_keys(str(tmp_path / "junk"))
    with pytest.raises(KeyFileError, match="cannot read"):
        load_private_key(str(tmp_path / "missing"))


def test_split_username() -> None:
    assert split_username("system:serviceaccount:ns:robot") == ("ns", "robot")
    assert split_username("system:serviceaccount:ns") is None
    assert split_username("alice") is None


# -- the ServiceAccount admission plugin ------------------------------------------------------------------

def _admit(pod: dict[str, Any], accounts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    async def lookup(name: str) -> dict[str, Any] | None:
        return accounts.get(name)
    asyncio.run(admit_pod(pod, lookup))
    return pod


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}], **spec}}


def test_admission_adds_the_volume_once_and_respects_opt_outs() -> None:
    pod = _admit(_pod(), {})  # `default` may not exist yet: let through
    [volume] = pod["spec"]["volumes"]
    assert pod["spec"]["serviceAccountName"] == "default"
    assert pod["spec"]["containers"][0]["volumeMounts"] == [{"name": volume["name"], "readOnly": True,
                                                             "mountPath": MOUNT_PATH}]
    again = _admit(pod, {})
    assert len(again["spec"]["volumes"]) == 1 and len(again["spec"]["containers"][0]["volumeMounts"]) == 1
    assert "volumes" not in _admit(_pod(automountServiceAccountToken=False), {})["spec"]
    quiet = {"q": {"automountServiceAccountToken": False}}
    assert "volumes" not in _admit(_pod(serviceAccountName="q"), quiet)["spec"]
    # the pod's own setting wins over its ServiceAccount's
    assert _admit(_pod(serviceAccountName="q", automountServiceAccountToken=True),
                  {"q": {"automountServiceAccountToken": False}})["spec"]["volumes"]
    pulled = _admit(_pod(serviceAccountName="q"), {"q": {"imagePullSecrets": [{"name": "reg"}]}})
    assert pulled["spec"]["imagePullSecrets"] == [{"name": "reg"}]
    kept = _admit(_pod(serviceAccountName="q", imagePullSecrets=[{"name": "mine"}]),
                  {"q": {"imagePullSecrets": [{"name": "reg"}]}})
    assert kept["spec"]["imagePullSecrets"] == [{"name": "mine"}]
    own = _admit(_pod(containers=[{"name": "c", "volumeMounts": [{"name": "x", "mountPath": MOUNT_PATH + "/"}]}]), {})
    assert own["spec"]["containers"][0]["volumeMounts"] == [{"name": "x", "mountPath": MOUNT_PATH + "/"}]
    with pytest.raises(StatusError) as e:
        _admit(_pod(serviceAccountName="ghost"), {})
    assert e.value.code == 403 and 'serviceaccount "ghost" not found' in e.value.message


# -- the kubelet's token cache -------------------------------------------------------------------------

class _FakeClient:
    """Answers TokenRequests with tokens t1, t2, ... valid for the requested seconds from `now`."""

    def __init__(self, now: list[float]) -> None:
        self.now = now
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    async def request(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((path, body))
        if self.fail:
            raise ApiError({"message": "denied", "reason": "Forbidden", "code": 403})
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now[0] + body["spec"]["expirationSeconds"]))
        return {"status": {"token": f"t{len(self.calls)}", "expirationTimestamp": expiry}}


def test_kubelet_tokens_are_cached_and_refreshed_at_80_percent() -> None:
    now = [1_800_000_000.0]
    fake = _FakeClient(now)
    tokens = TokenManager(fake, clock=lambda: now[0])  # type: ignore[arg-type]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"serviceAccountName": "robot"}}

    def get() -> str:
        return asyncio.run(tokens.token(pod, "", 3600))
    assert get() == "t1"
    path, body = fake.calls[0]
    assert path == "/api/v1/namespaces/ns/serviceaccounts/robot/token"
    assert body["spec"] == {"audiences": [], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p", "uid": "u1"}}
    now[0] += 0.7 * 3600
    assert get() == "t1" and len(fake.calls) == 1
    now[0] += 0.11 * 3600
    assert get() == "t2"
    fake.fail = True
    now[0] += 0.81 * 3600  # due for refresh, the refresh fails, the old token has not expired: kept
    assert get() == "t2"
    now[0] += 3600
    with pytest.raises(ConfigError, match="failed to fetch token"):
        get()
    tokens.forget("u1")
    fake.fail = False
    assert get() == f"t{len(fake.calls)}"


def test_kubelet_tokens_are_refreshed_when_the_clock_stepped_back() -> None:
    """A token issued before the wall clock went back an hour is not valid yet for the apiserver: a new one."""
    now = [1_800_000_000.0]
    fake = _FakeClient(now)
    tokens = TokenManager(fake, clock=lambda: now[0])  # type: ignore[arg-type]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}

    def get() -> str:
        return asyncio.run(tokens.token(pod, "", 3600))
    assert get() == "t1"
    now[0] -= 30  # within the apiserver's leeway: kept
    assert get() == "t1"
    now[0] -= 3600
    assert get() == "t2" and len(fake.calls) == 2
