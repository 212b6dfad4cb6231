"""APIServices: the built-in group versions are Local and available; a user's APIService backed by a Service is
stored and shown unavailable with Kubernetes' reasons (pkube does not proxy to aggregated API servers)."""
from __future__ import annotations

from typing import Any

from pklib.client import Client
from pklib.resources import APISERVICES, ENDPOINTS, SERVICES, groups
from tests.support.crds import create_crd, delete_crd, widget_crd
from tests.support.samples import apiservice
from tests.util import unique, wait_for


def available(obj: dict[str, Any]) -> tuple[str, str, str]:
    c = next(c for c in obj["status"]["conditions"] if c["type"] == "Available")
    return c["status"], c["reason"], c["message"]


async def test_local_and_service_backed(client: Client, namespace: str, start_manager: Any) -> None:
    listed = {a["metadata"]["name"]: a for a in (await client.list(APISERVICES))["items"]}
    for group, versions in groups().items():
        for version in versions:
            local = listed[f"{version}.{group}"]
            assert "service" not in local["spec"] or local["spec"]["service"] is None
            assert available(local) == ("True", "Local", "Local APIServices are always available")

    await start_manager("apiservice-availability")
    body = apiservice(unique("v"))
    body["spec"]["service"] = {"namespace": namespace, "name": "metrics", "port": 443}
    name = body["metadata"]["name"]
    await client.create(APISERVICES, body)
    try:
        async def reason(want: str) -> Any:
            got = await client.get(APISERVICES, name)
            return got if (got.get("status") or {}).get("conditions") and available(got)[1] == want else None

        got = await wait_for(lambda: reason("ServiceNotFound"), message="ServiceNotFound")
        assert available(got) == ("False", "ServiceNotFound", f'service/metrics in "{namespace}" is not present')
        await client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics"},
                                       "spec": {"ports": [{"port": 443, "targetPort": 8443, "name": "https"}]}},
                            namespace)
        got = await wait_for(lambda: reason("MissingEndpoints"), message="MissingEndpoints")
        assert available(got)[2] == (f'endpoints for service/metrics in "{namespace}" have no addresses with port '
                                     f'name "https"')
        await client.create(ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "metrics"},
                                        "subsets": [{"addresses": [{"ip": "10.244.0.9"}],
                                                     "ports": [{"port": 8443, "name": "https"}]}]}, namespace)
        got = await wait_for(lambda: reason("FailedDiscoveryCheck"), message="FailedDiscoveryCheck")
        assert available(got)[0] == "False"
    finally:
        await client.delete(APISERVICES, name)


async def test_custom_resource_group_versions_are_local_apiservices(client: Client, start_manager: Any) -> None:
    await start_manager("apiservice-availability")
    crd = widget_crd(versions=("v1", "v2beta1"))
    group = crd["spec"]["group"]
    await create_crd(client, crd)
    try:
        async def registered() -> Any:
            names = {a["metadata"]["name"]: a for a in (await client.list(APISERVICES))["items"]}
            found = [names.get(f"{v}.{group}") for v in ("v1", "v2beta1")]
            return found if all(found) else None
        for a in await wait_for(registered, message="an APIService per served version of the CRD"):
            assert a["spec"]["groupPriorityMinimum"] == 1000 and a["spec"]["versionPriority"] == 100
            assert available(a) == ("True", "Local", "Local APIServices are always available")
    finally:
        await delete_crd(client, crd["metadata"]["name"])

    async def removed() -> bool:
        names = {a["metadata"]["name"] for a in (await client.list(APISERVICES))["items"]}
        return not names & {f"v1.{group}", f"v2beta1.{group}"}
    await wait_for(removed, message="the CRD's APIServices go with it")
