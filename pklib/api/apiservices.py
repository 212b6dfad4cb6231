"""APIService availability (kube-aggregator's AvailableConditionController words), shared by the apiserver (Local
APIServices are available from their creation) and the apiservice-availability controller."""
from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

LOCAL_MESSAGE = "Local APIServices are always available"


def availability(apiservice: Obj, service: Obj | None, endpoints: Obj | None) -> tuple[str, str, str]:
    """(status, reason, message) of the Available condition."""
    spec = apiservice.get("spec") or {}
    ref = spec.get("service")
    if not ref:
        return "True", "Local", LOCAL_MESSAGE
    name, namespace = ref.get("name", ""), ref.get("namespace", "")
    if service is None:
        return "False", "ServiceNotFound", f'service/{name} in "{namespace}" is not present'
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p for p in ports if p.get("port") == ref.get("port", 443)), None)
    if port is None:
        return "False", "ServicePortError", f'service/{name} in "{namespace}" is not listening on port ' \
                                            f'{ref.get("port", 443)}'
    ready = any(s.get("addresses") for s in ((endpoints or {}).get("subsets") or []))
    if (service.get("spec") or {}).get("type") != "ExternalName" and not ready:
        return "False", "MissingEndpoints", (f'endpoints for service/{name} in "{namespace}" have no addresses '
                                             f'with port name "{port.get("name", "")}"')
    ip = (service.get("spec") or {}).get("clusterIP", "")
    path = f"/apis/{spec.get('group', '')}/{spec.get('version', '')}"
    return "False", "FailedDiscoveryCheck", (f"failing or missing response from https://{ip}:{ref.get('port', 443)}"
                                             f"{path}: pkube does not proxy to aggregated API servers")
