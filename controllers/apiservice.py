"""APIService availability controller (kube-aggregator's AvailableConditionController, without the proxy).

A Local APIService (no spec.service) is Available. One backed by a Service is not: ServiceNotFound while the
Service is missing, MissingEndpoints while it has no ready address, else FailedDiscoveryCheck, since pkube does
not proxy requests to aggregated API servers (nothing could answer discovery through it).
"""
from __future__ import annotations

from typing import Any

from pklib.api.apiservices import availability
from pklib.api.timefmt import now_rfc3339
from pklib.controller import Controller, ControllerContext
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import APISERVICES, ENDPOINTS, SERVICES

from .util import write_status

class APIServiceController(Controller):
    name = "apiservice-availability"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.apiservices = self.watch(APISERVICES, self.enqueue, lambda old, new: self.enqueue(new))
        self.services = self.watch(SERVICES, self._backend_changed, lambda old, new: self._backend_changed(new),
                                   self._backend_changed)
        self.endpoints = self.watch(ENDPOINTS, self._backend_changed, lambda old, new: self._backend_changed(new),
                                    self._backend_changed)

    def _backend_changed(self, obj: Obj) -> None:
        target = key_of(obj)
        for a in self.apiservices.store.list():
            ref = (a.get("spec") or {}).get("service") or {}
            if ref and f"{ref.get('namespace')}/{ref.get('name')}" == target:
                self.enqueue(a)

    async def sync(self, key: str) -> None:
        apiservice = self.apiservices.store.get(key)
        if apiservice is None:
            return
        ref = (apiservice.get("spec") or {}).get("service") or {}
        backend = f"{ref.get('namespace')}/{ref.get('name')}"
        status, reason, message = availability(apiservice, self.services.store.get(backend),
                                                self.endpoints.store.get(backend))
        conditions: list[dict[str, Any]] = list((apiservice.get("status") or {}).get("conditions") or [])
        old = next((c for c in conditions if c.get("type") == "Available"), None)
        if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
            return
        since = old.get("lastTransitionTime") if old is not None and old.get("status") == status else now_rfc3339()
        condition = {"type": "Available", "status": status, "lastTransitionTime": since, "reason": reason,
                     "message": message}
        conditions = [c for c in conditions if c.get("type") != "Available"] + [condition]
        await write_status(self.client, APISERVICES, apiservice, {**(apiservice.get("status") or {}),
                                                                   "conditions": conditions})
