"""Fixtures for runtime tests: the bundled busybox image in a private image store, and a RuncRuntime with
unique names (bridge, pod CIDR, nft table, netns/veth prefixes, cgroup parent, state dir) torn down after each
test with a check that nothing was left behind (defined in tests/support/runtime.py)."""
from tests.support.runtime import busybox, image_store, runtime  # noqa: F401  (fixtures)
