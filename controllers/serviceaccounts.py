"""What every namespace holds for its pods' API access (Kubernetes' serviceaccount and root-ca-cert-publisher
controllers).

- `serviceaccount`: the ServiceAccount `default` in every active namespace, created again if deleted.
- `root-ca-cert-publisher`: the ConfigMap `kube-root-ca.crt` (key `ca.crt`: the cluster CA from
  --root-ca-file) in every active namespace, put back when deleted or changed. The kubelet projects it into
  pods as /var/run/secrets/kubernetes.io/serviceaccount/ca.crt. Without --root-ca-file it publishes nothing.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

from pklib.controller import Controller, ControllerContext
from pklib.errors import ApiError, is_already_exists, is_not_found
from pklib.informer import Obj
from pklib.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS

DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
                       "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
                       "guaranteed across distributions of Kubernetes clusters.")


def _active(namespace: Obj | None) -> bool:
    if namespace is None or (namespace.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return (namespace.get("status") or {}).get("phase", "Active") == "Active"


def _ignorable(e: ApiError) -> bool:
    """The namespace went away or is terminating while we wrote: nothing to do there any more."""
    return is_not_found(e) or e.code == 403


class _PerNamespace(Controller):
    """Keys are namespace names; an object of `name` deleted or changed in a namespace requeues it."""
    resource = SERVICEACCOUNTS
    object_name = ""

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.namespaces = self.watch(NAMESPACES, on_add=self._namespace, on_update=lambda o, n: self._namespace(n))
        self.objects = self.watch(self.resource, on_update=lambda o, n: self._object(n), on_delete=self._object)

    def _namespace(self, namespace: Obj) -> None:
        if _active(namespace):
            self.queue.add(namespace["metadata"]["name"])

    def _object(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("name") == self.object_name:
            self.queue.add(meta.get("namespace", ""))

    def current(self, namespace: str) -> Obj | None:
        return self.objects.store.get(f"{namespace}/{self.object_name}")


class ServiceAccountsController(_PerNamespace):
    name = "serviceaccount"
    resource = SERVICEACCOUNTS
    object_name = DEFAULT_SERVICE_ACCOUNT

    async def sync(self, key: str) -> None:
        if not _active(self.namespaces.store.get(key)) or self.current(key) is not None:
            return
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}
        try:
            await self.client.create(SERVICEACCOUNTS, body, key)
        except ApiError as e:
            if not (is_already_exists(e) or _ignorable(e)):
                raise


class RootCACertPublisher(_PerNamespace):
    name = "root-ca-cert-publisher"
    resource = CONFIGMAPS
    object_name = ROOT_CA_CONFIGMAP

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--root-ca-file", help="the cluster CA (PEM) published as ConfigMap kube-root-ca.crt in "
                                                   "every namespace")

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        path = self.option("root_ca_file", None)
        try:
            self.ca = Path(path).read_text() if path else None
        except OSError as e:
            raise ValueError(f"{self.name}: --root-ca-file: cannot read {path}: {e.strerror}") from None

    def wanted(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {"kubernetes.io/description":
                                                                        ROOT_CA_DESCRIPTION}},
                "data": {"ca.crt": self.ca}}

    async def sync(self, key: str) -> None:
        if self.ca is None or not _active(self.namespaces.store.get(key)):
            return
        current = self.current(key)
        try:
            if current is None:
                await self.client.create(CONFIGMAPS, self.wanted(), key)
            elif current.get("data") != {"ca.crt": self.ca}:
                await self.client.update(CONFIGMAPS, {**copy.deepcopy(current), "data": {"ca.crt": self.ca}})
        except ApiError as e:
            if not (is_already_exists(e) or _ignorable(e)):
                raise
