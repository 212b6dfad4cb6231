"""Image pulls per imagePullPolicy, with a back-off per (pod, container) after a failed pull
(ErrImagePull, then ImagePullBackOff), and the imageID a container status reports."""
from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from images.auth import Credentials, parse_auths
from images.errors import ImageError, RegistryError
from kubelet.recorder import Recorder
from pklib.errors import ApiError
from kubelet.runtime.interface import ImageManager
from kubelet.shared import call_blocking


@dataclass
class LocalImages:
    """Images built on this machine and never pulled from a registry: every ref under `prefix`. The bundled
    ones among them (`bundled`: ref -> a blocking call that builds it into the store) are built on first use."""
    prefix: str = "pkube.local/"
    bundled: dict[str, Callable[[], object]] = field(default_factory=dict)

    def is_local(self, ref: str) -> bool:
        return bool(self.prefix) and ref.startswith(self.prefix)


@dataclass
class PullOutcome:
    ready: bool                                  # the image is in the store: the container may be created
    waiting: tuple[str, str] | None = None       # (reason, message) for the container's waiting state
    retry_after: float | None = None             # seconds until the pod should be synced again


def pull_policy(spec: dict[str, Any]) -> str:
    ref = spec.get("image", "")
    untagged_or_latest = ref.endswith(":latest") or ":" not in ref.rsplit("/", 1)[-1]
    return str(spec.get("imagePullPolicy") or ("Always" if untagged_or_latest else "IfNotPresent"))


SecretGetter = Callable[[str, str], Awaitable[dict[str, Any] | None]]   # (namespace, name) -> Secret or None
PULL_SECRET_KEYS = {"kubernetes.io/dockerconfigjson": ".dockerconfigjson", "kubernetes.io/dockercfg": ".dockercfg"}


def secret_auths(secret: dict[str, Any]) -> dict[str, Credentials]:
    """The registry credentials of a kubernetes.io/dockerconfigjson (or legacy dockercfg) Secret."""
    name = secret["metadata"]["name"]
    key = PULL_SECRET_KEYS.get(secret.get("type", ""))
    if key is None:
        raise RegistryError(f"secret {name} is of type {secret.get('type') or 'Opaque'}, "
                            "not kubernetes.io/dockerconfigjson")
    try:
        doc = orjson.loads(base64.b64decode((secret.get("data") or {}).get(key, ""), validate=True))
    except (binascii.Error, ValueError):
        raise RegistryError(f"secret {name}: {key} is not base64-encoded JSON") from None
    return parse_auths(doc, f"secret {name} {key}")


class PullManager:
    def __init__(self, images: ImageManager, recorder: Recorder, local: LocalImages, backoff_base: float,
                 backoff_max: float, inline: bool = False, secrets: SecretGetter | None = None) -> None:
        self.images = images
        self.secrets = secrets        # reads the pod's imagePullSecrets (None: pulls use node credentials only)
        self.inline = inline          # the store answers at once (a fake runtime's): no worker thread
        self.recorder = recorder
        self.local = local
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}   # (uid, container) -> (retry at, delay)
        self._image_ids: dict[str, tuple[str, float]] = {}               # ref -> (status imageID, valid until)
        self._building: dict[str, asyncio.Lock] = {}                     # bundled ref -> one build at a time

    async def ensure(self, pod: dict[str, Any], spec: dict[str, Any]) -> PullOutcome:
        """Pull per imagePullPolicy; `ready` False (with the waiting reason) when the image is not there."""
        uid, name, ref = pod["metadata"]["uid"], spec["name"], spec.get("image", "")
        policy = pull_policy(spec)
        present = await call_blocking(self.inline, self.images.resolve, ref) is not None
        local = self.local.is_local(ref)
        if local and not present and ref in self.local.bundled:
            # Pods starting together all find the bundled image missing: the first builds it, the others wait.
            async with self._building.setdefault(ref, asyncio.Lock()):
                await asyncio.to_thread(self.local.bundled[ref])
            present = True
        if present and (policy != "Always" or local):
            return PullOutcome(True)
        if policy == "Never" or (local and not present):
            msg = f'Container image "{ref}" is not present with pull policy of Never'
            self.recorder.warning(pod, "ErrImageNeverPull", msg)
            return PullOutcome(False, ("ErrImageNeverPull", msg))
        loop = asyncio.get_running_loop()
        retry_at, delay = self._backoff.get((uid, name), (0.0, 0.0))
        if loop.time() < retry_at:
            return PullOutcome(False, ("ImagePullBackOff", f'Back-off pulling image "{ref}"'), retry_at - loop.time())
        self.recorder.normal(pod, "Pulling", f'Pulling image "{ref}"')
        keychain = await self._keychain(pod)
        try:
            result = await asyncio.to_thread(self.images.pull, ref, keychain)
        except ImageError as e:
            delay = min(max(delay * 2, self.backoff_base), self.backoff_max)
            self._backoff[(uid, name)] = (loop.time() + delay, delay)
            self.recorder.warning(pod, "Failed", f'Failed to pull image "{ref}": {e}')
            # halfway through the wait the pod shows ImagePullBackOff (the branch above), then it retries
            return PullOutcome(False, ("ErrImagePull", str(e)), delay / 2)
        self._backoff.pop((uid, name), None)
        self.recorder.normal(pod, "Pulled", f'Successfully pulled image "{ref}" ({result.bytes} bytes)')
        return PullOutcome(True)

    async def _keychain(self, pod: dict[str, Any]) -> dict[str, Credentials]:
        """Credentials of the pod's imagePullSecrets (the ServiceAccount's were copied in at admission); like
        the kubelet, a missing or unusable secret is a warning and the pull goes on without it."""
        refs = [r.get("name", "") for r in pod["spec"].get("imagePullSecrets") or [] if isinstance(r, dict)]
        if not refs or self.secrets is None:
            return {}
        keychain: dict[str, Credentials] = {}
        missing: list[str] = []
        for name in refs:
            try:
                secret = await self.secrets(pod["metadata"].get("namespace", "default"), name)
            except ApiError:   # forbidden (not bound to this node any more), or the apiserver is away
                secret = None
            if secret is None:
                missing.append(name)
                continue
            try:
                for registry, creds in secret_auths(secret).items():
                    keychain.setdefault(registry, creds)
            except RegistryError as e:
                self.recorder.warning(pod, "FailedToRetrieveImagePullSecret", str(e))
        if missing:
            self.recorder.warning(pod, "FailedToRetrieveImagePullSecret",
                                  f"Unable to retrieve some image pull secrets ({', '.join(missing)}); "
                                  "attempting to pull the image may not succeed.")
        return keychain

    async def image_id(self, ref: str) -> str:
        """`name@<image id>` for the status, cached for a while (resolving reads the store's index)."""
        now = asyncio.get_running_loop().time()
        cached = self._image_ids.get(ref)
        if cached is None or cached[1] < now:
            img = await call_blocking(self.inline, self.images.resolve, ref)
            cached = self._image_ids[ref] = (f"{ref.rsplit(':', 1)[0]}@{img.id}" if img else "", now + 30)
        return cached[0]

    def forget(self, uid: str) -> None:
        for k in [k for k in self._backoff if k[0] == uid]:
            del self._backoff[k]
