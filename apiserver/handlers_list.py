"""LIST: selectors, pagination, and choosing between the watch cache and etcd.

- resourceVersion unset, no limit: a consistent list. Served from the watch
  cache once it has caught up with etcd's current revision (see
  WatchCache.catch_up), else read from etcd.
- `limit`/`continue`: every page at the revision of the first (the continue token carries it, with the
  last key returned). A page comes from the watch cache when the cache is at exactly that revision (the
  first page waits for the cache to catch up, as a consistent list does), else from etcd at that revision.
- resourceVersion "0" or N: from the cache (N: once the cache has reached it), as
  Kubernetes does; `limit` is then ignored. With resourceVersionMatch=Exact: from
  etcd at exactly revision N (410 if compacted).
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from pklib.resources import Resource
from pklib.selectors import FieldSelector, LabelSelector, SelectorError, parse_field_selector, parse_label_selector

from .bodies import INT64_MAX, int64
from .handlers_objects import collection_prefix
from .kinds import KindStrategy, strategy_for
from .status import StatusError, bad_request, gone, timeout
from .storage.interface import CompactedError, Storage
from .watchcache import WatchCache, resource_prefix, with_rv

CACHE_CATCH_UP = 1.0  # how long a consistent list waits for the cache before reading etcd
RV_WAIT = 3.0  # how long a list/watch at a future resourceVersion waits (then 504, like Kubernetes)


@dataclass(frozen=True)
class Filters:
    labels: LabelSelector
    fields: FieldSelector
    strategy: KindStrategy  # the kind's field labels (Kubernetes' GetAttrs)

    def matches(self, obj: dict[str, Any]) -> bool:
        if not self.labels.matches((obj.get("metadata") or {}).get("labels")):
            return False
        if not self.fields.requirements:
            return True
        return self.fields.matches({f: self.strategy.field_value(obj, f) for f in self.fields.fields()})

    @property
    def trivial(self) -> bool:
        return self.labels.empty() and not self.fields.requirements


def parse_filters(res: Resource, query: Any) -> Filters:
    try:
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"))
    except SelectorError as e:
        raise bad_request(f"unable to parse requirement: {e}") from None
    strategy = strategy_for(res)
    allowed = ("metadata.name", "metadata.namespace", *strategy.field_labels)
    for f in fields.fields():
        if f not in allowed:
            raise bad_request(f'field label not supported: {f}')
    return Filters(labels, fields, strategy)


def _encode_continue(revision: int, start_key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": revision, "start": start_key})).decode()


def _decode_continue(token: str, prefix: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        revision, start = int(data["rv"]), str(data["start"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise bad_request("continue key is not valid: the token is malformed") from None
    if not start.startswith(prefix) or not 0 < revision <= INT64_MAX:
        raise bad_request("continue key is not valid: it does not belong to this list")
    return revision, start


def list_body(res: Resource, raws: list[bytes], revision: int, cont: str | None = None) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(revision)}
    if cont:
        meta["continue"] = cont
    head = orjson.dumps({"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta})
    # Items are already serialised in the cache: splice them in instead of re-encoding every object.
    return head[:-1] + b',"items":[' + b",".join(raws) + b"]}"


async def list_objects(storage: Storage, cache: WatchCache, res: Resource, namespace: str | None,
                       query: Any) -> bytes:
    filters = parse_filters(res, query)
    ns = namespace or filters.fields.value_of("metadata.namespace") if res.namespaced else None
    prefix = collection_prefix(res, ns)
    rv = query.get("resourceVersion") or ""
    limit = int64(query.get("limit") or 0, "limit")
    token = query.get("continue") or ""
    match = query.get("resourceVersionMatch") or ""
    if match not in ("", "Exact", "NotOlderThan"):
        raise bad_request(f'resourceVersionMatch must be "Exact" or "NotOlderThan", got {match!r}')
    if match and not rv:
        raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
    if token or (limit > 0 and not rv):
        return await _list_page(storage, cache, res, prefix, filters, limit, token)
    if rv:
        wanted = int64(rv, "resourceVersion")
        if wanted == 0:
            # "any": whatever the cache holds now, without waiting for it to catch up (as client-go's informers
            # start: a list from a cache that lags a busy etcd would otherwise wait, then fail)
            if match == "Exact":
                raise bad_request('resourceVersionMatch "Exact" is forbidden for resourceVersion "0"')
            if not cache.ready:
                return await _list_from_store(storage, res, prefix, filters, 0, "")
        elif not await cache.catch_up(RV_WAIT, wanted) or cache.revision < wanted:
            raise timeout(f"Too large resource version: {wanted}, current: {cache.revision}")
        if match == "Exact":  # exactly that revision: only etcd keeps the past
            return await _list_from_store(storage, res, prefix, filters, limit, "", wanted)
    elif not await cache.catch_up(CACHE_CATCH_UP):
        return await _list_from_store(storage, res, prefix, filters, 0, "")
    items = cache.for_prefix(resource_prefix(res.group, res.plural)).items(
        prefix, None if filters.trivial else filters.matches)
    return list_body(res, [c.raw for c in items], cache.revision)


async def _list_page(storage: Storage, cache: WatchCache, res: Resource, prefix: str, filters: Filters, limit: int,
                     token: str) -> bytes:
    """One page of a paginated list: from the cache when it holds the page's revision, else from etcd."""
    if token:
        revision, start = _decode_continue(token, prefix)
    elif await cache.catch_up(CACHE_CATCH_UP):
        revision, start = cache.revision, None
    else:
        return await _list_from_store(storage, res, prefix, filters, limit, token)
    if cache.revision != revision:  # the cache has moved on (or never was there): only etcd keeps the past
        return await _list_from_store(storage, res, prefix, filters, limit, token)
    items, last = cache.for_prefix(resource_prefix(res.group, res.plural)).page(
        prefix, start, limit, None if filters.trivial else filters.matches)
    return list_body(res, [c.raw for c in items], revision,
                     _encode_continue(revision, last + "\x00") if last is not None else None)


async def _list_from_store(storage: Storage, res: Resource, prefix: str, filters: Filters, limit: int,
                           token: str, at_revision: int = 0) -> bytes:
    revision, start = _decode_continue(token, prefix) if token else (at_revision, None)
    raws: list[bytes] = []
    # With a selector, keep reading pages until `limit` matching items are found (Kubernetes does the same).
    for _ in range(10_000):
        try:
            page = await storage.list(prefix, start_key=start, limit=limit + 1 if limit else 0, revision=revision)
        except CompactedError:
            if not token:
                raise gone(f"too old resource version: {revision}") from None
            raise gone("The provided continue parameter is too old to display a consistent list result. You can "
                       "start a new list without the continue parameter.") from None
        revision = page.revision
        entries = page.entries
        has_more = bool(limit) and len(entries) > limit
        if has_more:
            entries = entries[:limit]
        for e in entries:
            obj = with_rv(e.value, e.mod_revision)
            if filters.trivial or filters.matches(obj):
                raws.append(orjson.dumps(obj))
                if limit and len(raws) == limit:
                    last = e.key
                    more = has_more or e is not entries[-1]
                    cont = _encode_continue(revision, last + "\x00") if more else None
                    return list_body(res, raws, revision, cont)
        if not has_more:
            return list_body(res, raws, revision)
        start = entries[-1].key + "\x00"
    raise StatusError(500, "InternalError", "list did not terminate")

