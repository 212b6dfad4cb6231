"""The kinds a CustomResourceDefinition defines, as kind-table rows (shared by the apiserver, which serves
them, and controllers that must reach every kind, such as the namespace controller)."""
from __future__ import annotations

import re
from typing import Any

from pklib.resources import Resource

_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(name: str) -> tuple[int, int, int, str]:
    """Sort key, Kubernetes' version priority: GA before beta before alpha, higher numbers first, then the
    rest alphabetically (so the first of a sorted list is the preferred version)."""
    m = _VERSION.match(name)
    if m is None:
        return (3, 0, 0, name)
    level = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (level, -int(m.group(1)), -int(m.group(3) or 0), name)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def served_versions(crd: dict[str, Any]) -> list[dict[str, Any]]:
    """The CRD's served versions, preferred first."""
    versions = [_dict(x) for x in _list(_dict(crd.get("spec")).get("versions")) if _dict(x).get("served")]
    return sorted(versions, key=lambda x: version_priority(str(x.get("name"))))


def row(crd: dict[str, Any], version: dict[str, Any]) -> Resource:
    """The kind-table row of one version of a CRD, named by its accepted names (else its spec's)."""
    spec = _dict(crd.get("spec"))
    names = _dict(_dict(crd.get("status")).get("acceptedNames")) or _dict(spec.get("names"))
    if not names.get("kind"):
        names = _dict(spec.get("names"))
    kind = str(names["kind"])
    subresources = _dict(version.get("subresources"))
    return Resource(str(spec["group"]), str(version["name"]), kind, str(names["plural"]),
                    spec.get("scope") == "Namespaced", tuple(str(s) for s in _list(names.get("shortNames"))),
                    tuple(s for s in ("status", "scale") if s in subresources),
                    categories=tuple(str(c) for c in _list(names.get("categories"))),
                    list_kind=str(names.get("listKind") or f"{kind}List"),
                    singular_name=str(names.get("singular") or kind.lower()), custom=True)


def established(crd: dict[str, Any]) -> bool:
    """Whether the CRD's kinds are served (its Established condition is True)."""
    return any(_dict(c).get("type") == "Established" and _dict(c).get("status") == "True"
               for c in _list(_dict(crd.get("status")).get("conditions")))


def preferred_row(crd: dict[str, Any]) -> Resource | None:
    """The row of the CRD's preferred served version, None if it serves none."""
    versions = served_versions(crd)
    return row(crd, versions[0]) if versions else None


def preferred_rows(crds: list[dict[str, Any]]) -> list[Resource]:
    """One row per CRD that is served at all: its preferred version's."""
    out = []
    for crd in crds:
        versions = served_versions(crd)
        if versions:
            out.append(row(crd, versions[0]))
    return out
