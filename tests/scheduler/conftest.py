"""Fixtures of this folder: a private control plane per module (see tests/scheduler/cluster.py)."""
from tests.scheduler.cluster import cclient, cluster, cns  # noqa: F401 - fixtures used by the tests here
