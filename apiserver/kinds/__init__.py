"""Per-kind behaviour: defaulting, validation and allocations (see docs/DEVELOPING.md).

`strategy_for(res)` gives the handlers the strategy of a kind; `configure(...)` is called
once at startup with the service CIDR and node port range the allocators use.
"""
from __future__ import annotations

from pklib.resources import Resource

from . import services
from .apiservices import APIServiceStrategy
from .autoscaling import HorizontalPodAutoscalerStrategy
from .base import KindStrategy, Rollback
from .batch import CronJobStrategy, JobStrategy
from .certificates import CertificateSigningRequestStrategy
from .config import ConfigMapStrategy, SecretStrategy
from .disruption import PodDisruptionBudgetStrategy
from .customresources import CustomResourceDefinitionStrategy
from .endpoints import EndpointSliceStrategy, EndpointsStrategy
from .events import EventStrategy, LeaseStrategy, ServiceAccountStrategy
from .fields import Cause
from .ingress import IngressClassStrategy, IngressStrategy
from .namespaces import NamespaceStrategy, NodeStrategy
from .networkpolicy import NetworkPolicyStrategy
from .persistence import PersistentVolumeClaimStrategy, PersistentVolumeStrategy, StorageClassStrategy
from .pods import PodStrategy
from .priorityclasses import PriorityClassStrategy
from .quota import LimitRangeStrategy, ResourceQuotaStrategy
from .rbac import ClusterRoleBindingStrategy, ClusterRoleStrategy, RoleBindingStrategy, RoleStrategy
from .revisions import ControllerRevisionStrategy
from .workloads import (DaemonSetStrategy, DeploymentStrategy, ReplicaSetStrategy, ReplicationControllerStrategy,
                        StatefulSetStrategy)

__all__ = ["Cause", "KindStrategy", "Rollback", "configure", "custom_generation", "set_custom", "strategy_for"]

_DEFAULT = KindStrategy()
_STRATEGIES: dict[str, KindStrategy] = {s.kind: s for s in (
    PodStrategy(), services.ServiceStrategy(), NamespaceStrategy(), NodeStrategy(),
    ConfigMapStrategy(), SecretStrategy(), EventStrategy(), LeaseStrategy(), ServiceAccountStrategy(),
    EndpointsStrategy(), EndpointSliceStrategy(),
    PersistentVolumeStrategy(), PersistentVolumeClaimStrategy(), StorageClassStrategy(),
    DeploymentStrategy(), ReplicaSetStrategy(), DaemonSetStrategy(), StatefulSetStrategy(),
    JobStrategy(), CronJobStrategy(), ControllerRevisionStrategy(), PriorityClassStrategy(),
    PodDisruptionBudgetStrategy(), LimitRangeStrategy(), ResourceQuotaStrategy(), ReplicationControllerStrategy(),
    APIServiceStrategy(), HorizontalPodAutoscalerStrategy(), IngressStrategy(), IngressClassStrategy(),
    NetworkPolicyStrategy(),
    RoleStrategy(), ClusterRoleStrategy(), RoleBindingStrategy(), ClusterRoleBindingStrategy(),
    CustomResourceDefinitionStrategy(), CertificateSigningRequestStrategy(),
)}
# The strategies of custom resources, per served version (set by the CRD registry, apiserver/crds.py).
_CUSTOM: dict[Resource, KindStrategy] = {}
_generation = 0  # bumped on every change of the custom kinds (OpenAPI documents are rebuilt then)


def strategy_for(res: Resource) -> KindStrategy:
    if res.custom:
        return _CUSTOM.get(res, _DEFAULT)
    return _STRATEGIES.get(res.kind, _DEFAULT)


def set_custom(strategies: dict[Resource, KindStrategy]) -> None:
    global _CUSTOM, _generation
    _CUSTOM = dict(strategies)
    _generation += 1


def custom_generation() -> int:
    return _generation


def configure(service_cidr: str, node_port_range: str | tuple[int, int], event_ttl: float = 3600) -> None:
    """Set the ClusterIP range (e.g. 10.96.0.0/12), NodePort range ("30000-32767" or a pair) and how long
    Events live after their last write (kube-apiserver's --event-ttl, 1 h).

    Raises ValueError with a readable message for a bad range."""
    services.configure(service_cidr, node_port_range)
    _STRATEGIES["Event"].ttl_seconds = max(1, round(event_ttl))
