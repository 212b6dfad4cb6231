"""A sandbox's or container's record on disk: one JSON file, replaced whole (readers never see half of it)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import orjson

from pklib.files import write_atomic
from kubelet.runtime.interface import NotFound


def load_state(path: Path, what: str) -> dict[str, Any]:
    """The record at `path`; NotFound naming `what` ("container ID") when there is none."""
    try:
        state: dict[str, Any] = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f"{what} not found") from None
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_atomic(path, orjson.dumps(state))


class OwnerIndex:
    """The records under `dir` (one directory each, holding `record`) and whom each belongs to (a container's
    sandbox, a sandbox's pod), `owner` read from the record once as it never changes: listing one owner's records
    reads none of the others', so a pod's sync stays cheap however many pods the node runs."""

    def __init__(self, dir: Path, record: str, owner: Callable[[dict[str, Any]], str]) -> None:
        self.dir, self._record, self._owner = dir, record, owner
        self._owner_of: dict[str, str] = {}  # record directory -> its owner

    def ids(self, owner: str | None = None) -> list[str]:
        """The records' directory names (of `owner`), sorted; a directory without its record (half created or
        half removed) is left out."""
        names = sorted(os.listdir(self.dir))
        for gone in set(self._owner_of) - set(names):
            del self._owner_of[gone]
        out = []
        for name in names:
            found = self._owner_of.get(name)
            if found is None:
                try:
                    found = self._owner(orjson.loads((self.dir / name / self._record).read_bytes()))
                except (FileNotFoundError, NotADirectoryError, ValueError, KeyError):
                    continue
                self._owner_of[name] = found
            if owner is None or found == owner:
                out.append(name)
        return out
