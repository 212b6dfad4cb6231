"""Thin async wrapper around the `runc` command line, always with pkube's own `--root` state directory."""
from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

from kubelet.runtime.interface import NotFound, RuntimeError_

RUNC = shutil.which("runc") or "/usr/sbin/runc"


class Runc:
    def __init__(self, root: str) -> None:
        self.root = root
        self.binary = RUNC

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, *args]

    async def run(self, *args: str, timeout: float = 30) -> bytes:
        proc = await asyncio.create_subprocess_exec(*self.argv(*args), stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise RuntimeError_(f"runc {args[0]} timed out after {timeout}s") from None
        if proc.returncode != 0:
            msg = _runc_message(err)
            if "does not exist" in msg or "not exist" in msg:
                raise NotFound(msg)
            raise RuntimeError_(f"runc {args[0]}: {msg}")
        return out

    async def state(self, cid: str) -> dict[str, Any] | None:
        """runc's view of the container, or None when runc does not know it."""
        try:
            return json.loads(await self.run("state", cid))
        except NotFound:
            return None

    async def start(self, cid: str) -> None:
        await self.run("start", cid)

    async def kill(self, cid: str, signal: str) -> None:
        try:
            await self.run("kill", cid, signal)
        except RuntimeError_ as e:
            # the process may have exited between our check and the signal; that is what we wanted anyway
            if "not running" not in str(e) and "process already finished" not in str(e) and not isinstance(e, NotFound):
                raise

    async def delete(self, cid: str) -> None:
        try:
            await self.run("delete", "--force", cid)
        except NotFound:
            pass

    async def list_states(self) -> dict[str, dict[str, Any]]:
        """id -> state (`status`, `pid`, ...) of every container under this root, in one runc call."""
        out = await self.run("list", "--format", "json")
        return {c["id"]: c for c in json.loads(out or b"null") or []}


def _runc_message(err: bytes) -> str:
    """runc logs `time=... level=error msg="..."`; keep just the message."""
    text = err.decode(errors="replace").strip()
    for line in reversed(text.splitlines()):
        if 'msg="' in line:
            return line.split('msg="', 1)[1].rstrip('"').replace('\\"', '"')
    return text or "failed"
