"""A sandbox's or container's record on disk: one JSON file, replaced whole (readers never see half of it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

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
