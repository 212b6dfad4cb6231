"""The serviceaccount and root-ca-cert-publisher controllers against the real apiserver."""
from __future__ import annotations

import os
from typing import Any

from pklib.client import Client
from pklib.errors import ApiError
from pklib.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS
from tests.util import unique, wait_for

CA = "-----BEGIN CERTIFICATE-----\nnot really a certificate\n-----END CERTIFICATE-----\n"


async def _get(client: Client, res: Any, name: str, ns: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = await client.get(res, name, ns)
        return obj
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def test_every_namespace_gets_a_default_service_account_and_the_root_ca(client: Client, start_manager: Any,
                                                                               tmp_path: Any) -> None:
    ca_file = os.path.join(tmp_path, "ca.crt")
    with open(ca_file, "w") as f:
        f.write(CA)
    await start_manager("serviceaccount,root-ca-cert-publisher", "--root-ca-file", ca_file)
    ns = unique("sactl")
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        async def both() -> bool:
            return (await _get(client, SERVICEACCOUNTS, "default", ns) is not None
                    and await _get(client, CONFIGMAPS, "kube-root-ca.crt", ns) is not None)
        await wait_for(both, message="default ServiceAccount and kube-root-ca.crt")
        cm = await _get(client, CONFIGMAPS, "kube-root-ca.crt", ns)
        assert cm is not None and cm["data"] == {"ca.crt": CA}
        assert "kubernetes.io/description" in cm["metadata"]["annotations"]
        # Deleted or changed: put back.
        first = await _get(client, SERVICEACCOUNTS, "default", ns)
        assert first is not None
        await client.delete(SERVICEACCOUNTS, "default", ns)
        cm["data"] = {"ca.crt": "tampered"}
        await client.update(CONFIGMAPS, cm)

        async def restored() -> bool:
            sa = await _get(client, SERVICEACCOUNTS, "default", ns)
            now = await _get(client, CONFIGMAPS, "kube-root-ca.crt", ns)
            return (sa is not None and sa["metadata"]["uid"] != first["metadata"]["uid"]
                    and now is not None and now["data"] == {"ca.crt": CA})
        await wait_for(restored, message="default ServiceAccount and kube-root-ca.crt put back")
    finally:
        await client.delete(NAMESPACES, ns)
