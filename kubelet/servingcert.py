"""The kubelet API's serving certificate from the cluster (Kubernetes' serverTLSBootstrap, the kubelet flag
--rotate-server-certificates).

Once its Node is registered, the kubelet asks for a certificate through a CertificateSigningRequest of signer
kubernetes.io/kubelet-serving (CN system:node:<name>, O system:nodes, SANs = the Node's addresses, usages digital
signature, key encipherment, server auth), waits until it is signed (the controller-manager auto-approves a
node's request for its own addresses; any other waits for `kubectl certificate approve`), writes it over
--tls-cert-file/--tls-private-key-file and serves new connections with it. Until then, and when the files
already hold a certificate of the cluster CA (--client-ca-file) for the Node's current addresses, it serves
with what the files hold. At a jittered 70-90 % of the certificate's lifetime (Kubernetes' certificate manager)
it asks for a new one the same way and serves new connections with it, without a restart.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pklib.api import certificates as certs
from pklib.client import Client
from pklib.files import write_atomic

from .certmanager import POLL, issued_certificate, wait_for_rotation

log = logging.getLogger("kubelet.servingcert")


def _current(cert_file: Path, ca_file: Path, node: dict[str, Any]) -> bool:
    """Whether cert_file is a certificate of the CA for the Node's current names, valid for a while more."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    dns, ips = certs.serving_names(node)
    names = (sorted(sans.get_values_for_type(x509.DNSName)), sorted(str(i) for i in sans.get_values_for_type(
        x509.IPAddress)))
    left = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    return names == (sorted(dns), sorted(ips)) and left > (cert.not_valid_after_utc - cert.not_valid_before_utc) / 5


async def bootstrap(client: Client, node: dict[str, Any], cert_file: str, key_file: str, ca_file: str,
                    tls: ssl.SSLContext, renew: bool = False) -> bool:
    """Get the serving certificate for `node` (the registered Node) unless the files hold a current one (or
    `renew`), and load it into `tls`: True once loaded, False when the request was denied or failed (logged)."""
    if not renew and _current(Path(cert_file), Path(ca_file), node):
        return True
    name = node["metadata"]["name"]
    dns, ips = certs.serving_names(node)
    key_pem, request = certs.new_request(certs.NODE_USER_PREFIX + name, (certs.NODES_GROUP,), tuple(dns),
                                         tuple(ips))
    body = certs.csr_object("", request, certs.KUBELET_SERVING_SIGNER, list(certs.NODE_SERVING_USAGES))
    body["metadata"] = {"generateName": "csr-"}
    issued = await issued_certificate(client, body, "the kubelet's serving certificate")
    if issued is None:
        log.warning("serving with %s", cert_file)
        return False
    write_atomic(Path(key_file), key_pem, mode=0o600)
    write_atomic(Path(cert_file), issued)
    tls.load_cert_chain(cert_file, key_file)  # new connections use it; open ones keep theirs
    log.info("serving with the new certificate (expires %s)",
             x509.load_pem_x509_certificate(issued).not_valid_after_utc.isoformat())
    return True


async def run(client: Client, node: dict[str, Any], cert_file: str, key_file: str, ca_file: str,
              tls: ssl.SSLContext) -> None:
    """`bootstrap`, then a renewal each time the certificate is due (wait_for_rotation), without a restart;
    tried again while the API or the files fail."""
    renew = False
    while True:
        try:
            loaded = await bootstrap(client, node, cert_file, key_file, ca_file, tls, renew)
        except Exception as e:  # the API unreachable, a file unwritable: the kubelet keeps running
            log.warning("getting the kubelet's serving certificate: %s; trying again", e)
            await asyncio.sleep(5 * POLL)
            continue
        await wait_for_rotation(cert_file, loaded)
        renew = True
