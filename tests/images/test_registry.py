"""Push to and pull from a real docker-registry on loopback."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from images.busybox import BUSYBOX_IMAGE
from images.errors import ImageNotFound, RegistryError
from images.store import ImageStore
from tests.images.registry_fixture import RegistryServer, start_registry, stop_registry
from tests.util import free_port, unique

pytestmark = pytest.mark.root


def _blob_file(server: RegistryServer, digest: str) -> Path:
    hexd = digest.split(":", 1)[1]
    return server.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def test_push_remove_pull_back_and_deduplicate(busybox_store: ImageStore, store: ImageStore,
                                               registry_server: RegistryServer) -> None:
    name = f"{registry_server.host}/pkt/{unique('bb')}:1"
    original = busybox_store.get(BUSYBOX_IMAGE)
    pushed = busybox_store.push(BUSYBOX_IMAGE, name)
    assert pushed == original.manifest_digest

    first = store.pull(name)
    layer_digests = [layer.digest for layer in original.layers]
    assert first.image.manifest_digest == original.manifest_digest
    assert sorted(first.downloaded) == sorted(layer_digests)
    assert first.bytes >= sum(layer.size for layer in original.layers)

    second = store.pull(name)  # everything present: nothing fetched
    assert second.downloaded == [] and sorted(second.present) == sorted(layer_digests) and second.bytes == 0

    by_digest = store.pull(f"{registry_server.host}/pkt/{name.split('/')[-1].split(':')[0]}@{pushed}")
    assert by_digest.downloaded == [] and by_digest.image.manifest_digest == pushed

    store.remove(name)
    store.remove(str(by_digest.image.name))
    store.gc()
    assert store.list() == [] and os.listdir(store.layout.blobs) == []
    third = store.pull(name)
    assert sorted(third.downloaded) == sorted(layer_digests)
    cid = unique()
    root = store.prepare_rootfs(name, cid)
    try:
        assert os.readlink(root / "bin/sh") == "/bin/busybox"
    finally:
        store.release_rootfs(cid)

    # Pushing again uploads nothing new: the registry has every blob.
    lines: list[str] = []

    class Lines:
        def line(self, text: str) -> None:
            lines.append(text)

        def progress(self, digest: str, done: int, total: int) -> None:
            pass
    busybox_store.push(BUSYBOX_IMAGE, name, reporter=Lines())
    assert sum("already exists" in line for line in lines) == len(layer_digests) + 1


def test_pull_resumes_a_partial_download(busybox_store: ImageStore, store: ImageStore,
                                         registry_server: RegistryServer) -> None:
    name = f"{registry_server.host}/pkt/{unique('bb')}:1"
    busybox_store.push(BUSYBOX_IMAGE, name)
    biggest = max(busybox_store.get(BUSYBOX_IMAGE).layers,
                  key=lambda layer: layer.size)
    data = _blob_file(registry_server, biggest.digest).read_bytes()
    half = len(data) // 2
    (store.layout.tmp / f"download-{biggest.digest.split(':')[1]}").write_bytes(data[:half])
    result = store.pull(name)
    config_size = len(busybox_store.layout.read_blob(busybox_store.get(BUSYBOX_IMAGE).config_digest))
    total = sum(layer.size for layer in busybox_store.get(BUSYBOX_IMAGE).layers) + config_size
    assert result.bytes == total - half  # only the missing half travelled
    assert store.layout.blob_path(biggest.digest).read_bytes() == data


def test_corrupted_blob_in_registry_fails_digest_verification(busybox_store: ImageStore, store: ImageStore,
                                                              registry_server: RegistryServer) -> None:
    name = f"{registry_server.host}/pkt/{unique('bb')}:1"
    busybox_store.push(BUSYBOX_IMAGE, name)
    layer = busybox_store.get(BUSYBOX_IMAGE).layers[0]
    blob = _blob_file(registry_server, layer.digest)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RegistryError, match=f"blob {layer.digest} .* failed digest verification"):
        store.pull(name)
    assert store.list() == [] and not store.layout.has_blob(layer.digest)


def test_clear_errors_for_unknown_image_and_unreachable_registry(store: ImageStore,
                                                                 registry_server: RegistryServer) -> None:
    with pytest.raises(ImageNotFound, match="manifest unknown: .*/pkt/nothing:1 not found"):
        store.pull(f"{registry_server.host}/pkt/nothing:1")
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryError, match=f"cannot reach registry 127.0.0.1:{port}"):
        store.pull(f"127.0.0.1:{port}/pkt/x:1")


def test_basic_auth_with_docker_config(busybox_store: ImageStore, store: ImageStore, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    server = start_registry(tmp_path / "reg", htpasswd=("alice", "s3cret"))
    try:
        name = f"{server.host}/pkt/private:1"
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
        with pytest.raises(RegistryError, match="requires authentication"):
            busybox_store.push(BUSYBOX_IMAGE, name)
        (tmp_path / "docker").mkdir()
        config = tmp_path / "docker" / "config.json"
        config.write_text(json.dumps({"auths": {server.host: {"username": "alice", "password": "wrong"}}}))
        with pytest.raises(RegistryError, match="authentication required"):
            busybox_store.push(BUSYBOX_IMAGE, name)
        import base64
        config.write_text(json.dumps({"auths": {server.host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
        busybox_store.push(BUSYBOX_IMAGE, name)
        assert store.pull(name).image.manifest_digest == busybox_store.get(BUSYBOX_IMAGE).manifest_digest
    finally:
        stop_registry(server.proc)


def test_bearer_token_flow(busybox_store: ImageStore, store: ImageStore, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.images.token_server import SERVICE, TokenServer
    (tmp_path / "reg").mkdir()
    tokens = TokenServer(tmp_path / "reg", "alice", "s3cret")
    server = start_registry(tmp_path / "reg", auth_config=tokens.registry_auth_config())
    try:
        name = f"{server.host}/pkt/tokened:1"
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
        with pytest.raises(RegistryError, match="authentication to registry .* failed: no credentials configured"):
            busybox_store.push(BUSYBOX_IMAGE, name)
        (tmp_path / "docker").mkdir()
        (tmp_path / "docker" / "config.json").write_text(
            json.dumps({"auths": {server.host: {"username": "alice", "password": "s3cret"}}}))
        busybox_store.push(BUSYBOX_IMAGE, name)
        assert store.pull(name).image.manifest_digest == busybox_store.get(BUSYBOX_IMAGE).manifest_digest
        # `pkctl image login`'s check: GET /v2/ through the Bearer challenge (a token without a scope)
        from images.auth import Credentials
        from images.registry import Registry
        Registry(server.host, credentials=Credentials("alice", "s3cret")).login()
        with pytest.raises(RegistryError, match="wrong username or password"):
            Registry(server.host, credentials=Credentials("alice", "nope")).login()
        # The registry names the actions in no fixed order.
        scopes = {(q.rsplit(":", 1)[0], frozenset(q.rsplit(":", 1)[1].split(",")))
                  for r in tokens.requests for q in r["query"].get("scope", [])}
        assert scopes == {("repository:pkt/tokened", frozenset({"pull", "push"})),
                          ("repository:pkt/tokened", frozenset({"pull"}))}
        assert all(r["query"]["service"] == [SERVICE] for r in tokens.requests)
    finally:
        stop_registry(server.proc)
        tokens.stop()


def test_multi_platform_index_resolves_to_the_host_platform(busybox_store: ImageStore, store: ImageStore,
                                                            registry_server: RegistryServer) -> None:
    from images.image import host_arch
    from images.layout import MT_OCI_INDEX, dumps
    from images.registry import Registry
    from tests.images.layers import make_image
    repo = f"pkt/{unique('multi')}"
    native = busybox_store.get(BUSYBOX_IMAGE)
    foreign = make_image(busybox_store, f"pkube.local/{unique('foreign')}:1", [[("foreign", "file", "x")]])
    busybox_store.push(BUSYBOX_IMAGE, f"{registry_server.host}/{repo}:native")
    busybox_store.push(str(foreign.name), f"{registry_server.host}/{repo}:foreign")
    other_arch = "s390x" if host_arch() != "s390x" else "amd64"
    entries = [(foreign, other_arch), (native, host_arch())]
    index = dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [
        {"mediaType": img.manifest_media_type, "digest": img.manifest_digest,
         "size": len(busybox_store.layout.read_blob(img.manifest_digest)),
         "platform": {"os": "linux", "architecture": arch}} for img, arch in entries]})
    index_digest = Registry(registry_server.host).put_manifest(repo, "multi", index, MT_OCI_INDEX)

    pulled = store.pull(f"{registry_server.host}/{repo}:multi").image
    assert pulled.manifest_digest == native.manifest_digest
    by_index = f"{registry_server.host}/{repo}@{index_digest}"
    store.pull(by_index)
    assert store.get(by_index).manifest_digest == native.manifest_digest
    cid = unique()
    root = store.prepare_rootfs(by_index, cid)
    try:
        assert not (root / "foreign").exists() and (root / "bin/sh").exists()
    finally:
        store.release_rootfs(cid)
