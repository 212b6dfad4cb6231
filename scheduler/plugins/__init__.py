"""Filter and score plugins: small pure functions over (PodInfo, NodeInfo).

A filter returns None when the pod fits the node, otherwise the reasons it does not (the
strings Kubernetes uses, so that the aggregated "0/N nodes are available: ..." message
reads the same). A score takes the list of feasible nodes and returns one raw number per
node (one call per pod rather than per node keeps a cycle cheap); the framework
normalises to 0..100 and applies the configured weights.
"""
