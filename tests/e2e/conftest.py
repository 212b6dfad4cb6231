from __future__ import annotations

from typing import Iterator

import pytest

from tests.e2e.helpers import Cluster, local_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One cluster per test module (starting one takes seconds); the tests of a module run in file order."""
    with local_cluster() as c:
        yield c
