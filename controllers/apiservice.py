"""APIService availability controller (kube-aggregator's AvailableConditionController, without the proxy), and the
Local APIServices of CustomResourceDefinitions' group versions (kube-apiserver's crdRegistrationController).

A Local APIService (no spec.service) is Available. One backed by a Service is not: ServiceNotFound while the
Service is missing, MissingEndpoints while it has no ready address, else FailedDiscoveryCheck, since pkube does
not proxy requests to aggregated API servers (nothing could answer discovery through it).

Every served version of an established CRD gets a Local APIService `version.group` (labelled automanaged=true),
removed once no CRD serves that group version.
"""
from __future__ import annotations

from typing import Any

from pklib.api.apiservices import availability
from pklib.api.customresources import established, served_versions
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.api.timefmt import now_rfc3339
from pklib.controller import Controller, ControllerContext
from pklib.informer import Obj
from pklib.objects import key_of
from pklib.resources import APISERVICES, CRDS, ENDPOINTS, SERVICES

from .util import write_status

AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"
CRD_KEY = "crd-registration/"  # no APIService name contains a slash
# Kubernetes' priorities for the APIServices of custom resource group versions.
CRD_GROUP_PRIORITY, CRD_VERSION_PRIORITY = 1000, 100


class APIServiceController(Controller):
    name = "apiservice-availability"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.apiservices = self.watch(APISERVICES, self.enqueue, lambda old, new: self.enqueue(new))
        self.services = self.watch(SERVICES, self._backend_changed, lambda old, new: self._backend_changed(new),
                                   self._backend_changed)
        self.endpoints = self.watch(ENDPOINTS, self._backend_changed, lambda old, new: self._backend_changed(new),
                                    self._backend_changed)
        self.crds = self.watch(CRDS, self._crds_changed, lambda old, new: self._crds_changed(new), self._crds_changed)

    def _crds_changed(self, _: Obj) -> None:
        self.queue.add(CRD_KEY)

    def _backend_changed(self, obj: Obj) -> None:
        target = key_of(obj)
        for a in self.apiservices.store.list():
            ref = (a.get("spec") or {}).get("service") or {}
            if ref and f"{ref.get('namespace')}/{ref.get('name')}" == target:
                self.enqueue(a)

    async def sync(self, key: str) -> None:
        if key == CRD_KEY:
            await self._register_crds()
            return
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

    async def _register_crds(self) -> None:
        wanted: dict[str, tuple[str, str]] = {}
        for crd in self.crds.store.list():
            if established(crd):
                group = str((crd.get("spec") or {}).get("group"))
                for served in served_versions(crd):
                    wanted[f"{served['name']}.{group}"] = (group, str(served["name"]))
        existing = {a["metadata"]["name"]: a for a in self.apiservices.store.list()}
        errors: list[ApiError] = []
        for name, (group, version) in wanted.items():
            if name in existing:
                continue  # ours already, or a built-in or user one of that name: left alone
            body = {"apiVersion": APISERVICES.api_version, "kind": "APIService",
                    "metadata": {"name": name, "labels": {AUTOMANAGED: "true"}},
                    "spec": {"group": group, "version": version, "groupPriorityMinimum": CRD_GROUP_PRIORITY,
                             "versionPriority": CRD_VERSION_PRIORITY}}
            try:
                await self.client.create(APISERVICES, body)
            except ApiError as e:
                if not is_already_exists(e):
                    errors.append(e)
        for name, apiservice in existing.items():
            if name not in wanted and (apiservice["metadata"].get("labels") or {}).get(AUTOMANAGED) == "true":
                try:
                    await self.client.delete(APISERVICES, name)
                except ApiError as e:
                    if not is_not_found(e):
                        errors.append(e)
        if errors:
            raise errors[0]
