"""The certificate controllers (Kubernetes' pkg/controller/certificates) and the bootstrap token cleaner.

- csrapproving approves kubelet client CSRs (signer kubernetes.io/kube-apiserver-client-kubelet) asked by a
  bootstrapper or by the node itself, for CN system:node:<name> and O system:nodes, and kubelet serving CSRs
  (kubernetes.io/kubelet-serving) asked by the node itself for its Node's own addresses (pklib.api.certificates).
- csrsigning signs approved CSRs of kubernetes.io/kube-apiserver-client-kubelet, kubernetes.io/kube-apiserver-
  client and kubernetes.io/kubelet-serving with the cluster CA (--cluster-signing-cert-file/--cluster-signing-key-file), valid for the CSR's
  expirationSeconds or --cluster-signing-duration (1 year), never past the CA's own expiry.
- tokencleaner deletes bootstrap token Secrets whose expiration has passed.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pklib.api import certificates as certs
from pklib.api.timefmt import now_rfc3339, parse_duration
from pklib.controller import Clock, Controller, ControllerContext
from pklib.errors import ApiError, is_conflict, is_not_found
from pklib.informer import Obj
from pklib.resources import CSRS, NODES, SECRETS

from .util import meta

BACKDATE = dt.timedelta(minutes=5)  # clock skew between machines, as Kubernetes' signer backdates
_EKU = {"client auth": ExtendedKeyUsageOID.CLIENT_AUTH, "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
        "code signing": ExtendedKeyUsageOID.CODE_SIGNING, "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
        "timestamping": ExtendedKeyUsageOID.TIME_STAMPING, "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING}


class CSRApprovingController(Controller):
    name = "csrapproving"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.csrs = self.watch(CSRS, self._changed, lambda old, new: self._changed(new))
        # a serving CSR is approved against its Node's addresses, which may reach this cache after the CSR
        self.nodes = self.watch(NODES, self._node_changed, lambda old, new: self._node_changed(new))

    def _node(self, name: str) -> Obj | None:
        return self.nodes.store.get(name)

    def _changed(self, csr: Obj) -> None:
        if certs.auto_approval(csr, self._node) is not None:
            self.enqueue(csr)

    def _node_changed(self, node: Obj) -> None:
        user = certs.NODE_USER_PREFIX + meta(node)["name"]
        for csr in self.csrs.store.list():
            spec = csr.get("spec") or {}
            if spec.get("signerName") == certs.KUBELET_SERVING_SIGNER and spec.get("username") == user:
                self._changed(csr)

    async def sync(self, key: str) -> None:
        csr = self.csrs.store.get(key)
        if csr is None:
            return
        decision = certs.auto_approval(csr, self._node)
        if decision is None:
            return
        reason, message = decision
        approved = dict(csr, status=dict(csr.get("status") or {}))
        now = now_rfc3339()
        approved["status"]["conditions"] = [*(approved["status"].get("conditions") or []),
                                            {"type": "Approved", "status": "True", "reason": reason,
                                             "message": message, "lastUpdateTime": now, "lastTransitionTime": now}]
        try:
            await self.client.update(CSRS, approved, "approval")
        except ApiError as e:
            if is_not_found(e):
                return
            if is_conflict(e):
                self.queue.add(key)
                return
            raise
        self.log.info("approved %s for %s", meta(csr)["name"], (csr.get("spec") or {}).get("username"))


def _key_usage(usages: list[str]) -> x509.KeyUsage:
    has = set(usages)
    return x509.KeyUsage(digital_signature="digital signature" in has or "signing" in has,
                         content_commitment="content commitment" in has, key_encipherment="key encipherment" in has,
                         data_encipherment="data encipherment" in has, key_agreement="key agreement" in has,
                         key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)


def sign(csr_obj: Obj, ca: x509.Certificate, ca_key: Any, default_seconds: int, now: dt.datetime) -> bytes:
    """The PEM certificate for an approved CSR: its subject and key, the requested usages, a lifetime of its
    expirationSeconds (or the default), capped at the CA's own expiry. ValueError for an unusable request."""
    spec = csr_obj.get("spec") or {}
    request = certs.parse_request(certs.request_pem(csr_obj))
    usages = list(spec.get("usages") or [])
    if spec.get("signerName") == certs.KUBELET_SERVING_SIGNER:
        problem = certs.kubelet_serving_problem(request, usages)
        if problem is not None:
            raise ValueError(f"not a kubelet serving request: {problem}")
    seconds = spec.get("expirationSeconds") or default_seconds
    not_after = min(now + dt.timedelta(seconds=int(seconds)), ca.not_valid_after_utc)
    # backdated for clock skew, a short-lived certificate by a tenth of its lifetime at most: a kubelet renews at
    # 70-90 % of notBefore..notAfter, which must fall after the issue
    backdate = min(BACKDATE, dt.timedelta(seconds=int(seconds)) / 10)
    builder = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca.subject)
               .public_key(request.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - backdate).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(usages), critical=True))
    ekus = [_EKU[u] for u in usages if u in _EKU]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    try:
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        builder = builder.add_extension(sans, critical=False)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(ca_key, None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()) \
        .public_bytes(serialization.Encoding.PEM)


def _duration(text: str) -> float:
    """--cluster-signing-duration: a Go duration as Kubernetes' (8760h), or seconds."""
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return value


class CSRSigningController(Controller):
    name = "csrsigning"
    clock: ClassVar[Clock] = Clock()

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cluster-signing-cert-file", help="the cluster CA (PEM) that signs approved "
                            "kube-apiserver-client(-kubelet) CSRs; with --cluster-signing-key-file")
        parser.add_argument("--cluster-signing-key-file", help="its private key (PEM)")
        parser.add_argument("--cluster-signing-duration", type=_duration, default=certs.DEFAULT_DURATION_SECONDS,
                            help="how long a signed certificate lasts when its CSR asks for no expirationSeconds: "
                                 "a duration (8760h by default) or a number of seconds")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        cert_file, key_file = self.option("cluster_signing_cert_file", None), self.option("cluster_signing_key_file", None)
        self.duration = int(self.option("cluster_signing_duration", certs.DEFAULT_DURATION_SECONDS))
        self.ca: x509.Certificate | None = None
        self.ca_key: Any = None
        if bool(cert_file) != bool(key_file):
            raise ValueError(f"{self.name}: --cluster-signing-cert-file and --cluster-signing-key-file go together")
        if cert_file and key_file:
            try:
                self.ca = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
                self.ca_key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
            except (OSError, ValueError) as e:
                raise ValueError(f"{self.name}: cannot load the signing CA {cert_file}: {e}") from None
            if not isinstance(self.ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey,
                                            ed25519.Ed25519PrivateKey)):
                raise ValueError(f"{self.name}: unsupported signing key type in {key_file}")
        self.csrs = self.watch(CSRS, self._changed, lambda old, new: self._changed(new))

    def _wanted(self, csr: Obj) -> bool:
        return (self.ca is not None and (csr.get("spec") or {}).get("signerName") in certs.SIGNED_BY_CONTROLLER
                and certs.is_approved(csr) and not certs.is_finished(csr))

    def _changed(self, csr: Obj) -> None:
        if self._wanted(csr):
            self.enqueue(csr)

    async def sync(self, key: str) -> None:
        csr = self.csrs.store.get(key)
        if csr is None or not self._wanted(csr):
            return
        assert self.ca is not None
        status = dict(csr.get("status") or {})
        try:
            pem = sign(csr, self.ca, self.ca_key, self.duration, self.clock.now())
            status["certificate"] = base64.b64encode(pem).decode()
        except ValueError as e:
            now = now_rfc3339()
            status["conditions"] = [*(status.get("conditions") or []),
                                    {"type": "Failed", "status": "True", "reason": "SigningError",
                                     "message": f"invalid certificate request: {e}", "lastUpdateTime": now,
                                     "lastTransitionTime": now}]
        try:
            await self.client.update_status(CSRS, dict(csr, status=status))
        except ApiError as e:
            if is_not_found(e):
                return
            if is_conflict(e):
                self.queue.add(key)
                return
            raise
        self.log.info("signed %s", meta(csr)["name"])


class TokenCleaner(Controller):
    """Deletes expired bootstrap token Secrets in kube-system (Kubernetes' tokencleaner)."""
    name = "tokencleaner"
    clock: ClassVar[Clock] = Clock()

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.secrets = self.watch(SECRETS, self._changed, lambda old, new: self._changed(new))

    def _expires_in(self, secret: Obj) -> float | None:
        if secret.get("type") != certs.BOOTSTRAP_TOKEN_TYPE or meta(secret).get("namespace") != certs.TOKEN_NAMESPACE:
            return None
        text = certs.decode_secret_data(secret).get("expiration")
        if not text:
            return None
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return (when - self.clock.now()).total_seconds()

    def _changed(self, secret: Obj) -> None:
        left = self._expires_in(secret)
        if left is not None:
            self.enqueue_after(secret, max(0.0, left) + 0.05)

    async def sync(self, key: str) -> None:
        secret = self.secrets.store.get(key)
        if secret is None:
            return
        left = self._expires_in(secret)
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left + 0.05)
            return
        try:
            await self.client.delete(SECRETS, meta(secret)["name"], certs.TOKEN_NAMESPACE,
                                     preconditions={"uid": meta(secret)["uid"]})
        except ApiError as e:
            if not is_not_found(e) and not is_conflict(e):
                raise
        self.log.info("deleted expired bootstrap token %s", meta(secret)["name"])
