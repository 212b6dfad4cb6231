"""Merging the cluster's kubeconfig into the user's (~/.kube/config) as context `pkube`, like minikube does."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pklib import kubeconfig, yamlsafe

SECTIONS = ("clusters", "users", "contexts")


class MergeError(Exception):
    pass


def user_kubeconfig() -> Path:
    return Path.home() / ".kube" / "config"


def _load(target: Path) -> dict[str, Any]:
    try:
        doc = yamlsafe.load(target.read_text()) or {}
    except FileNotFoundError:
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    except yaml.YAMLError as e:
        raise MergeError(f"{target} is not valid YAML, left it alone: {e}") from None
    if not isinstance(doc, dict):
        raise MergeError(f"{target} is not a kubeconfig, left it alone")
    return doc


def merge(target: Path, ours: dict[str, Any]) -> None:
    """Replace the entries named like ours (cluster, user, context) and make ours the current context;
    everything else in target is kept."""
    doc = _load(target)
    for section in SECTIONS:
        names = {item["name"] for item in ours[section]}
        doc[section] = [i for i in doc.get(section) or [] if i.get("name") not in names] + ours[section]
    doc["current-context"] = ours["current-context"]
    kubeconfig.write(target, doc)


def unmerge(target: Path, ours: dict[str, Any]) -> bool:
    """Remove our entries again, but only if target's cluster of that name still points at our server."""
    if not target.exists():
        return False
    doc = _load(target)
    name = ours["current-context"]
    server = ours["clusters"][0]["cluster"]["server"]
    theirs = [c for c in doc.get("clusters") or [] if c.get("name") == name]
    if not theirs or (theirs[0].get("cluster") or {}).get("server") != server:
        return False
    for section in SECTIONS:
        doc[section] = [i for i in doc.get(section) or [] if i.get("name") != name]
    if doc.get("current-context") == name:
        doc["current-context"] = ""
    kubeconfig.write(target, doc)
    return True
