"""pkctl with custom kinds: the server's CRDs are learned from its discovery when a command names a kind that
is not built in (get by plural, short name and plural.group, describe, scale, apply -f, delete)."""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from pklib.client import Client
from tests.support.crds import create_crd, delete_crd, row, widget_crd
from tests.support.pkctl import Pkctl


@pytest.fixture
async def crd(client: Client) -> AsyncIterator[dict[str, Any]]:
    created = await create_crd(client, widget_crd())
    yield created
    await delete_crd(client, created["metadata"]["name"])


async def test_get_apply_scale_delete_custom_resources(pkctl: Pkctl, client: Client, namespace: str,
                                                       crd: dict[str, Any]) -> None:
    group = crd["spec"]["group"]
    manifest = f"apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: large\n"
    applied = pkctl("apply", "-f", "-", stdin=manifest)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == f"widget.{group}/w1 created"
    for name in ("widgets", "wd", f"widgets.{group}", "widget"):
        out = pkctl("get", name)
        assert out.returncode == 0, out.stderr
        assert [line.split()[0] for line in out.stdout.splitlines()] == ["NAME", "w1"]
    assert pkctl("get", "wd/w1", "-o", "jsonpath={.spec.replicas}").stdout == "1"  # defaulted by the server
    scaled = pkctl("scale", "wd", "w1", "--replicas=3")
    assert scaled.returncode == 0, scaled.stderr
    assert (await client.get(row(crd), "w1", namespace))["spec"]["replicas"] == 3
    described = pkctl("describe", "widget", "w1")
    assert described.returncode == 0 and "w1" in described.stdout
    deleted = pkctl("delete", "wd", "w1")
    assert deleted.returncode == 0, deleted.stderr
    assert (await client.list(row(crd), namespace))["items"] == []
    unknown = pkctl("get", "nosuchkinds")
    assert unknown.returncode == 1 and unknown.stderr.strip() == \
        'error: the server doesn\'t have a resource type "nosuchkinds"'
