"""Defect 6 and part of 8: a few hundred bytes must not cost the apiserver (or pkctl) gigabytes, and no body,
however malformed, may answer a 5xx. Every test sends the attack to the real apiserver (or runs the real pkctl)
and checks that it is refused with a Status, quickly, without the server's memory jumping, with nothing written.

The alias and copy bombs here are sized so that the unfixed code expands them to tens of megabytes (enough to
see the defect: a jump in RSS, an answer other than the refusal) without being able to exhaust this machine if
the fix ever regressed; `test_yaml_loader_refuses_a_billion_laughs` feeds the full ten-level bomb to the loader.
"""
from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from pklib import yamlsafe
from pklib.client import Client
from pklib.resources import lookup
from tests.support.controlplane import ApiServer
from tests.support.pkctl import run_pkctl
from tests.util import unique

CM = lookup("configmaps")
assert CM is not None
MIB = 1024 * 1024


def laughs(levels: int, name: str = "lol", top: str = "x") -> str:
    """A ConfigMap manifest whose field `top` holds 9**levels "lol"s through nested aliases (~40 bytes a level)."""
    lines = [f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{top}:\n",
             '  l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]\n")
    return "".join(lines)


async def send(apiserver: ApiServer, method: str, path: str, data: bytes, content_type: str
               ) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {apiserver.token}", "Content-Type": content_type}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, apiserver.url + path, data=data, headers=headers) as r:
            assert r.content_type == "application/json", (r.status, await r.text())
            body = await r.json()
    assert body.get("kind") == "Status" or r.status < 400, body
    return r.status, body


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def names(client: Client, namespace: str) -> list[str]:
    return [o["metadata"]["name"] for o in (await client.list(CM, namespace))["items"]]


# --- YAML aliases ---------------------------------------------------------------------------------------------

def test_yaml_loader_refuses_a_billion_laughs() -> None:
    bomb = laughs(10)  # 9**10 = 3.5 billion strings from ~600 bytes
    assert len(bomb) < 700
    start = time.monotonic()
    with pytest.raises(yamlsafe.AliasError, match=r"YAML aliases \(&anchor/\*ref\) expand the document"):
        yamlsafe.load(bomb)
    assert time.monotonic() - start < 1
    with pytest.raises(yamlsafe.AliasError, match="may not refer to themselves"):
        yamlsafe.load("a: &a [1, *a]")
    # Anchors as people use them in manifests still work, merge keys included.
    doc = yamlsafe.load("base: &b {image: nginx, ports: [80]}\nc1: {<<: *b, name: a}\nc2: *b\nwhen: 2024-01-01\n")
    assert doc["c1"] == {"image": "nginx", "ports": [80], "name": "a"} and doc["c2"]["ports"] == [80]
    assert doc["when"] == "2024-01-01"  # a string, as Kubernetes keeps it


@pytest.mark.parametrize("content_type,method", [("application/yaml", "POST"),
                                                 ("application/apply-patch+yaml", "PATCH")])
async def test_yaml_alias_bomb_body_is_400_without_memory_growth(apiserver: ApiServer, client: Client,
                                                                 namespace: str, content_type: str,
                                                                 method: str) -> None:
    name = unique("lol")
    bomb = laughs(7, name).encode()  # ~4.8 million strings (35 MB as JSON) from ~400 bytes
    path = CM.path(namespace) if method == "POST" else CM.path(namespace, name) + "?fieldManager=attacker"
    before = rss_bytes(apiserver.proc.pid)
    start = time.monotonic()
    code, body = await send(apiserver, method, path, bomb, content_type)
    elapsed = time.monotonic() - start
    grown = rss_bytes(apiserver.proc.pid) - before
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert "YAML aliases (&anchor/*ref)" in body["message"]
    assert elapsed < 2, elapsed
    assert grown < 20 * MIB, f"the apiserver grew by {grown / MIB:.0f} MiB"
    assert await names(client, namespace) == []


# --- JSON patch -----------------------------------------------------------------------------------------------

async def test_json_patch_over_10000_operations_is_refused(apiserver: ApiServer, client: Client,
                                                           namespace: str) -> None:
    await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "namespace": namespace}, "data": {"a": "1"}})
    test_op = {"op": "test", "path": "/data/a", "value": "1"}
    code, body = await send(apiserver, "PATCH", CM.path(namespace, "p"), orjson.dumps([test_op] * 10_001),
                            "application/json-patch+json")
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge"), body
    assert body["message"] == ("Request entity too large: The allowed maximum operations in a JSON patch is 10000, "
                               "got 10001")
    # Exactly at the limit is fine.
    code, body = await send(apiserver, "PATCH", CM.path(namespace, "p"),
                            orjson.dumps([test_op] * 9_999 + [{"op": "replace", "path": "/data/a", "value": "2"}]),
                            "application/json-patch+json")
    assert code == 200 and body["data"] == {"a": "2"}, body


async def test_json_patch_copy_doubling_is_refused_and_writes_nothing(apiserver: ApiServer, client: Client,
                                                                      namespace: str) -> None:
    created = await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "doubling", "namespace": namespace, "annotations": {"seed": "x" * 1024}}})
    # Each copy puts the whole annotations map into itself: its size doubles with every operation, so 12
    # operations (of the 10,000 allowed) make 4 MiB, and 40 would make a terabyte.
    ops = [{"op": "copy", "from": "/metadata/annotations", "path": f"/metadata/annotations/k{i}"} for i in range(12)]
    before = rss_bytes(apiserver.proc.pid)
    code, body = await send(apiserver, "PATCH", CM.path(namespace, "doubling"), orjson.dumps(ops),
                            "application/json-patch+json")
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge"), body
    assert "accumulated size of the copied values exceeds the limit of 3145728 bytes" in body["message"]
    assert rss_bytes(apiserver.proc.pid) - before < 20 * MIB
    after = await client.get(CM, "doubling", namespace)
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert after["metadata"]["annotations"] == {"seed": "x" * 1024}


async def test_patch_result_over_the_storage_limit_is_413_and_writes_nothing(apiserver: ApiServer,
                                                                             client: Client, namespace: str) -> None:
    """Under the copy limit and the body limit, but the patched object is over etcd's 1.5 MiB."""
    lease = lookup("leases")
    assert lease is not None
    created = await client.create(lease, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                          "metadata": {"name": "grow", "namespace": namespace}, "spec": {"holderIdentity": "a"}})
    for patch, ctype in [({"spec": {"holderIdentity": "x" * (2 * MIB)}}, "application/merge-patch+json"),
                         ({"spec": {"holderIdentity": "x" * (2 * MIB)}}, "application/strategic-merge-patch+json"),
                         ([{"op": "replace", "path": "/spec/holderIdentity", "value": "x" * (2 * MIB)}],
                          "application/json-patch+json")]:
        code, body = await send(apiserver, "PATCH", lease.path(namespace, "grow"), orjson.dumps(patch), ctype)
        assert (code, body["reason"]) == (413, "RequestEntityTooLarge"), (ctype, body)
        assert "over the limit of 1572864 bytes" in body["message"]
    after = await client.get(lease, "grow", namespace)
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


# --- sizes ------------------------------------------------------------------------------------------------------

async def test_2mib_configmap_is_refused_and_not_stored(apiserver: ApiServer, client: Client, namespace: str) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"k": "x" * (2 * MIB)}}
    code, body = await send(apiserver, "POST", CM.path(namespace), orjson.dumps(cm), "application/json")
    # Kubernetes refuses it by validation first (a ConfigMap holds at most 1 MiB of data), as does pkube.
    assert code in (413, 422) and body["reason"] in ("RequestEntityTooLarge", "Invalid"), body
    # With the data split over keys each under the limit, the 1.5 MiB storage check refuses it.
    cm["data"] = {"a": "x" * (MIB - 100), "b": "y" * (MIB - 100)}
    code, body = await send(apiserver, "POST", CM.path(namespace), orjson.dumps(cm), "application/json")
    assert code in (413, 422), body
    # Bodies over 3 MiB are cut off while reading, with a Status, not aiohttp's text page.
    code, body = await send(apiserver, "POST", CM.path(namespace), b'{"data": "' + b"x" * (4 * MIB) + b'"}',
                            "application/json")
    assert (code, body["reason"]) == (413, "RequestEntityTooLarge"), body
    assert await names(client, namespace) == []


# --- decode errors are 400, never 500 ---------------------------------------------------------------------------

def _pb_field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def protobuf_configmap(name: bytes) -> bytes:
    type_meta = _pb_field(1, b"v1") + _pb_field(2, b"ConfigMap")
    raw = _pb_field(1, _pb_field(1, name))  # ConfigMap.metadata.name
    return b"k8s\x00" + _pb_field(1, type_meta) + _pb_field(2, raw)


async def test_invalid_utf8_in_protobuf_is_400(apiserver: ApiServer, client: Client, namespace: str) -> None:
    ok = unique("pb")
    code, _ = await send(apiserver, "POST", CM.path(namespace), protobuf_configmap(ok.encode()),
                         "application/vnd.kubernetes.protobuf")
    assert code == 201
    code, body = await send(apiserver, "POST", CM.path(namespace), protobuf_configmap(b"bad\xff\xfe"),
                            "application/vnd.kubernetes.protobuf")
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert "not valid UTF-8" in body["message"]
    assert await names(client, namespace) == [ok]


@pytest.mark.parametrize("depth", [300, 100_000])
async def test_deeply_nested_bodies_are_400(apiserver: ApiServer, client: Client, namespace: str,
                                            depth: int) -> None:
    await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n", "namespace": namespace}})
    deep_json = b'{"a":' * depth + b"1" + b"}" * depth
    deep_yaml = b"x: " + b"[" * depth + b"]" * depth
    head = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"deep"},"x":'
    cases = [("POST", CM.path(namespace), head + deep_json + b"}", "application/json"),
             ("POST", CM.path(namespace), b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n" + deep_yaml,
              "application/yaml"),
             ("PATCH", CM.path(namespace, "n"), b'{"metadata":{"annotations":' + deep_json + b"}}",
              "application/merge-patch+json"),
             ("PATCH", CM.path(namespace, "n"), b'{"metadata":{"annotations":' + deep_json + b"}}",
              "application/strategic-merge-patch+json"),
             ("PATCH", CM.path(namespace, "n") + "?fieldManager=m",
              b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\n" + deep_yaml, "application/apply-patch+yaml")]
    for method, path, data, ctype in cases:
        code, body = await send(apiserver, method, path, data, ctype)
        assert (code, body["reason"]) == (400, "BadRequest"), (ctype, body)
    assert await names(client, namespace) == ["n"]


@pytest.mark.parametrize("data,ctype", [
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"\xff"}}', "application/json"),
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: t\n", "application/yaml"),
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\nbinaryData: {k: !!binary aGk=}\n", "application/yaml"),
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: n}\nx: " + b"9" * 5000 + b"\n", "application/yaml"),
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n"},"x":' + b"9" * 5000 + b"}", "application/json"),
    (b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n"},"x":1e999}', "application/json"),
    (b'"just a string"', "application/json"), (b"- a list", "application/yaml"), (b"\xff\xfe", "application/yaml"),
])
async def test_undecodable_bodies_are_400(apiserver: ApiServer, client: Client, namespace: str, data: bytes,
                                          ctype: str) -> None:
    code, body = await send(apiserver, "POST", CM.path(namespace), data, ctype)
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert await names(client, namespace) == []


async def test_yaml_keys_that_are_not_strings_become_strings(client: Client, apiserver: ApiServer,
                                                             namespace: str) -> None:
    code, body = await send(apiserver, "POST", CM.path(namespace),
                            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: k}\ndata: {1: one, null: two}\n",
                            "application/yaml")
    assert code == 201, body
    assert (await client.get(CM, "k", namespace))["data"] == {"1": "one", "null": "two"}


# --- pkctl -------------------------------------------------------------------------------------------------------

def test_pkctl_apply_of_a_billion_laughs_file_is_a_one_line_error(apiserver: ApiServer, tmp_path: Path) -> None:
    bomb = tmp_path / "lol.yaml"
    bomb.write_text(laughs(7))
    start = time.monotonic()
    proc = run_pkctl("--kubeconfig", apiserver.kubeconfig, "apply", "-f", str(bomb), timeout=30)
    assert proc.returncode != 0
    assert time.monotonic() - start < 10
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "YAML aliases (&anchor/*ref)" in lines[0] and str(bomb) in lines[0]
    deep = tmp_path / "deep.json"
    deep.write_text('{"apiVersion": "v1", "kind": "ConfigMap", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    proc = run_pkctl("--kubeconfig", apiserver.kubeconfig, "apply", "-f", str(deep), timeout=30)
    assert proc.returncode != 0 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, \
        proc.stderr
    assert yaml  # (the loader's errors are yaml.YAMLError: one except clause for callers)


# --- found by tests/security/test_fuzz_bodies.py ---------------------------------------------------------------

async def test_field_names_with_control_characters_do_not_drop_the_connection(apiserver: ApiServer,
                                                                              namespace: str) -> None:
    """An unknown field is quoted in a Warning header: a name with CR/LF must not end the connection (nor
    inject a header); thousands of unknown fields must not make thousands of headers."""
    fields = {f"bad\r\nX-Injected: yes{i}": i for i in range(500)}
    body = orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, **fields})
    headers = {"Authorization": f"Bearer {apiserver.token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        async with s.post(apiserver.url + CM.path(namespace), data=body, headers=headers) as r:
            assert r.status == 201
            warnings = r.headers.getall("Warning")
            assert "X-Injected" not in r.headers
    assert 1 < len(warnings) <= 20 and "more warnings" in warnings[-1]
    assert all("\r" not in w and "\n" not in w for w in warnings)


async def test_generate_name_that_is_not_a_string_is_422(apiserver: ApiServer, client: Client,
                                                         namespace: str) -> None:
    code, body = await send(apiserver, "POST", CM.path(namespace),
                            b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":true}}',
                            "application/json")
    assert (code, body["reason"]) == (422, "Invalid"), body
    assert await names(client, namespace) == []


BIG = "99999999999999999999999"  # past int64


@pytest.mark.parametrize("method,suffix,data", [
    ("GET", f"?limit={BIG}", None),
    ("GET", f"?resourceVersion={BIG}", None),
    ("GET", f"?resourceVersionMatch=Exact&resourceVersion={BIG}", None),
    ("GET", f"?watch=true&resourceVersion={BIG}", None),
    ("GET", f"?watch=true&timeoutSeconds={BIG}", None),
    ("DELETE", f"/victim?gracePeriodSeconds={BIG}", b""),
    ("DELETE", "/victim", b'{"gracePeriodSeconds": ' + BIG.encode() + b"}"),
    ("DELETE", "/victim", b'{"gracePeriodSeconds": 1.5}'),
])
async def test_integer_parameters_past_int64_are_400(apiserver: ApiServer, client: Client, namespace: str,
                                                     method: str, suffix: str, data: bytes | None) -> None:
    await client.create(CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "victim",
                                                                                    "namespace": namespace}})
    code, body = await send(apiserver, method, CM.path(namespace) + suffix, data or b"", "application/json")
    assert (code, body["reason"]) == (400, "BadRequest"), body
    assert await names(client, namespace) == ["victim"]


async def test_exact_list_at_a_future_revision_is_kubernetes_504(apiserver: ApiServer, namespace: str) -> None:
    code, body = await send(apiserver, "GET", CM.path(namespace) + f"?resourceVersionMatch=Exact&resourceVersion="
                            f"{2 ** 63 - 1}", b"", "application/json")
    assert (code, body["reason"]) == (504, "Timeout") and "Too large resource version" in body["message"], body
