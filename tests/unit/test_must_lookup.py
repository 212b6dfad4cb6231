"""`must_lookup`: the kind-table lookup for names the code itself spells."""
from __future__ import annotations

import pytest

from pklib.resources import lookup, must_lookup


@pytest.mark.parametrize("name", ["pods", "po", "Pod", "deployments.apps", "leases"])
def test_known_names_resolve_like_lookup(name: str) -> None:
    assert must_lookup(name) is lookup(name)


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match=r"unknown resource 'podz': no such row in pklib.resources"):
        must_lookup("podz")
