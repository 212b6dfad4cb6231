"""The watch loop of `get -w` and `events -w`: events until interrupted, across the server's ends of a stream.

Imported only when watching (it needs an event loop; a plain `get` starts faster without)."""
from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlsplit

from pklib.errors import ApiError, ConnectionFailed, is_gone
from pklib.resources import Resource

if TYPE_CHECKING:
    from pklib.client import Client


async def follow(client: Client, res: Resource, namespace: str | None, rv: str | None,
                 handle: Callable[[dict[str, Any]], None], retry: float, *, label_selector: str | None = None,
                 field_selector: str | None = None) -> None:
    """Pass each event of `res` from `rv` on to `handle`. A stream the server ends (its watch timeout, another
    apiserver behind the same address taking over) is resumed from the last resourceVersion; a 410 starts again
    from now. When the server cannot be reached again (it shut down: it ends every watch cleanly first), this
    returns with a note on stderr: kubectl's `get -w` ends when the server closes its watch, with exit code 0."""
    while True:
        got = False
        try:
            async for event in client.watch(res, namespace, resource_version=rv or None,
                                            label_selector=label_selector, field_selector=field_selector):
                got = True
                rv = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion") or rv
                handle(event)
        except ApiError as e:
            if not is_gone(e):
                raise
            rv = None  # too old to resume: start again from now
        except ConnectionFailed:
            if not got:  # nothing came through: the server is gone, not just one stream cut
                host = urlsplit(client.server).netloc or client.server
                print(f"the watch on {res.plural} ended: the server {host} closed it and is not reachable any more",
                      file=sys.stderr)
                return
        await asyncio.sleep(retry)
