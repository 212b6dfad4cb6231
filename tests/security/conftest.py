"""Attack tests: each one replays an escape or abuse against the real parts and asserts that it fails.

They run on the kubelet's private control plane (real etcd, apiserver, controller-manager, scheduler and
`pkube kubelet`, tests/support/node.py), one per session for this directory.
"""
from tests.support.node_fixtures import kc, node, ns, privileged_ns  # noqa: F401  (fixtures)
