"""Well-known namespaces, labels, annotations and taint keys that more than one part of pkube reads or writes
(Kubernetes' k8s.io/api core/v1 well_known_labels.go, well_known_taints.go and annotation_key_constants.go,
and the Deployment controller's annotations). One spelling each: components import them from here."""
from __future__ import annotations

# -- namespaces the apiserver creates at start ------------------------------------------------------
DEFAULT_NAMESPACE = "default"
SYSTEM_NAMESPACE = "kube-system"          # leader-election Leases of the control plane
PUBLIC_NAMESPACE = "kube-public"
NODE_LEASE_NAMESPACE = "kube-node-lease"  # one heartbeat Lease per node
SYSTEM_NAMESPACES = (DEFAULT_NAMESPACE, SYSTEM_NAMESPACE, PUBLIC_NAMESPACE, NODE_LEASE_NAMESPACE)

# -- node labels the kubelet sets ---------------------------------------------------------------------
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"

# -- taint keys the node controllers set and the scheduler honours -------------------------------------
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
DISK_PRESSURE_TAINT = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE_TAINT = "node.kubernetes.io/memory-pressure"
PID_PRESSURE_TAINT = "node.kubernetes.io/pid-pressure"

# -- Services and their endpoints -----------------------------------------------------------------------
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # an EndpointSlice's Service

# -- volumes ----------------------------------------------------------------------------------------------
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"  # the scheduler's pick for a delayed claim
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"

# -- rollouts ---------------------------------------------------------------------------------------------
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_ANNOTATION = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS_ANNOTATION = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO_ANNOTATION = "deprecated.deployment.rollback.to"
# Annotations that describe a Deployment object itself or one ReplicaSet's place in its history, never the
# rollout (Kubernetes' annotationsToSkip): not copied from a Deployment onto its ReplicaSets, and an undo keeps
# the Deployment's own values of these. Everything else, the change-cause above all, goes with the template.
DEPLOYMENT_OWN_ANNOTATIONS = frozenset({
    LAST_APPLIED_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION, ROLLBACK_TO_ANNOTATION,
})

# -- Jobs and CronJobs (k8s.io/api batch/v1 types.go) ----------------------------------------------------
JOB_CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_CONTROLLER_UID_LABEL = "controller-uid"  # still written beside the prefixed ones, as Kubernetes does
LEGACY_JOB_NAME_LABEL = "job-name"
JOB_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # annotation and label of an Indexed Job's pods
JOB_COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CRONJOB_SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"  # annotation of a CronJob's Jobs
CRONJOB_INSTANTIATE_ANNOTATION = "cronjob.kubernetes.io/instantiate"  # `kubectl create job --from=cronjob/x`
