"""What the pod workers need to record Events: pklib.events.EventRecorder, or NullRecorder for hollow nodes
(thousands of fake pods whose Events nobody reads would only load the API server)."""
from __future__ import annotations

import asyncio
from typing import Any, Protocol


class Recorder(Protocol):
    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None: ...
    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None: ...
    async def run(self) -> None: ...


class NullRecorder:
    def normal(self, obj: dict[str, Any], reason: str, message: str) -> None:
        pass

    def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()  # like EventRecorder.run: until cancelled
