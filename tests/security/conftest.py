"""Attack tests: each one replays an escape or abuse against the real parts and asserts that it fails.

The kubelet's private control plane (real etcd, apiserver, controller-manager, scheduler and `pkube kubelet`)
is shared with these tests through its fixtures.
"""
from tests.kubelet.conftest import kc, node, ns  # noqa: F401  (fixtures)
