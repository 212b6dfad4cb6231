"""Errors of the image store. Each message is meant to be shown to a user as is."""
from __future__ import annotations


class ImageError(Exception):
    """Base class: a failure the user can understand and act on."""


class InvalidReference(ImageError):
    """An image name that cannot be parsed."""


class ImageNotFound(ImageError):
    """No image of that name in the local store."""


class UnsafeArchive(ImageError):
    """A layer or archive tries to escape its target, or breaks a limit."""


class RegistryError(ImageError):
    """The registry refused or failed a request (unknown image, auth, unreachable)."""


class BuildError(ImageError):
    """A Dockerfile or build step failed."""
