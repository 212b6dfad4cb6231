"""The real kubelet pulling from a private docker-registry (htpasswd auth, plain http on loopback): the pod's
imagePullSecrets and its ServiceAccount's, a registries.yaml mirror for docker.io, and pulls that cannot succeed
shown as ErrImagePull with the registry's reason within seconds."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from images.busybox import BUSYBOX_IMAGE, ensure_busybox
from images.store import ImageStore
from pkctl import generators
from pklib.client import Client
from pklib.resources import lookup
from tests.images.registry_fixture import RegistryServer, start_registry, stop_registry
from tests.support.node import Node, cstatus, ctr, pod, running, wait_pod
from tests.util import free_port, unique, wait_for

pytestmark = pytest.mark.root

PODS, SECRETS = lookup("pods"), lookup("secrets")
assert PODS and SECRETS
USER, PASSWORD = "bob", "pull-me"


@pytest.fixture(scope="module")
def registry(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryServer, str]]:
    """A private registry holding the bundled busybox as <host>/pkt/bb:<tag>; yields it and the tag prefix."""
    tmp = tmp_path_factory.mktemp("kreg")
    server = start_registry(tmp / "reg", htpasswd=(USER, PASSWORD))
    try:
        store = ImageStore(node.tmp / "images")
        ensure_busybox(store)
        (tmp / "docker").mkdir()
        (tmp / "docker" / "config.json").write_text(json.dumps({"auths": {server.host: {"username": USER,
                                                                                        "password": PASSWORD}}}))
        prefix = unique("t")
        for tag in ("secret", "mirror"):
            repo = "library/busybox" if tag == "mirror" else "pkt/bb"
            store.push(BUSYBOX_IMAGE, f"{server.host}/{repo}:{prefix}-{tag}", docker_config=tmp / "docker" / "config.json")
        yield server, prefix
    finally:
        stop_registry(server.proc)


def waiting(p: dict[str, Any]) -> dict[str, str]:
    return dict(cstatus(p, "c").get("state", {}).get("waiting") or {})


def image_pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return pod(name, ctr("c", "exec sleep 3600", image=image, imagePullPolicy="IfNotPresent"), **spec)


async def test_image_pull_secrets_of_the_pod(kc: Client, ns: str, registry: tuple[RegistryServer, str]) -> None:
    """(A ServiceAccount's imagePullSecrets are copied into its pods by the ServiceAccount admission plugin,
    tests/unit/test_satokens.py; this node's apiserver issues no tokens and runs without it.)"""
    server, prefix = registry
    secret = generators.docker_registry_secret("regcred", server.host, USER, PASSWORD, None, [])
    await kc.create(SECRETS, secret, ns)
    await kc.create(PODS, image_pod("with-secret", f"{server.host}/pkt/bb:{prefix}-secret",
                                    imagePullSecrets=[{"name": "missing"}, {"name": "regcred"}]), ns)
    await wait_pod(kc, ns, "with-secret", running, what="pod with imagePullSecrets Running")


async def test_docker_io_image_through_a_mirror_on_loopback(node: Node, kc: Client, ns: str,
                                                            registry: tuple[RegistryServer, str]) -> None:
    server, prefix = registry
    config = node.tmp / "registries.yaml"   # <home>/registries.yaml, next to the node's image store
    config.write_text(f"mirrors:\n  docker.io:\n    endpoint: [\"http://{server.host}\"]\n"
                      f"configs:\n  \"{server.host}\":\n    auth: {{username: {USER}, password: {PASSWORD}}}\n")
    try:
        await kc.create(PODS, image_pod("mirrored", f"busybox:{prefix}-mirror"), ns)
        await wait_pod(kc, ns, "mirrored", running, what="busybox:<tag> pulled through the mirror, Running")
    finally:
        config.unlink()


@pytest.mark.parametrize("what", ["unknown-host", "refused", "unauthorized", "not-found"])
async def test_unpullable_image_is_err_image_pull_within_seconds(kc: Client, ns: str, what: str,
                                                                 registry: tuple[RegistryServer, str]) -> None:
    server, _ = registry
    image, reason = {
        "unknown-host": (f"{unique('nohost')}.invalid/app:1", "cannot reach registry"),
        "refused": (f"127.0.0.1:{free_port()}/app:1", "Connection refused"),
        "unauthorized": (f"{server.host}/pkt/bb:1", f"registry {server.host} requires authentication"),
        "not-found": (f"{server.host}/pkt/{unique('none')}:1", "manifest unknown"),
    }[what]
    spec: dict[str, Any] = {}
    if what == "not-found":  # with credentials, so that the registry answers 404 rather than 401
        await kc.create(SECRETS, generators.docker_registry_secret("regcred", server.host, USER, PASSWORD, None, []),
                        ns)
        spec["imagePullSecrets"] = [{"name": "regcred"}]
    began = time.monotonic()
    await kc.create(PODS, image_pod("bad", image, **spec), ns)
    p = await wait_pod(kc, ns, "bad", lambda p: waiting(p).get("reason") == "ErrImagePull", timeout=15,
                       what=f"ErrImagePull for {image}")
    assert time.monotonic() - began < 10, "ErrImagePull should show within seconds"
    assert reason in waiting(p)["message"]

    async def back_off() -> bool:
        return waiting(await kc.get(PODS, "bad", ns)).get("reason") == "ImagePullBackOff"
    await wait_for(back_off, 15, 0.1, message="ImagePullBackOff after ErrImagePull")
