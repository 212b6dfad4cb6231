"""Leader election on a coordination.k8s.io/v1 Lease (client-go's leaderelection, simplified).

Several replicas of a component run; only the holder of the Lease acts. The
holder renews every `retry_period`; if it cannot renew for `renew_deadline` it
stops leading (the caller must stop acting, normally by exiting). A candidate
takes over a Lease whose record has not changed for `lease_duration` seconds *as
observed on its own clock* (never comparing the holder's timestamps with our
clock, so clock skew between machines cannot cause two leaders). Writes use the
Lease's resourceVersion, so two candidates racing for it cannot both win.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
import socket
from typing import Any

from .api.timefmt import micro_now, parse_time
from .api.wellknown import SYSTEM_NAMESPACE
from .client import Client
from .errors import ApiError, ConnectionFailed, is_already_exists, is_conflict, is_not_found
from .resources import LEASES

log = logging.getLogger(__name__)

# Seconds a successor lets pass (from its predecessor's exit when its supervisor tells the time, else from when it
# first saw the Lease) before it acts in the place of its dead predecessor: requests the predecessor sent just
# before it died may still be on their way through the apiserver, and must be in the successor's caches before it
# acts, or it would do their work a second time.
PREDECESSOR_SETTLE = 3.0


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


class LeaderElector:
    def __init__(self, client: Client, name: str, namespace: str = SYSTEM_NAMESPACE, identity: str | None = None,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 predecessor: str | None = None, predecessor_exited: float | None = None):
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.name, self.namespace = name, namespace
        self.identity = identity or default_identity()
        # The identity of this process's predecessor, which its supervisor saw exit: a Lease it still holds has no
        # living holder, so it is taken at once (Kubernetes waits its duration out: a restarted leader has a new
        # identity and cannot tell that the old one is dead).
        self.predecessor = predecessor if predecessor != self.identity else None
        self.predecessor_exited = predecessor_exited  # time.time() of its exit, when known
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        # What we last saw of the Lease, and when (monotonic) it last changed.
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self.is_leader = False

    async def acquire(self) -> None:
        """Block until we hold the Lease."""
        logged = False
        while not await self._try_acquire_or_renew():
            holder = ((self._lease or {}).get("spec") or {}).get("holderIdentity")
            if holder and not logged:
                log.info("lease %s/%s is held by %s; waiting", self.namespace, self.name, holder)
                logged = True
            await asyncio.sleep(self.retry_period)
        self.is_leader = True
        log.info("became leader of %s/%s as %s", self.namespace, self.name, self.identity)

    async def predecessor_holds(self) -> bool:
        """Whether the Lease is held by our dead predecessor, renewed recently enough that no other candidate may
        take it before we do (they wait its duration out from its last renewal; we take it PREDECESSOR_SETTLE
        after the death). The predecessor ran beside us, under the same supervisor: its renewTime is on our
        clock."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except (ApiError, ConnectionFailed):
            return False
        spec = lease.get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        if not self.predecessor or spec.get("holderIdentity") != self.predecessor or renewed is None:
            return False
        left = renewed.timestamp() + float(spec.get("leaseDurationSeconds") or self.lease_duration) - time.time()
        return left > PREDECESSOR_SETTLE + 2 * self.retry_period

    async def keep_renewing(self) -> None:
        """Renew until leadership is lost (then return); cancel it to stop renewing."""
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            if await self._try_acquire_or_renew():
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew > self.renew_deadline or not self._lease_is_ours():
                self.is_leader = False
                log.error("lost leadership of %s/%s", self.namespace, self.name)
                return

    async def release(self) -> None:
        """Give the Lease up at once (graceful shutdown) so that a standby need not wait it out."""
        if not self.is_leader or self._lease is None:
            return
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        spec.update({"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_now()})
        lease["spec"] = spec
        try:
            await self.client.update(LEASES, lease)
        except (ApiError, ConnectionFailed) as e:
            log.info("could not release lease: %s", e)
        self.is_leader = False

    def _lease_is_ours(self) -> bool:
        return ((self._lease or {}).get("spec") or {}).get("holderIdentity") == self.identity

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_now()
        try:
            try:
                lease = await self.client.get(LEASES, self.name, self.namespace)
            except ApiError as e:
                if not is_not_found(e):
                    raise
                created = await self.client.create(LEASES, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                             "acquireTime": now, "renewTime": now, "leaseTransitions": 0}}, self.namespace)
                self._observe(created)
                return True
            self._observe(lease)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
            if (holder and holder not in (self.identity, self.predecessor)
                    and time.monotonic() - self._observed_at < duration):
                return False
            if holder and holder == self.predecessor:
                settling = PREDECESSOR_SETTLE - (time.monotonic() - self._observed_at)
                if self.predecessor_exited is not None:  # the time since it died counts (a clock step: no more)
                    settling = min(settling, PREDECESSOR_SETTLE - (time.time() - self.predecessor_exited))
                if settling > 0:
                    await asyncio.sleep(settling)  # the write below fails on a Lease that changed meanwhile
                log.info("lease %s/%s: taking it over from %s, which has exited", self.namespace, self.name, holder)
            new_spec = dict(spec)
            if holder != self.identity:
                new_spec["acquireTime"] = now
                new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            new_spec.update({"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                             "renewTime": now})
            updated = await self.client.update(LEASES, {**lease, "spec": new_spec})
            self._observe(updated)
            return True
        except ApiError as e:
            if not (is_conflict(e) or is_already_exists(e)):
                log.warning("lease %s/%s: %s", self.namespace, self.name, e.message)
            return False
        except ConnectionFailed as e:
            log.warning("lease %s/%s: %s", self.namespace, self.name, e)
            return False

    def _observe(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if rv != self._observed_rv:
            self._observed_rv = rv
            self._observed_at = time.monotonic()
