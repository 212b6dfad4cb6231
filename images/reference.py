"""Image references, normalised the way Docker does it.

`busybox` is `docker.io/library/busybox:latest`; `localhost:5000/app:1` keeps its
registry; a first path component is a registry only if it looks like a host
(contains `.` or `:`, or is `localhost`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from images.errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?")


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker shows: `busybox` for docker.io/library/busybox."""
        if self.registry == DEFAULT_REGISTRY:
            return self.repository.removeprefix("library/")
        return self.name

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.registry, self.repository, None, digest)


def parse(text: str) -> Reference:
    """Parse and normalise an image reference; raises InvalidReference with the reason."""
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {original!r}: empty or surrounded by spaces")
    digest: str | None = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise InvalidReference(f"invalid image reference {original!r}: digest must be sha256:<64 hex digits>")
    registry = DEFAULT_REGISTRY
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _HOST.fullmatch(first):
            raise InvalidReference(f"invalid image reference {original!r}: bad registry host {first!r}")
        registry, text = first, rest
    if registry == "index.docker.io":
        registry = DEFAULT_REGISTRY
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"invalid image reference {original!r}: bad tag {tag!r}")
    if not text:
        raise InvalidReference(f"invalid image reference {original!r}: missing repository name")
    for part in text.split("/"):
        if not _COMPONENT.fullmatch(part):
            raise InvalidReference(
                f"invalid image reference {original!r}: repository name must be lowercase letters, "
                f"digits and separators (. _ __ -), got {part!r}")
    if registry == DEFAULT_REGISTRY and "/" not in text:
        text = f"library/{text}"
    if len(registry) + 1 + len(text) > 255:
        raise InvalidReference(f"invalid image reference {original!r}: name longer than 255 characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, text, tag, digest)


def normalise(text: str) -> str:
    return str(parse(text))
