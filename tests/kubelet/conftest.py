"""A private control plane with a real kubelet, shared by the kubelet tests of one session.

Its own apiserver (Nodes are cluster-scoped: no other test's scheduler may see our node), the controller-manager
(node IPAM with a unique pod CIDR, Deployments, PV binder...), the scheduler and `pkube kubelet` as processes,
with unique bridge / nft table / netns / veth / cgroup names and temp dirs. At the end every pod is deleted, the
kubelet must have removed them, the node's runtime is destroyed and nothing may be left behind.
"""
from tests.support.node_fixtures import kc, node, ns, privileged_ns  # noqa: F401  (fixtures)
