"""Filter and score plugins: small pure functions over (PodInfo, NodeInfo).

A filter returns None when the pod fits the node, otherwise the reasons it does not (the
strings Kubernetes uses, so that the aggregated "0/N nodes are available: ..." message
reads the same). A score takes the list of feasible nodes and returns one raw number per
node (one call per pod rather than per node keeps a cycle cheap); the framework
normalises to 0..100 and applies the configured weights.

A plugin may also act at the other extension points of a cycle (PreFilter, Reserve/Unreserve, PreBind; see
algorithm.py for the profile): VolumeBinding resolves claims before filtering and annotates unbound claims
with the chosen node before the binding.
"""
