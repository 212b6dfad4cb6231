"""The node's image store (issue 4).

`store.ImageStore` is the entry point (names, layers, rootfs mounts, gc); `archive` loads and
saves docker-save/OCI tarballs; `registry` pulls and pushes (distribution API v2); `build`
with `dockerfile`, `context`, `buildrun` and `diff` builds Dockerfiles; `unpack` extracts
layers safely; `busybox.ensure_busybox` provides the bundled test image.
"""
