"""HTTPS serving: the SSL context from --tls-cert-file/--tls-private-key-file.

kubectl (client-go) sends no bearer token over plain HTTP, so a cluster that kubectl
talks to with token auth must be served over TLS, as Kubernetes' secure port is.
"""
from __future__ import annotations

import os
import ssl
from typing import Callable, NoReturn


def _raise(message: str) -> NoReturn:
    raise RuntimeError(message)


def tls_context(cert_file: str | None, key_file: str | None,
                fail: Callable[[str], NoReturn] = _raise, client_ca_file: str | None = None) -> ssl.SSLContext | None:
    """None for plain HTTP (neither flag); `fail` with a one-line message for half or unreadable settings.
    `client_ca_file` (--client-ca-file): ask clients for an optional certificate, verified against that CA only
    (never the system's: a certificate names a user here), as kube-apiserver does."""
    if not cert_file and not key_file:
        if client_ca_file:
            fail("--client-ca-file needs --tls-cert-file and --tls-private-key-file")
        return None
    if not cert_file or not key_file:
        fail("--tls-cert-file and --tls-private-key-file must be given together")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_ca_file:
        try:
            ctx.load_verify_locations(cafile=client_ca_file)
        except FileNotFoundError:
            fail(f"cannot read {client_ca_file}: no such file")
        except (ssl.SSLError, OSError) as e:
            fail(f"cannot load the client CA {client_ca_file}: {e}")
        ctx.verify_mode = ssl.CERT_OPTIONAL
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as e:
        fail(f"cannot read {e.filename}: no such file")
    except (ssl.SSLError, OSError) as e:
        fail(f"cannot load the serving certificate {cert_file} with key {key_file}: {e}")
    # h2 is not spoken by aiohttp; advertising http/1.1 keeps Go clients (kubectl) on HTTP/1.1.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def kubelet_client_context(ca_file: str | None, cert_file: str | None, key_file: str | None,
                           fail: Callable[[str], NoReturn] = _raise) -> ssl.SSLContext:
    """How the apiserver calls kubelets (pods/log, exec, portforward): over TLS, verifying the kubelet's
    certificate (--kubelet-certificate-authority, else the system's CAs), authenticated by its own client
    certificate (--kubelet-client-certificate/--kubelet-client-key). Never with a user's token."""
    if bool(cert_file) != bool(key_file):
        fail("--kubelet-client-certificate and --kubelet-client-key must be given together")
    for path in (ca_file, cert_file, key_file):
        if path and not os.path.isfile(path):
            fail(f"cannot read {path}: no such file")
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
        if cert_file and key_file:
            ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as e:
        fail(f"cannot load the kubelet client TLS files: {e}")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
