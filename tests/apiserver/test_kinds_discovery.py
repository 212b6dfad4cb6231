"""Discovery through the real apiserver: what a generic client reads to learn the kinds."""
from __future__ import annotations

import pytest

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import RESOURCES


async def test_every_kind_is_discoverable_with_its_scope_and_short_names(client: Client) -> None:
    groups = await client.request("GET", "/apis")
    served = {(g["name"], v["version"]) for g in groups["groups"] for v in g["versions"]}
    core = await client.request("GET", "/api")
    served |= {("", v) for v in core["versions"]}
    for r in RESOURCES:
        assert (r.group, r.version) in served, r
        path = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        doc = await client.request("GET", path)
        entry = next(e for e in doc["resources"] if e["name"] == r.plural)
        assert (entry["kind"], entry["namespaced"], entry.get("shortNames", [])) == (r.kind, r.namespaced,
                                                                                    list(r.short_names))


async def test_scale_subresource_and_version(client: Client) -> None:
    apps = await client.request("GET", "/apis/apps/v1")
    scale = next(e for e in apps["resources"] if e["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    version = await client.request("GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "32")


async def test_unknown_group_version_is_404(client: Client) -> None:
    with pytest.raises(ApiError) as err:
        await client.request("GET", "/apis/apps/v9")
    assert err.value.code == 404
