"""CertificateSigningRequest (certificates.k8s.io/v1, cluster-scoped): validation and the requester's identity.

The apiserver records who asked (spec.username, uid, groups, extra) from the authenticated user, whatever the
client sent, as Kubernetes' CSR strategy does: approvers and signers decide on that. The spec never changes
after creation; status.conditions change through the `approval` subresource (`kubectl certificate approve`),
status.certificate through `status` (the signer).
"""
from __future__ import annotations

from typing import Any

from pklib import validation as v
from pklib.api import certificates as c

from ..authz.authorizer import CURRENT, forbidden_error
from ..authz.rbac import Attributes
from .base import KindStrategy
from .fields import Cause, Path, duplicate, invalid, not_supported, required

SPEC, STATUS = Path("spec"), Path("status")


class CertificateSigningRequestStrategy(KindStrategy):
    kind = "CertificateSigningRequest"
    namespaced = False

    def admit(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = obj.setdefault("spec", {})
        if old is not None:
            obj["spec"] = old.get("spec")  # immutable: the identity and request are the creator's
            _check_signer_rights(obj, old)
            return
        ctx = CURRENT.get()
        for field in ("username", "uid", "groups", "extra"):
            spec.pop(field, None)
        if ctx is None:
            return  # no authentication configured: nobody to record
        user = ctx.user
        spec["username"] = user.name
        if user.uid:
            spec["uid"] = user.uid
        spec["groups"] = list(user.groups)
        if user.extra:
            spec["extra"] = {k: list(vals) for k, vals in user.extra.items()}

    def validate_object(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = obj.get("spec") or {}
        causes: list[Cause] = []
        signer = spec.get("signerName") or ""
        if not signer:
            causes.append(required(SPEC.child("signerName")))
        else:
            domain, _, path = signer.partition("/")
            if not path or v.is_dns1123_subdomain(domain) or "/" in path or v.is_qualified_name(path):
                causes.append(invalid(SPEC.child("signerName"), signer, "must be a fully qualified domain and path "
                                      "of the form 'example.com/signer-name'"))
        try:
            c.parse_request(c.request_pem(obj))
        except ValueError as e:
            causes.append(invalid(SPEC.child("request"), "<omitted>", f"{e}".split("\n")[0] or "invalid request"))
        usages = spec.get("usages")
        if not usages:
            causes.append(required(SPEC.child("usages")))
        seen: set[str] = set()
        for i, usage in enumerate(usages or []):
            if usage not in c.USAGES:
                causes.append(not_supported(SPEC.child("usages").index(i), usage, c.USAGES))
            elif usage in seen:
                causes.append(duplicate(SPEC.child("usages").index(i), usage))
            seen.add(usage)
        seconds = spec.get("expirationSeconds")
        if seconds is not None and seconds < c.MIN_EXPIRATION_SECONDS:
            causes.append(invalid(SPEC.child("expirationSeconds"), seconds,
                                  f"may not specify a duration less than {c.MIN_EXPIRATION_SECONDS} seconds"))
        causes += _conditions_errors(obj)
        return causes


def _decisions(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((str(cond.get("type")), str(cond.get("status", "True")))
                  for cond in (obj.get("status") or {}).get("conditions") or []
                  if isinstance(cond, dict) and cond.get("type") in ("Approved", "Denied"))


def _check_signer_rights(obj: dict[str, Any], old: dict[str, Any]) -> None:
    """Kubernetes' CertificateApproval and CertificateSigning admission: approving or denying needs `approve`,
    issuing a certificate needs `sign`, on the `signers` resource named by the CSR's signer (or its
    <domain>/* wildcard)."""
    ctx = CURRENT.get()
    if ctx is None:
        return
    signer = str((obj.get("spec") or {}).get("signerName") or "")
    needed = []
    if _decisions(obj) != _decisions(old):
        needed.append("approve")
    if (obj.get("status") or {}).get("certificate") != (old.get("status") or {}).get("certificate"):
        needed.append("sign")
    for verb in needed:
        names = (signer, signer.split("/", 1)[0] + "/*")
        if not any(ctx.authorizer.authorize(Attributes(verb, True, "", c.GROUP, "v1", "signers", "", name,
                                                       user=ctx.user)).allowed for name in names):
            raise forbidden_error("certificatesigningrequests", c.GROUP, str((obj.get("metadata") or {}).get("name")),
                                  f'user not permitted to {verb} requests with signerName "{signer}"')


def _conditions_errors(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    path = STATUS.child("conditions")
    seen: set[str] = set()
    for i, cond in enumerate((obj.get("status") or {}).get("conditions") or []):
        kind = cond.get("type") or ""
        if not kind:
            causes.append(required(path.index(i).child("type")))
            continue
        if kind in c.CONDITION_TYPES and kind in seen:
            causes.append(duplicate(path.index(i).child("type"), kind))
        seen.add(kind)
        status = cond.setdefault("status", "True")
        if status not in ("True", "False", "Unknown"):
            causes.append(not_supported(path.index(i).child("status"), status, ("True", "False", "Unknown")))
        elif kind in ("Approved", "Denied") and status != "True":
            causes.append(not_supported(path.index(i).child("status"), status, ("True",)))
    if {"Approved", "Denied"} <= seen:
        causes.append(invalid(path, "", "Approved and Denied conditions are mutually exclusive"))
    return causes
