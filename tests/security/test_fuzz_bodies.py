"""A bounded fuzz run of request bodies against the real apiserver (issue 13): zero 5xx, zero partial writes.

Hypothesis generates JSON-ish and YAML-ish bodies — valid objects with random values planted at the paths the
server cares about, raw YAML-ish text, broken encodings, protobuf bytes — and sends them as creates, merge /
JSON / strategic patches and server-side applies. Every answer must be below 500 and a JSON Status when it is a
refusal; a refused create must leave the collection as it was, a refused patch or apply the object as it was
(same resourceVersion), and everything stored must still read back.

Reproducible and bounded: derandomized (the same cases on every run), no example database, MAX_EXAMPLES per
target; the number of cases each target ran is printed (pytest -rA shows it) and recorded as the junit
property `fuzz_cases`.
"""
from __future__ import annotations

import copy
import http.client
import json
import os
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pklib.resources import Resource, lookup
from tests.support.samples import sample
from tests.support.controlplane import ApiServer
from tests.util import unique

# PKUBE_FUZZ_EXAMPLES=5000 for a longer run by hand; CI keeps the bounded default.
MAX_EXAMPLES = int(os.environ.get("PKUBE_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=list(HealthCheck))
COUNTS: dict[str, int] = {}

KINDS = [r for r in (lookup(n) for n in ("configmaps", "pods", "services", "deployments", "secrets")) if r]
# Keys the server gives meaning to: random values are planted under these more often than under random keys.
KEYS = ["metadata", "name", "namespace", "labels", "annotations", "finalizers", "ownerReferences", "spec", "status",
        "data", "binaryData", "stringData", "containers", "image", "ports", "port", "targetPort", "nodePort",
        "selector", "template", "replicas", "clusterIP", "clusterIPs", "type", "env", "resources", "limits",
        "volumes", "volumeMounts", "apiVersion", "kind", "generateName", "resourceVersion", "$patch",
        "$retainKeys", "$setElementOrder/containers", "$deleteFromPrimitiveList/finalizers", "managedFields",
        "immutable", "strategy", "securityContext", "matchLabels", "items", "0", "-", ""]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
                    st.text(max_size=12), st.sampled_from(["", "1Gi", "-1", "a" * 300, "x/y", "..", "\x00", "é"]))
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=12)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=5)
mutations = st.lists(st.tuples(paths, values), max_size=4)
queries = st.sampled_from(["", "?fieldValidation=Strict", "?fieldValidation=Ignore", "?dryRun=All"])


def plant(obj: Any, path: list[str], value: Any) -> Any:
    """obj with `value` at `path`, creating (or overwriting non-object) intermediate levels."""
    root = obj if isinstance(obj, dict) else {}
    node = root
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return root


def mutated(base: dict[str, Any], changes: list[tuple[list[str], Any]]) -> dict[str, Any]:
    obj = copy.deepcopy(base)
    for path, value in changes:
        obj = plant(obj, path, value)
    return obj


def encode(doc: Any, how: str) -> bytes:
    if how == "yaml":
        return yaml.safe_dump(doc).encode()
    return json.dumps(doc).encode()  # may carry NaN/Infinity and integers past 64 bits: fine, they are fuzz


class Http:
    """One keep-alive connection to the apiserver; every answer is checked for 5xx and for being a Status."""

    def __init__(self, apiserver: ApiServer):
        url = urlsplit(apiserver.url)
        assert url.scheme == "http" and url.hostname and url.port
        self.host, self.port = url.hostname, url.port
        self.token = apiserver.token
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def __call__(self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
                 ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": ctype}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, ConnectionError):  # the server closed the idle connection
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                if attempt:
                    raise
        assert resp.status < 500, f"{method} {path} answered {resp.status}: {raw[:500]!r} for {body!r:.2000}"
        decoded = json.loads(raw)
        if resp.status >= 400:
            assert decoded.get("kind") == "Status" and decoded.get("code") == resp.status, decoded
        return resp.status, decoded

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def api(apiserver: ApiServer) -> Any:
    h = Http(apiserver)
    ns = unique("fuzz")
    code, _ = h("POST", "/api/v1/namespaces", json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": ns}}).encode())
    assert code == 201
    yield h, ns
    h("DELETE", f"/api/v1/namespaces/{ns}")
    h.close()


def count(target: str, record_property: Callable[[str, Any], None]) -> Callable[[], None]:
    COUNTS[target] = 0

    def one() -> None:
        COUNTS[target] += 1
    return one


def report(target: str, record_property: Callable[[str, Any], None]) -> None:
    record_property("fuzz_cases", COUNTS[target])
    print(f"fuzz {target}: {COUNTS[target]} cases, no 5xx, no partial write")
    assert COUNTS[target] >= MAX_EXAMPLES // 2, COUNTS


def names(api: Any, res: Resource, ns: str) -> set[str]:
    h, _ = api
    code, body = h("GET", res.path(ns))
    assert code == 200
    return {o["metadata"]["name"] for o in body["items"]}


def current(api: Any, res: Resource, ns: str, name: str) -> dict[str, Any] | None:
    h, _ = api
    code, body = h("GET", res.path(ns, name))
    return body if code == 200 else None


# --- create -----------------------------------------------------------------------------------------------------

def test_fuzz_create(api: Any, record_property: Callable[[str, Any], None]) -> None:
    h, ns = api
    one = count("create", record_property)

    @FUZZ
    @given(st.sampled_from(KINDS), mutations, st.sampled_from(["json", "yaml"]), st.integers(0, 30), queries)
    def case(res: Resource, changes: list[tuple[list[str], Any]], how: str, corrupt: int, query: str) -> None:
        one()
        body = encode(mutated(sample(res, unique("c"), ns), changes), how)
        if corrupt == 1:
            body = body[: len(body) // 2]
        elif corrupt == 2:
            body = body.replace(b"a", b"\xff", 1)
        before = names(api, res, ns)
        code, created = h("POST", res.path(ns) + query, body,
                          "application/yaml" if how == "yaml" else "application/json")
        after = names(api, res, ns)
        if code == 201 and "dryRun" not in query:
            assert after == before | {created["metadata"]["name"]}
        else:
            assert after == before, created

    case()
    report("create", record_property)


# --- patches ----------------------------------------------------------------------------------------------------

json_ops = st.lists(st.fixed_dictionaries({
    "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
    "path": st.one_of(st.lists(st.sampled_from(KEYS), max_size=4).map(lambda p: "/" + "/".join(p)), st.text(max_size=6)),
}, optional={"from": st.lists(st.sampled_from(KEYS), max_size=4).map(lambda p: "/" + "/".join(p)), "value": values}),
    max_size=6)


def test_fuzz_patch(api: Any, record_property: Callable[[str, Any], None]) -> None:
    h, ns = api
    one = count("patch", record_property)
    targets = {}
    for res in KINDS:
        code, obj = h("POST", res.path(ns), json.dumps(sample(res, "target", ns)).encode())
        assert code == 201, obj
        targets[res.plural] = res

    @FUZZ
    @given(st.sampled_from(KINDS), st.sampled_from(["merge", "strategic", "json"]), mutations, json_ops,
           st.booleans(), queries)
    def case(res: Resource, kind: str, changes: list[tuple[list[str], Any]], ops: list[dict[str, Any]],
             status: bool, query: str) -> None:
        one()
        before = current(api, res, ns, "target")
        assert before is not None
        ctype = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
                 "json": "application/json-patch+json"}[kind]
        patch = ops if kind == "json" else mutated({}, changes)
        path = res.path(ns, "target", "status" if status and "status" in res.subresources else None)
        code, answer = h("PATCH", path + query, encode(patch, "json"), ctype)
        after = current(api, res, ns, "target")
        if code >= 400 or "dryRun" in query:
            assert after == before, answer
        else:
            assert after is not None and after["metadata"]["resourceVersion"] == answer["metadata"]["resourceVersion"]

    case()
    report("patch", record_property)


# --- server-side apply ------------------------------------------------------------------------------------------

def test_fuzz_apply(api: Any, record_property: Callable[[str, Any], None]) -> None:
    h, ns = api
    one = count("apply", record_property)

    @FUZZ
    @given(st.sampled_from(KINDS), mutations, st.sampled_from(["alice", "bob"]), st.booleans(), st.booleans(),
           queries)
    def case(res: Resource, changes: list[tuple[list[str], Any]], manager: str, force: bool, raw: bool,
             query: str) -> None:
        one()
        name = "applied"
        before = current(api, res, ns, name)
        intent = mutated(sample(res, name, ns), changes)
        code, answer = h("PATCH", res.path(ns, name) + f"?fieldManager={manager}&force={str(force).lower()}"
                         + query.replace("?", "&"),
                         encode(intent, "json" if raw else "yaml"), "application/apply-patch+yaml")
        after = current(api, res, ns, name)
        if code >= 400 or "dryRun" in query:
            assert after == before, answer

    case()
    report("apply", record_property)


# --- raw YAML-ish text and protobuf bytes -----------------------------------------------------------------------

YAML_TOKENS = list("abkdn:v1 \n\t-&*!|>'\"{}[],#%@`0123456789.<?~") + [
    "apiVersion", "kind", "metadata", "name", "data", "ConfigMap", "&a ", "*a", "!!binary ", "!!set ", "!!int ",
    "!!float ", "!!str ", "!!map ", "!!python/name:os.system ", "---\n", "\n  ", ": ", "- ", "<<: *a", "null", "true",
    "0x1F", "1e999", ".nan", "2024-01-01", "9" * 40]
YAMLISH = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map("".join)
PROTO_PREFIX = b"k8s\x00"


def test_fuzz_raw_yaml_and_protobuf(api: Any, record_property: Callable[[str, Any], None]) -> None:
    h, ns = api
    one = count("raw", record_property)
    cm = lookup("configmaps")
    assert cm is not None

    @FUZZ
    @given(st.one_of(YAMLISH.map(lambda t: ("yaml", ("apiVersion: v1\nkind: ConfigMap\n" + t).encode())),
                     YAMLISH.map(lambda t: ("apply", ("apiVersion: v1\nkind: ConfigMap\n" + t).encode())),
                     st.binary(max_size=120).map(lambda b: ("proto", PROTO_PREFIX + b))))
    def case(kind_body: tuple[str, bytes]) -> None:
        one()
        kind, body = kind_body
        before = names(api, cm, ns)
        if kind == "apply":
            code, _ = h("PATCH", cm.path(ns, "raw") + "?fieldManager=fuzz", body, "application/apply-patch+yaml")
        else:
            ctype = "application/yaml" if kind == "yaml" else "application/vnd.kubernetes.protobuf"
            code, _ = h("POST", cm.path(ns), body, ctype)
        if code >= 400:
            assert names(api, cm, ns) == before

    case()
    report("raw", record_property)
