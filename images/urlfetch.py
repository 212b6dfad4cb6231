"""ADD <http(s) URL>: the download, on the builder's host (not in the RUN sandbox)."""
from __future__ import annotations

import email.utils
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from images.dockerfile import Instruction


def download(inst: Instruction, url: str, path: Path, log: Callable[[str], None]) -> str:
    """Fetch `url` into `path` (mtime from Last-Modified, as Docker's ADD); returns the sha256 digest."""
    log(f"downloading {url}")
    h = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(path, "wb") as out:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as e:
        raise inst.error(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise inst.error(f"cannot download {url}: {getattr(e, 'reason', e)}") from None
    if modified:
        try:
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (mtime, mtime))
        except (TypeError, ValueError):
            pass
    return f"sha256:{h.hexdigest()}"
