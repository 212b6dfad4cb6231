"""Writing a file so that readers see either its old content or the new one, never a part."""
from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes | str, mode: int | None = None) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (one writer at a time).
    `mode`: the file is created with these permissions (e.g. 0o600 for a private key), never readable before."""
    tmp = path.with_name(path.name + ".tmp")
    raw = data.encode() if isinstance(data, str) else data
    if mode is None:
        tmp.write_bytes(raw)
    else:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
    os.replace(tmp, path)
