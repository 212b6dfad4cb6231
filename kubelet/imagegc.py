"""Image garbage collection, as Kubernetes' image GC manager: when the image filesystem (the one the image store
lives on) is used above `high_threshold` percent, delete unused images, least recently used first and only
those first seen at least `min_age` ago, until usage is back under `low_threshold` percent. An image is used
while any container on the node (running or not) has a root filesystem made from it. When not enough can be
freed the node gets a `FreeDiskSpaceFailed` warning, and `ImageGCFailed` when it fails twice in a row.

The filesystem's usage comes from `usage` (statvfs of the store by default), so a test can run GC on a real
store with made-up figures."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from images.errors import ImageError
from kubelet.recorder import Recorder

if TYPE_CHECKING:   # flags.py (loaded by hollow nodes too) imports this module: the store stays unloaded there
    from images.image import Image
    from images.store import ImageStore

log = logging.getLogger("kubelet.imagegc")


@dataclass(frozen=True)
class FsStats:
    capacity: int    # bytes
    available: int   # bytes


@dataclass(frozen=True)
class ImageGCPolicy:
    high_threshold: int = 85    # percent of the image filesystem
    low_threshold: int = 80
    min_age: float = 120.0      # seconds an image must have been known before it may be deleted
    period: float = 300.0       # seconds between two checks (Kubernetes' ImageGCPeriod)

    def check(self) -> None:
        for flag, value in (("--image-gc-high-threshold", self.high_threshold),
                            ("--image-gc-low-threshold", self.low_threshold)):
            if not 0 <= value <= 100:
                raise ValueError(f"{flag} must be between 0 and 100, got {value}")
        if self.low_threshold > self.high_threshold:
            raise ValueError(f"--image-gc-low-threshold ({self.low_threshold}) must not be greater than "
                             f"--image-gc-high-threshold ({self.high_threshold})")
        if self.min_age < 0 or self.period <= 0:
            raise ValueError("--image-minimum-gc-age must not be negative and --image-gc-period must be positive")


def statvfs_usage(path: os.PathLike[str] | str) -> FsStats:
    st = os.statvfs(path)
    return FsStats(capacity=st.f_blocks * st.f_frsize, available=st.f_bavail * st.f_frsize)


@dataclass
class _Record:
    first_detected: float
    last_used: float
    size: int


class ImageGCManager:
    def __init__(self, store: ImageStore, policy: ImageGCPolicy, recorder: Recorder,
                 node_ref: Callable[[], dict[str, Any]], usage: Callable[[], FsStats] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy
        self.recorder = recorder
        self.node_ref = node_ref            # the Node the events are about
        self.usage = usage or (lambda: statvfs_usage(store.root))
        self.clock = clock
        self._records: dict[str, _Record] = {}   # manifest digest -> what we know of the image
        self._failed_before = False

    def detect(self) -> dict[str, list[Image]]:
        """Refresh the records: every image (manifest digest -> its names); those in use are used now."""
        now = self.clock()
        by_digest: dict[str, list[Image]] = {}
        for img in self.store.list():
            by_digest.setdefault(img.manifest_digest, []).append(img)
        in_use = self.store.images_in_use()
        for digest, imgs in by_digest.items():
            rec = self._records.setdefault(digest, _Record(now, now if digest in in_use else 0.0, imgs[0].size))
            if digest in in_use:
                rec.last_used = now
        for gone in set(self._records) - set(by_digest):
            del self._records[gone]
        return by_digest

    def free_space(self, to_free: int) -> tuple[int, int]:
        """Delete unused images (least recently used first, old enough) until `to_free` bytes are freed:
        (bytes freed, images deleted)."""
        by_digest = self.detect()
        in_use = self.store.images_in_use()
        now = self.clock()
        candidates = sorted((rec.last_used, rec.first_detected, digest) for digest, rec in self._records.items()
                            if digest not in in_use and now - rec.first_detected >= self.policy.min_age)
        freed = deleted = 0
        for _, _, digest in candidates:
            if freed >= to_free:
                break
            names = [str(img.name) for img in by_digest.get(digest, []) if img.name]
            try:
                for name in names:
                    self.store.remove(name)
            except ImageError as e:   # a container started with it meanwhile
                log.info("image %s not deleted: %s", digest, e)
                continue
            log.info("image GC: deleted %s (%s)", ",".join(names), digest)
            freed += self._records.pop(digest).size
            deleted += 1
        if deleted:
            self.store.gc()   # the blobs and unpacked layers of the deleted images
        return freed, deleted

    def garbage_collect(self) -> str | None:
        """One check (blocking: run it in a thread); the error message when not enough could be freed."""
        fs = self.usage()
        if fs.capacity <= 0:
            return None
        usage_percent = 100 - fs.available * 100 // fs.capacity
        if usage_percent < self.policy.high_threshold:
            self.detect()
            return None
        to_free = fs.capacity * (100 - self.policy.low_threshold) // 100 - fs.available
        log.info("image filesystem at %d%% (high threshold %d%%): freeing %d bytes", usage_percent,
                 self.policy.high_threshold, to_free)
        freed, _ = self.free_space(to_free)
        if freed < to_free:
            return (f"Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, "
                    f"but only found {freed} bytes eligible to free.")
        return None

    def collect_and_report(self, error: str | None) -> None:
        if error is None:
            self._failed_before = False
            return
        node = self.node_ref()
        self.recorder.warning(node, "FreeDiskSpaceFailed", error)
        if self._failed_before:
            self.recorder.warning(node, "ImageGCFailed", error)
        log.warning("image garbage collection failed: %s", error)
        self._failed_before = True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.period)
            try:
                error = await asyncio.to_thread(self.garbage_collect)
            except (ImageError, OSError) as e:
                error = f"image garbage collection failed: {e}"
            self.collect_and_report(error)
