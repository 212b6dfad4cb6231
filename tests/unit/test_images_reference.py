"""Image name normalisation, as Docker does it."""
from __future__ import annotations

import pytest

from images.errors import InvalidReference
from images.reference import parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app:v2", "docker.io/user/app:v2"),
    ("index.docker.io/user/app", "docker.io/user/app:latest"),
    ("localhost:5000/app:1", "localhost:5000/app:1"),
    ("localhost/app", "localhost/app:latest"),
    ("127.0.0.1:5000/team/app", "127.0.0.1:5000/team/app:latest"),
    ("pkube.local/busybox", "pkube.local/busybox:latest"),
    ("ghcr.io/org/sub/app:1.0-rc_1", "ghcr.io/org/sub/app:1.0-rc_1"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"quay.io/a/b:tag@{DIGEST}", f"quay.io/a/b@{DIGEST}"),
    ("a__b/c-d.e", "docker.io/a__b/c-d.e:latest"),
])
def test_normalisation(text: str, expected: str) -> None:
    assert str(parse(text)) == expected


def test_parts_and_familiar_name() -> None:
    ref = parse("busybox:1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("docker.io", "library/busybox", "1", None)
    assert ref.familiar_name == "busybox"
    assert parse("user/app").familiar_name == "user/app"
    assert parse("localhost:5000/app").familiar_name == "localhost:5000/app"


@pytest.mark.parametrize("text, reason", [
    ("", "empty"),
    (" busybox", "spaces"),
    ("BusyBox", "lowercase"),
    ("busybox:", "bad tag"),
    ("busybox:-x", "bad tag"),
    ("busybox@sha256:abc", "digest must be"),
    ("busybox@md5:" + "a" * 32, "digest must be"),
    ("a//b", "lowercase"),
    ("host:5000/", "missing repository"),
    ("-x/app", "lowercase"),
    ("a/" + "b" * 300, "longer than 255"),
])
def test_invalid_references_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason):
        parse(text)
