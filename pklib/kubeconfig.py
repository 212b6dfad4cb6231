"""Reading and writing standard kubeconfig files."""
from __future__ import annotations

import base64
import json
import os
import ssl
import weakref
from pathlib import Path
from typing import Any, NamedTuple

from .api.wellknown import DEFAULT_NAMESPACE

DEFAULT_HOME = "/var/lib/pkube"


def pkube_home() -> Path:
    return Path(os.environ.get("PKUBE_HOME") or DEFAULT_HOME)


def default_kubeconfig_path() -> Path | None:
    """$KUBECONFIG (first entry), then <pkube home>/kubeconfig, then ~/.kube/config."""
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    for p in (pkube_home() / "kubeconfig", Path.home() / ".kube" / "config"):
        if p.exists():
            return p
    return None


class ClusterAccess(NamedTuple):
    """(A NamedTuple, not a dataclass: see pklib/rest.py on what pkctl imports.)"""
    server: str
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    namespace: str | None = None  # the context's
    client_cert_embedded: bool = False  # client-certificate-data: client_cert/client_key are private copies

    def ssl_context(self) -> ssl.SSLContext | bool | None:
        if not self.server.startswith("https"):
            return None
        if self.insecure:
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file,
                                         cadata=self.ca_data.decode() if self.ca_data else None)
        if self.client_cert:
            ctx.load_cert_chain(self.client_cert, self.client_key)
            _client_contexts.setdefault((self.client_cert, self.client_key or ""), weakref.WeakSet()).add(ctx)
        return ctx


# every live SSL context of this process made from a client certificate's files (the kubelet and the proxy of
# one process each have one), so that a renewed certificate reaches them all
_client_contexts: dict[tuple[str, str], "weakref.WeakSet[ssl.SSLContext]"] = {}


def reload_client_certificate(cert_file: str, key_file: str | None) -> int:
    """Load the (renewed) certificate and key at these paths into every SSL context this process made from them:
    new connections present it (as the kubelet's certificate manager does for its client). Returns how many."""
    contexts = list(_client_contexts.get((cert_file, key_file or ""), ()))
    for ctx in contexts:
        ctx.load_cert_chain(cert_file, key_file)
    return len(contexts)


class KubeconfigError(Exception):
    pass


def load(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterAccess:
    p = Path(path) if path else default_kubeconfig_path()
    if p is None:
        raise KubeconfigError("no kubeconfig found: pass --kubeconfig or --server, set $KUBECONFIG, "
                              "or start a local cluster with `pkctl cluster up`")
    try:
        doc = parse(p.read_text()) or {}
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {p}: {e.strerror}") from None
    except ValueError as e:
        raise KubeconfigError(f"kubeconfig {p} is not valid YAML: {e}") from None
    ctx_name = context or doc.get("current-context")
    ctx = _named(doc.get("contexts"), ctx_name, "context", p)
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster", p)
    user: dict[str, Any] = {}
    if ctx.get("user"):
        user = _named(doc.get("users"), ctx.get("user"), "user", p)
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"kubeconfig {p}: cluster {ctx.get('cluster')!r} has no server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    ca_data = base64.b64decode(cluster["certificate-authority-data"]) if cluster.get("certificate-authority-data") else None
    cert, key = user.get("client-certificate"), user.get("client-key")
    if user.get("client-certificate-data"):
        cert = _tmpfile(base64.b64decode(user["client-certificate-data"]))
        key = _tmpfile(base64.b64decode(user["client-key-data"]))
    return ClusterAccess(server=server.rstrip("/"), token=token, ca_file=cluster.get("certificate-authority"),
                         ca_data=ca_data, insecure=bool(cluster.get("insecure-skip-tls-verify")),
                         client_cert=cert, client_key=key, namespace=ctx.get("namespace") or None,
                         client_cert_embedded=bool(user.get("client-certificate-data")))


def parse(text: str) -> Any:
    """A kubeconfig's document: JSON (as pkube writes its own, see write) is read without importing a YAML
    parser, which alone takes a one-shot `pkctl get` about 12 ms; anything else is YAML (kubectl's format).
    A YAML error is a ValueError."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style, or broken: the YAML parser says which
    import yaml
    from . import yamlsafe
    try:
        return yamlsafe.load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None


def _named(items: Any, name: Any, what: str, p: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    raise KubeconfigError(f"kubeconfig {p}: no {what} named {name!r}")


def _tmpfile(data: bytes) -> str:
    import tempfile  # rarely needed: not worth its import for every client
    fd, path = tempfile.mkstemp(prefix="pkube-kubeconfig-")
    os.write(fd, data)
    os.close(fd)
    return path


def build(server: str, token: str | None, name: str = "pkube", namespace: str = DEFAULT_NAMESPACE,
          ca_data: bytes | None = None) -> dict[str, Any]:
    """A kubeconfig document with one cluster, user and context, all called `name`.

    `ca_data` (PEM) is the CA that signed an https server's certificate; clients verify with it.
    """
    user: dict[str, Any] = {"token": token} if token else {}
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }


def write(path: str | os.PathLike[str], doc: dict[str, Any], as_json: bool = False) -> None:
    """Write a kubeconfig in YAML, or in JSON (`as_json`: for the files pkube owns, which its CLI reads on every
    command; kubectl reads both, as Kubernetes' loader does)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    # created private: it holds a token, and must never be readable by others, not even for an instant
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        if as_json:
            f.write(json.dumps(doc, indent=2) + "\n")
        else:
            import yaml
            f.write(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, p)
