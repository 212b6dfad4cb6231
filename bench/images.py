"""Image store benchmark: load a ~100 MB archive, pull it from a loopback registry (cold and with every
layer present), and prepare a container rootfs from a present image.

Needs root (unpacking keeps ownership; rootfs is an overlay mount) and the Debian docker-registry.
Everything lives in a temp dir and is removed at the end. Prints one JSON document; figures only.

    .venv/bin/python -m bench.images [--mb 100] [--layers 4] [--runs 200]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from images.image import Layer  # noqa: E402
from images.layout import MT_OCI_LAYER  # noqa: E402
from images.store import ImageStore  # noqa: E402
from tests.images.registry_fixture import start_registry, stop_registry  # noqa: E402

FILE_SIZE = 1_000_000


def summary(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(p99, 3), "max_ms": round(ms[-1], 3),
            "runs": len(ms)}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def random_layer(store: ImageStore, index: int, size: int) -> Layer:
    """An uncompressed layer of 1 MiB files with random (incompressible) content."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        d = tarfile.TarInfo(f"data{index}")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        for i in range(max(1, size // FILE_SIZE)):
            info = tarfile.TarInfo(f"data{index}/f{i:04d}")
            info.size, info.mode = FILE_SIZE, 0o644
            tf.addfile(info, io.BytesIO(os.urandom(FILE_SIZE)))
    raw = buf.getvalue()
    digest = store.layout.put_blob(raw)
    return Layer(digest, MT_OCI_LAYER, len(raw), "sha256:" + hashlib.sha256(raw).hexdigest())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="image size in MB (random content)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--runs", type=int, default=200, help="prepare_rootfs samples")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root"}))
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="pkbench-images-"))
    server = None
    stores: list[ImageStore] = []
    try:
        src = ImageStore(tmp / "src")
        stores.append(src)
        per_layer = args.mb * 1_000_000 // args.layers
        layers = [random_layer(src, i, per_layer) for i in range(args.layers)]
        name = "pkube.local/bench:1"
        src.commit({"config": {"Cmd": ["/bin/true"]}}, layers, name)
        archive = tmp / "bench.tar"
        src.save(name, archive)

        loader = ImageStore(tmp / "load")
        stores.append(loader)
        load_s, _ = timed(lambda: loader.load(archive))

        server = start_registry(tmp / "registry")
        remote = f"{server.host}/bench/img:1"
        push_s, _ = timed(lambda: src.push(name, remote))
        puller = ImageStore(tmp / "pull")
        stores.append(puller)
        cold_s, cold = timed(lambda: puller.pull(remote))
        warm_s, warm = timed(lambda: puller.pull(remote))

        prep: list[float] = []
        release: list[float] = []
        for i in range(args.runs):
            cid = f"bench-{i}"
            t, _ = timed(lambda: loader.prepare_rootfs(name, cid))
            prep.append(t)
            t, _ = timed(lambda: loader.release_rootfs(cid))
            release.append(t)

        mb = archive.stat().st_size / 1e6
        print(json.dumps({
            "benchmark": "images",
            "image": {"archive_mb": round(mb, 1), "layers": args.layers},
            "load_archive": {"seconds": round(load_s, 3), "mb_per_s": round(mb / load_s, 1),
                             "note": "includes digest verification and unpacking every layer"},
            "push_loopback": {"seconds": round(push_s, 3)},
            "pull_cold": {"seconds": round(cold_s, 3), "layers_downloaded": len(cold.downloaded),
                          "mb": round(cold.bytes / 1e6, 1), "note": "download + verify + unpack"},
            "pull_all_layers_present": {"seconds": round(warm_s, 3), "layers_downloaded": len(warm.downloaded)},
            "prepare_rootfs": {**summary(prep), "target_ms": 20},
            "release_rootfs": summary(release),
        }, indent=2))
        return 0
    finally:
        if server is not None:
            stop_registry(server.proc)
        for s in stores:
            for cdir in s.layout.containers.iterdir():
                s.release_rootfs(cdir.name)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
