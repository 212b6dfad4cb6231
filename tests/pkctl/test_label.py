"""pkctl label / annotate and get --no-headers against the real apiserver, with kubectl's words."""
from __future__ import annotations

from pklib.client import Client
from tests.pkctl.test_get import CONFIGMAPS, make_configmaps, table
from tests.support.pkctl import Pkctl


async def test_label_sets_refuses_to_overwrite_and_removes(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    out = pkctl("label", "configmap", "alpha", "env=prod", "team=blue")
    assert (out.returncode, out.stdout) == (0, "configmap/alpha labeled\n"), out.stderr
    labels = (await client.get(CONFIGMAPS, "alpha", namespace))["metadata"]["labels"]
    assert labels == {"app": "web", "tier": "front", "env": "prod", "team": "blue"}

    refused = pkctl("label", "cm/alpha", "env=dev")
    assert refused.returncode == 1 and refused.stderr.strip() == \
        "error: 'env' already has a value (prod), and --overwrite is false"
    assert (await client.get(CONFIGMAPS, "alpha", namespace))["metadata"]["labels"]["env"] == "prod"
    assert pkctl("label", "cm/alpha", "env=dev", "--overwrite").stdout == "configmap/alpha labeled\n"
    assert pkctl("label", "cm/alpha", "env=dev").stdout == "configmap/alpha not labeled\n"  # same value: no change
    assert pkctl("label", "cm/alpha", "env-", "team-").stdout == "configmap/alpha unlabeled\n"
    assert (await client.get(CONFIGMAPS, "alpha", namespace))["metadata"]["labels"] == {"app": "web", "tier": "front"}
    listed = pkctl("label", "cm/alpha", "--list")
    assert listed.stdout.splitlines() == ["app=web", "tier=front"]


async def test_label_by_selector_and_bad_input(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    out = pkctl("label", "configmaps", "-l", "app=web", "seen=yes")
    assert sorted(out.stdout.splitlines()) == ["configmap/alpha labeled", "configmap/beta labeled"], out.stderr
    assert "seen" not in ((await client.get(CONFIGMAPS, "gamma", namespace))["metadata"].get("labels") or {})
    for argv, message in [
            (("label", "cm/alpha", "bad key=x"), "error: invalid label spec: bad key=x"),
            (("label", "cm/alpha", "k=not a value"), "error: invalid label spec: k=not a value"),
            (("label", "cm/alpha"), "error: at least one label update is required"),
            (("label", "configmaps", "k=v"), "error: resource(s) were provided, but no name was specified"),
            (("label", "cm/nope", "k=v"), 'Error from server (NotFound): configmaps "nope" not found')]:
        bad = pkctl(*argv)
        assert bad.returncode == 1 and bad.stderr.startswith(message), (argv, bad.stderr)
        assert "Traceback" not in bad.stderr


async def test_annotate_and_get_without_headers(pkctl: Pkctl, client: Client, namespace: str) -> None:
    await make_configmaps(client, namespace)
    note = "deployed by ci; see https://example.invalid/run/42"
    out = pkctl("annotate", "cm", "beta", f"note={note}")
    assert out.stdout == "configmap/beta annotated\n", out.stderr
    assert (await client.get(CONFIGMAPS, "beta", namespace))["metadata"]["annotations"] == {"note": note}
    assert pkctl("annotate", "cm", "beta", "note-").stdout == "configmap/beta annotated\n"
    assert "annotations" not in (await client.get(CONFIGMAPS, "beta", namespace))["metadata"] or \
        not (await client.get(CONFIGMAPS, "beta", namespace))["metadata"]["annotations"]

    rows = table(pkctl("get", "cm", "--no-headers").stdout)
    assert [r[:2] for r in rows] == [["alpha", "2"], ["beta", "0"], ["gamma", "1"]]
    custom = pkctl("get", "cm", "--no-headers", "-o", "custom-columns=N:.metadata.name")
    assert custom.stdout.split() == ["alpha", "beta", "gamma"]


def test_version_names_client_and_server(pkctl: Pkctl) -> None:
    import json
    out = pkctl("version")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0].startswith("Client Version: pkube-v") and \
        lines[1].startswith("Server Version: v1."), out
    doc = json.loads(pkctl("version", "-o", "json").stdout)
    assert doc["serverVersion"]["major"] == "1" and doc["clientVersion"]["gitVersion"].startswith("pkube-v")
    alone = pkctl("version", "--client", "--server", "https://127.0.0.1:1")
    assert alone.returncode == 0 and alone.stdout.startswith("Client Version:") and "Server" not in alone.stdout
    down = pkctl("version", "--server", "http://127.0.0.1:1")
    assert down.returncode == 1 and down.stdout.startswith("Client Version:")
    assert "refused" in down.stderr and "Traceback" not in down.stderr
