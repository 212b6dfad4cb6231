"""Request body decoding: JSON or YAML objects, patch documents, size and type limits."""
from __future__ import annotations

from typing import Any

import orjson
import yaml
from aiohttp import web

from pklib import yamlsafe

from . import protobuf
from .status import StatusError, bad_request

MAX_BODY = 3 * 1024 * 1024  # Kubernetes' request size limit
# Deeper documents are refused with a 400: the code that walks objects (patches, validation, copies,
# the JSON encoder) recurses, and Python's stack is about 1000 frames. Real objects nest ~20 deep.
MAX_DEPTH = 100

JSON_TYPES = {"application/json", ""}
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml"}
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
}


INT64_MAX = 2 ** 63 - 1


def int64(value: Any, what: str) -> int:
    """An integer parameter as Kubernetes parses it (int64): 400 naming `what` for anything else."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{what} must be an integer, got {value!r}") from None
    if not -INT64_MAX - 1 <= number <= INT64_MAX or isinstance(value, float) and not value.is_integer():
        raise bad_request(f"{what} must be an integer, got {value!r}")
    return number


def too_large() -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", "the request body is too large (limit 3 MiB)")


def unsupported(content_type: str, allowed: list[str]) -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media types include: '
                       f'{", ".join(allowed)} (got "{content_type}")')


async def read_raw(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large()
    data = bytearray()
    # Read in chunks so a body without Content-Length cannot grow past the limit either.
    async for chunk in request.content.iter_chunked(64 * 1024):
        data += chunk
        if len(data) > MAX_BODY:
            raise too_large()
    return bytes(data)


def _check_depth(doc: Any) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise bad_request(f"the request body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def parse_yaml(raw: bytes) -> Any:
    """A YAML body as the JSON decoder would have produced it: aliases bounded (pklib.yamlsafe), keys that
    are not strings turned into strings (as sigs.k8s.io/yaml does); 400 for anything JSON cannot carry."""
    try:
        doc = yamlsafe.load(raw.decode())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding YAML: {str(e).splitlines()[0] if str(e) else e}") from None
    _check_depth(doc)
    try:
        return orjson.loads(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as e:
        raise bad_request(f"error decoding YAML: the document cannot be represented as JSON: {e}") from None


def _parse(raw: bytes, content_type: str) -> Any:
    if content_type in YAML_TYPES:
        return parse_yaml(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"error decoding JSON body: {e}") from None
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:  # cheap: no deeper nesting is possible otherwise
        _check_depth(doc)
    return doc


async def read_object(request: web.Request, *, optional: bool = False) -> dict[str, Any] | None:
    """The request body as an object dict (JSON or YAML). Empty body → None if optional, else 400."""
    content_type = request.content_type if request.headers.get("Content-Type") else ""
    if content_type == protobuf.CONTENT_TYPE:  # kubectl's typed commands (create namespace, ...)
        return protobuf.decode_object(await read_raw(request))
    if content_type not in JSON_TYPES and content_type not in YAML_TYPES:
        raise unsupported(content_type, ["application/json", "application/yaml"])
    raw = await read_raw(request)
    if not raw.strip():
        if optional:
            return None
        raise bad_request("the request body is empty; an object is required")
    body = _parse(raw, content_type)
    if body is None and optional:
        return None
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be an object, got {type(body).__name__}")
    return body


async def read_patch(request: web.Request) -> tuple[str, Any]:
    """(patch type, decoded patch document) for PATCH requests."""
    content_type = request.content_type if request.headers.get("Content-Type") else ""
    kind = PATCH_TYPES.get(content_type)
    if kind is None:
        raise unsupported(content_type, list(PATCH_TYPES))
    raw = await read_raw(request)
    patch = _parse(raw, "application/json")
    if kind == "json" and not isinstance(patch, list):
        raise bad_request("a JSON patch must be a list of operations")
    if kind != "json" and not isinstance(patch, dict):
        raise bad_request("a merge patch must be a JSON object")
    return kind, patch


def member(obj: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """obj[key] as an object ({} if absent); 400 naming the field if it is something else."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where}{key} must be an object, got {type(value).__name__}")
    return value
