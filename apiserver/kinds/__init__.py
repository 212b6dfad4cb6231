"""Per-kind behaviour: defaulting, validation and allocations (see docs/DEVELOPING.md).

This package starts as a pass-through; the kind modules fill it in.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from pklib.resources import Resource

Cause = dict[str, str]
Rollback = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


class KindStrategy:
    def default(self, obj: dict[str, Any]) -> None:
        return None

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        return []

    async def prepare_create(self, obj: dict[str, Any], storage: Any) -> Rollback:
        return _nothing

    async def prepare_update(self, obj: dict[str, Any], old: dict[str, Any], storage: Any) -> Rollback:
        return _nothing

    async def after_delete(self, obj: dict[str, Any], storage: Any) -> None:
        return None


_DEFAULT = KindStrategy()
_STRATEGIES: dict[str, KindStrategy] = {}


def strategy_for(res: Resource) -> KindStrategy:
    return _STRATEGIES.get(res.kind, _DEFAULT)
