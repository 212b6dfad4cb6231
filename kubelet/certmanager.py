"""What the kubelet's certificate managers share (Kubernetes' client-go certificate manager): asking for a
certificate through a CertificateSigningRequest and waiting until it is signed, and the renewal deadline of a
certificate (a jittered 70-90 % of its lifetime, pklib.api.certificates.rotation_deadline). Used by servingcert
(the kubelet API's serving certificate) and clientcert (its client certificate)."""
from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

from pklib.api import certificates as certs
from pklib.client import Client
from pklib.resources import CSRS

log = logging.getLogger("kubelet.certmanager")
POLL = 2.0  # seconds between looks at a pending request


async def issued_certificate(client: Client, body: dict[str, Any], what: str) -> bytes | None:
    """Create the CertificateSigningRequest `body` and wait until it is signed: the certificate (PEM), or None
    when it was denied or failed (logged). `what` names the certificate in the log."""
    csr = await client.create(CSRS, body)
    csr_name = csr["metadata"]["name"]
    log.info("requested %s (CertificateSigningRequest %s)", what, csr_name)
    while True:
        for bad in ("Denied", "Failed"):
            c = certs.condition(csr, bad)
            if c is not None:
                log.warning("CertificateSigningRequest %s for %s was %s (%s)", csr_name, what, bad.lower(),
                            c.get("message") or c.get("reason") or "")
                return None
        issued = (csr.get("status") or {}).get("certificate")
        if issued:
            log.info("CertificateSigningRequest %s for %s signed", csr_name, what)
            return base64.b64decode(issued)
        await asyncio.sleep(POLL)
        csr = await client.get(CSRS, csr_name)


async def wait_for_rotation(cert_file: str, loaded: bool) -> None:
    """Sleep until the certificate in cert_file is due for renewal (a jittered 70-90 % of its lifetime, as the
    kubelet's certificate manager); after a renewal that failed (`loaded` False), at least 5 * POLL."""
    try:
        wait = certs.seconds_to_rotation(Path(cert_file).read_bytes())
    except (OSError, ValueError):
        wait = 0.0
    await asyncio.sleep(max(wait, 0.0 if loaded else 5 * POLL))
