"""`pkctl apply -f FILE|DIR|- [-R]`: client-side apply, as kubectl does it.

Each object is created if missing; otherwise a three-way strategic merge patch is sent,
computed from the configuration applied last time (kept in the
`kubectl.kubernetes.io/last-applied-configuration` annotation), the new file and the live
object. So a field removed from the file is removed from the object, while fields others
set (controllers, `pkctl scale`) stay.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

from pklib.api.wellknown import LAST_APPLIED_ANNOTATION
from pklib.errors import ApiError, is_not_found

from ..connect import Connection, call
from ..discovery import learn_kinds_of
from ..errors import CommandError, ServerError, api_error_line
from ..manifests import Manifest, ManifestError, Placed, add_file_flags, place, read_files
from ..flags import dry_run as dry_run_of, output_flags
from ..printers import as_list, kind_name, print_result, to_json, to_yaml, with_type


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("apply", help="create or update objects from files",
                       description="Create or update the objects described in files (YAML or JSON).")
    add_file_flags(p, required=True)
    output_flags(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    manifests = read_files(args.filename, args.recursive, none_given="no objects passed to apply")
    return call(args, lambda conn: apply_all(conn, manifests, args.dry_run, args.output))


def with_last_applied(obj: dict[str, Any]) -> dict[str, Any]:
    """The object carrying the annotation kubectl writes: the object itself as JSON, minus that annotation.

    Like kubectl, the recorded JSON keeps an empty `annotations: {}`, has sorted keys and ends in a newline.
    """
    modified = copy.deepcopy(obj)
    meta = modified.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(LAST_APPLIED_ANNOTATION, None)
    meta["annotations"] = annotations
    recorded = json.dumps(modified, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    meta["annotations"] = {**annotations, LAST_APPLIED_ANNOTATION: recorded}
    return modified


def last_applied_of(live: dict[str, Any]) -> dict[str, Any] | None:
    text = ((live.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED_ANNOTATION)
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def apply_all(conn: Connection, manifests: list[Manifest], dry_run: str = "none", output: str | None = None) -> int:
    """Apply each object; print `KIND/NAME created|configured|unchanged` (kubectl's " (dry run)" or
    " (server dry run)" added), or with -o the objects (yaml/json: several as one List, after the last)."""
    failed = False
    suffix = dry_run_of(dry_run)[1]
    printed: list[dict[str, Any]] = []
    learn_kinds_of(conn.api, [m.obj for m in manifests])
    for m in manifests:
        try:
            placed = place(m, conn.namespace, conn.namespace_given)
            verb, obj = apply_object(conn, placed, dry_run)
            if output in ("yaml", "json"):
                printed.append(with_type(placed.res, obj))
            else:
                print_result(placed.res, obj, output, verb + suffix)
        except ManifestError as e:
            failed = True
            print(f"error: {e}", file=sys.stderr)
        except CommandError as e:
            failed = True
            print(e.line(), file=sys.stderr)
        sys.stdout.flush()
    if printed:
        doc = printed[0] if len(printed) == 1 else as_list(printed)
        sys.stdout.write(to_yaml(doc) if output == "yaml" else to_json(doc))
    return 1 if failed else 0


def apply_object(conn: Connection, p: Placed, dry_run: str = "none") -> tuple[str, dict[str, Any]]:
    """Create or patch one object: created, configured or unchanged, and the object as the server has it then.

    `dry_run` "server": the server's dry run, storing nothing; "client": nothing is sent but the GET, as kubectl
    does it (a new object is returned as it would be sent, an existing one as it is)."""
    params = dry_run_of(dry_run)[0]
    if not p.name:
        if (p.obj.get("metadata") or {}).get("generateName"):
            raise CommandError(f"from {p.manifest.source}: cannot use generate name with apply")
        raise CommandError(f'error validating "{p.manifest.source}": a {p.res.kind} needs metadata.name')
    modified = with_last_applied(p.obj)
    client = conn.api
    try:
        live = client.get(p.res, p.name, p.namespace)
    except ApiError as e:
        if not is_not_found(e):
            raise _contextual(e, f"error when retrieving current configuration of {kind_name(p.res)}/{p.name} "
                                 f'from "{p.manifest.source}"') from None
        if dry_run == "client":
            return "created", modified
        try:
            created = client.create(p.res, modified, p.namespace, params=params)
        except ApiError as create_error:
            raise _contextual(create_error, f'error when creating "{p.manifest.source}"') from None
        return "created", created
    if dry_run == "client":
        return "configured", live  # kubectl computes no patch in a client dry run
    from pklib.patch import PatchError, three_way_strategic_patch  # only an update needs it
    original = last_applied_of(live)
    if original is None and dry_run == "none":
        print(f"Warning: resource {p.res.plural}/{p.name} is missing the {LAST_APPLIED_ANNOTATION} annotation which is "
              "required by pkctl apply. The missing annotation will be patched automatically.", file=sys.stderr)
    try:
        patch = three_way_strategic_patch(original, modified, live)
    except PatchError as e:
        raise CommandError(f'from "{p.manifest.source}": cannot compute the patch for '
                           f"{kind_name(p.res)}/{p.name}: {e}") from None
    if not patch:
        return "unchanged", live
    try:
        patched = client.patch(p.res, p.name, patch, p.namespace, patch_type="strategic", params=params)
    except ApiError as e:
        raise _contextual(e, f'error when patching "{p.manifest.source}"') from None
    return "configured", patched


def _contextual(e: ApiError, context: str) -> ServerError:
    """The server's error, worded by kubectl's rules and saying which file it came from."""
    return ServerError(api_error_line(e, context))
