"""Rotation of the kubelet's client certificate (Kubernetes' RotateKubeletClientCertificate, the kubelet flag
--rotate-certificates).

The kubelet's kubeconfig names a client certificate and key (a joined node's, from its TLS bootstrap). At a
jittered 70-90 % of that certificate's lifetime the kubelet makes a new key, asks for a certificate with the
same subject (CN system:node:<name>, O system:nodes) through a CertificateSigningRequest of signer
kubernetes.io/kube-apiserver-client-kubelet as the node itself (the controller-manager auto-approves a node
renewing its own), writes key and certificate over the files the kubeconfig names and loads them into every
client of this process made from them (the kubelet's and its member proxy's): new connections present the new
certificate, open ones keep theirs until they close.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from cryptography import x509

from pklib import kubeconfig
from pklib.api import certificates as certs
from pklib.client import Client
from pklib.files import write_atomic

from .certmanager import POLL, issued_certificate, wait_for_rotation

log = logging.getLogger("kubelet.clientcert")
USAGES = ["digital signature", "client auth"]  # what `pkctl cluster join` asks for (kubelet's: + key encipherment)


async def renew(client: Client, cert_file: str, key_file: str) -> bool:
    """One renewal of the certificate in cert_file: True once the new key and certificate are written and
    loaded, False when the request was denied or failed (logged)."""
    cn, groups = certs.subject_of(x509.load_pem_x509_certificate(Path(cert_file).read_bytes()))
    key_pem, request = certs.new_request(cn, tuple(groups))
    body = certs.csr_object("", request, certs.KUBELET_CLIENT_SIGNER, USAGES)
    body["metadata"] = {"generateName": "node-csr-"}
    issued = await issued_certificate(client, body, "the kubelet's client certificate")
    if issued is None:
        return False
    # the key first: a process starting in between fails its handshake once rather than keeping a stale key
    write_atomic(Path(key_file), key_pem, mode=0o600)
    write_atomic(Path(cert_file), issued, mode=0o600)
    n = kubeconfig.reload_client_certificate(cert_file, key_file)
    log.info("client certificate renewed (expires %s), loaded into %d client(s)",
             x509.load_pem_x509_certificate(issued).not_valid_after_utc.isoformat(), n)
    return True


async def run(client: Client, kubeconfig_path: str) -> None:
    """Renew the client certificate the kubeconfig names each time it is due, while the kubelet runs."""
    access = kubeconfig.load(kubeconfig_path)
    cert_file, key_file = access.client_cert, access.client_key
    if not cert_file or not key_file or access.client_cert_embedded:
        log.warning("--rotate-certificates: the kubeconfig %s names no client certificate files (client-certificate, "
                    "client-key); not rotating", kubeconfig_path)
        return
    loaded = True
    while True:
        await wait_for_rotation(cert_file, loaded)
        try:
            loaded = await renew(client, cert_file, key_file)
        except Exception as e:  # the API unreachable, a file unwritable: the kubelet keeps running
            log.warning("renewing the kubelet's client certificate: %s; trying again", e)
            await asyncio.sleep(5 * POLL)
