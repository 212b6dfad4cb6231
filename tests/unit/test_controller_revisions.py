"""Pure logic of ControllerRevisions: data, hash and names (controllers/history.py), the kind's defaulting and
validation, DaemonSet pod freshness, and pkctl's reading of a revision history."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from apiserver.kinds import strategy_for
from controllers.daemonset import is_updated
from controllers.history import (HASH_LABEL, apply_revision, canonical, fnv1_32, hash_data, new_revision,
                                 next_revision, revision_name, safe_encode, sort_revisions, stale_revisions,
                                 template_patch)
from pkctl.rollout_history import revision_table, revision_template, revision_to_restore
from pkctl.rollout_status import RolloutError
from pklib.resources import lookup

OWNER_UID = "0b5c6a9e-1111-2222-3333-444455556666"


def owner(image: str = "busybox:1", **annotations: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "ns", "uid": OWNER_UID, "annotations": annotations},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "db"}}, "spec": {
                "containers": [{"name": "c", "image": image}], "restartPolicy": "Always"}}}}


def revision(number: int, image: str, cause: str | None = None, uid: str = OWNER_UID, name: str = "",
             created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    o = owner(image, **({"kubernetes.io/change-cause": cause} if cause else {}))
    o["metadata"]["uid"] = uid
    r = new_revision(o, template_patch(o), number, 0, HASH_LABEL)
    r["metadata"]["creationTimestamp"] = created
    if name:
        r["metadata"]["name"] = name
    return r


def test_data_is_the_go_shaped_replace_patch_with_sorted_keys() -> None:
    data = template_patch(owner())
    template = data["spec"]["template"]
    assert template["$patch"] == "replace"
    assert template["metadata"] == {"creationTimestamp": None, "labels": {"app": "db"}}
    assert template["spec"]["containers"] == [{"image": "busybox:1", "name": "c", "resources": {}}]
    assert canonical(data).startswith(b'{"spec":{"template":{"$patch":"replace","metadata":{"creationTimestamp":null')
    assert list(template) == sorted(template), "stored in sorted order: clients compare the bytes"
    assert "replicas" not in data["spec"], "only the template is history"


def test_hash_is_fnv1_safe_encoded_and_depends_on_data_and_collisions() -> None:
    data = template_patch(owner())
    h = hash_data(data)
    assert h == hash_data(copy.deepcopy(data)), "stable for equal data"
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert h != hash_data(template_patch(owner("busybox:2")))
    assert hash_data(data, 0) != h and hash_data(data, 1) != hash_data(data, 0), "the probe changes the name"
    # The published FNV-1 32 vector: b"a" -> 0x050c5d7e = 84696446; its digits map into the safe alphabet.
    assert fnv1_32(b"a") == 0x050C5D7E and safe_encode("84696446") == "d8bfb88b"
    assert hash_data(data, 3) == safe_encode(str(fnv1_32(canonical(data) + b"3")))
    assert revision_name("x" * 300, "abc") == "x" * 223 + "-abc"


def test_new_revision_is_owned_labelled_and_keeps_the_annotations() -> None:
    o = owner(**{"kubernetes.io/change-cause": "set image"})
    r = new_revision(o, template_patch(o), 4, 0, HASH_LABEL)
    assert r["metadata"]["name"] == f"db-{hash_data(template_patch(o), 0)}"
    assert r["metadata"]["labels"] == {"app": "db", HASH_LABEL: r["metadata"]["name"][3:]}
    assert r["metadata"]["annotations"] == {"kubernetes.io/change-cause": "set image"}
    [ref] = r["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", OWNER_UID, True)
    assert r["revision"] == 4


def test_apply_revision_restores_the_template_and_nothing_else() -> None:
    old = revision(1, "busybox:1")
    current = owner("busybox:2")
    current["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    current["spec"]["replicas"] = 5
    restored = apply_revision(current, old)
    assert restored["spec"]["replicas"] == 5
    assert restored["spec"]["template"]["spec"]["containers"] == [
        {"image": "busybox:1", "name": "c", "resources": {}}], "replaced, not merged"
    assert template_patch(restored) == template_patch(owner("busybox:1"))


def test_ordering_numbers_and_history_limit() -> None:
    a = revision(2, "busybox:2", created="2026-01-01T00:00:02Z")
    b = revision(2, "busybox:3", created="2026-01-01T00:00:01Z")
    c = revision(1, "busybox:1")
    assert sort_revisions([a, b, c]) == [c, b, a], "by number, ties by creation time"
    assert next_revision([a, b, c]) == 3 and next_revision([]) == 1
    olds = [revision(n, f"busybox:{n}") for n in range(1, 6)]
    live = {olds[0]["metadata"]["name"]}
    assert stale_revisions(olds, live, 2) == olds[1:3], "oldest unused first, live ones spared"
    assert stale_revisions(olds, set(), 10) == []


def test_kind_keeps_nulls_in_data_and_guards_it() -> None:
    strategy = strategy_for(lookup("controllerrevisions"))  # type: ignore[arg-type]
    body: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                            "metadata": {"name": "r", "namespace": "d", "labels": None},
                            "data": {"spec": {"template": {"metadata": {"creationTimestamp": None}}}}, "revision": 1}
    strategy.default(body)
    assert "labels" not in body["metadata"]
    assert body["data"]["spec"]["template"]["metadata"] == {"creationTimestamp": None}, "data is opaque"
    assert strategy.validate(body, None) == []
    changed = {**body, "data": {"other": 1}, "revision": 2}
    assert [c["field"] for c in strategy.validate(changed, body)] == ["data"]
    assert strategy.validate({**body, "revision": 7}, body) == [], "the number may change"
    assert [c["field"] for c in strategy.validate({**body, "revision": -1}, None)] == ["revision"]
    missing = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "r", "namespace": "d"},
               "data": None}
    strategy.default(missing)
    assert [c["field"] for c in strategy.validate(missing, None)] == ["data"]


def test_daemonset_pod_is_updated_by_hash_or_generation() -> None:
    ds = {"metadata": {"generation": 3}}
    pod = {"metadata": {"labels": {"controller-revision-hash": "abc", "pod-template-generation": "2"}}}
    assert is_updated(ds, pod, "abc")
    assert not is_updated(ds, pod, "xyz")
    pod["metadata"]["labels"]["pod-template-generation"] = "3"
    assert is_updated(ds, pod, "xyz"), "made at the current generation (before revisions existed)"


def test_pkctl_history_table_template_and_undo_target() -> None:
    o = owner("busybox:3")
    listed = [revision(2, "busybox:2", "second"), revision(1, "busybox:1"), revision(3, "busybox:3", "third"),
              revision(9, "busybox:9", uid="someone-else")]
    assert revision_table(o, listed) == ("REVISION  CHANGE-CAUSE\n1         <none>\n2         second\n"
                                         "3         third\n")
    assert revision_table(o, []) == "No rollout history found."
    template = revision_template(o, listed[1])
    assert template["spec"]["containers"][0]["image"] == "busybox:1" and "$patch" not in template
    assert revision_to_restore(o, listed, 0)["revision"] == 2, "undo goes to the one before the newest"
    assert revision_to_restore(o, listed, 1)["revision"] == 1
    for to, message in ((9, "unable to find specified revision 9 in history"),
                        (-1, "unable to find specified revision -1 in history")):
        with pytest.raises(RolloutError, match=message):
            revision_to_restore(o, listed, to)
    with pytest.raises(RolloutError, match="no last revision to roll back to"):
        revision_to_restore(o, listed[:1], 0)
    broken = revision(4, "busybox:4")
    broken["data"] = {"spec": {"template": "not a template"}}
    with pytest.raises(RolloutError, match="unable to parse history"):
        revision_template(o, broken)
