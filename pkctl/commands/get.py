"""`pkctl get KIND[,KIND] [NAME...] [-n NS | -A] [-l SEL] [--field-selector SEL] [-o FORMAT] [--show-labels] [-w]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pklib import columns
from pklib.errors import ApiError
from pklib.resources import Resource

from ..connect import Connection, call
from ..errors import CommandError, api_error_line
from ..printers import as_list, format_rows, labels_cell, object_ref, to_json, to_yaml, utcnow, with_type
from ..targets import Target, resolve_targets

OUTPUTS = ("wide", "yaml", "json", "name", "jsonpath=TEMPLATE", "jsonpath-file=FILE", "custom-columns=SPEC",
           "custom-columns-file=FILE", "go-template=TEMPLATE", "go-template-file=FILE")
# -o FORMAT-file=FILE reads FORMAT's argument from FILE; `template` is kubectl's other name of go-template.
FILE_FORMATS = {"jsonpath-file": "jsonpath", "custom-columns-file": "custom-columns", "go-template-file": "go-template",
                "template-file": "go-template"}
# A watch stream the server ends (its timeout) is resumed; this bounds how fast we retry a failing one.
WATCH_RETRY_SECONDS = 1.0

Found = tuple[Resource, dict[str, Any]]


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("get", help="display one or many resources",
                       description="Display one or many resources, by kind (plural, singular, short name or "
                                   "kind), optionally by name (KIND NAME... or KIND/NAME...).")
    p.add_argument("targets", nargs="*", metavar="KIND[,KIND] [NAME...] | KIND/NAME...")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    p.add_argument("-o", "--output", help="output format: " + " | ".join(OUTPUTS))
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("--no-headers", action="store_true", help="no header row (table and custom-columns output)")
    p.add_argument("-L", "--label-columns", action="append", default=[], metavar="KEY[,KEY]",
                   help="add a column with the value of each of these labels")
    p.add_argument("--sort-by", metavar="JSONPATH", help="sort by this field, e.g. .metadata.creationTimestamp")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true", help="watch for changes without listing first")
    p.add_argument("--ignore-not-found", action="store_true", help="treat a missing named object as no error")
    p.set_defaults(func=lambda args: call(args, lambda conn: get(conn, args)))


def _normalize_options(args: argparse.Namespace, targets: list[Target]) -> None:
    """Reject flag combinations kubectl rejects; parse -o templates and fold --watch-only into args."""
    if not targets:
        raise CommandError('You must specify the type of resource to get. Use "pkctl api-resources" for a '
                           "complete list of supported resources.")
    args.template = args.columns = args.sort_path = None
    args.label_keys = [k for arg in args.label_columns for k in arg.split(",") if k]
    if args.sort_by:
        from .. import jsonpath  # -o/--sort-by templates only: a plain `get` starts without them
        sort_expr = args.sort_by.strip()
        if sort_expr.startswith("{") and sort_expr.endswith("}"):
            sort_expr = sort_expr[1:-1]
        try:
            args.sort_path = jsonpath.parse_path(sort_expr if sort_expr[:1] in ".$@[" else "." + sort_expr)
        except jsonpath.JSONPathError as e:
            raise CommandError(f"error parsing --sort-by {args.sort_by}: {e}") from None
    fmt, has_arg, spec = (args.output or "").partition("=")
    if fmt in FILE_FORMATS:
        if not has_arg or not spec:
            raise CommandError(f"{fmt} format specified but no template file given")
        fmt, spec = FILE_FORMATS[fmt], _template_file(spec, fmt == "custom-columns-file")
    fmt = "go-template" if fmt == "template" else fmt
    if fmt in ("jsonpath", "custom-columns", "go-template"):
        from .. import gotemplate, jsonpath
        if not has_arg or not spec:
            raise CommandError(f"{fmt} format specified but no template given")
        try:
            if fmt == "jsonpath":
                args.template = jsonpath.parse(spec)
            elif fmt == "go-template":
                args.template = gotemplate.parse(spec)
            else:
                args.columns = jsonpath.parse_columns(spec)
        except (jsonpath.JSONPathError, gotemplate.TemplateError) as e:
            raise CommandError(f"error parsing {fmt} {spec}: {e}") from None
        args.output = fmt
    elif args.output and args.output not in OUTPUTS:
        raise CommandError(f'unable to match a printer suitable for the output format "{args.output}", '
                           f"allowed formats are: {','.join(sorted(OUTPUTS))}")
    if any(t.names and t.res.namespaced for t in targets) and args.all_namespaces:
        raise CommandError("a resource cannot be retrieved by name across all namespaces")
    if any(t.names for t in targets) and (args.selector or args.field_selector):
        raise CommandError("selectors cannot be used when passing resource/name arguments")
    args.watch = args.watch or args.watch_only
    if args.watch and len(targets) > 1:
        raise CommandError(f"watch is only supported on individual resources and resource collections, "
                           f"but {len(targets)} resources were found")


def _template_file(path: str, columns: bool) -> str:
    """The template in a -o ...-file=FILE; a custom-columns file (a line of headers over a line of paths)
    turned into the HEADER:PATH,... form."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CommandError(f"error reading template {path}: {getattr(e, 'strerror', None) or e}") from None
    if not columns:
        return text
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) != 2:
        raise CommandError(f"unexpected custom-columns spec format, expected a line of headers and a line of "
                           f"field paths in {path}")
    headers, paths = lines
    if len(headers) != len(paths):
        raise CommandError(f"expected {len(headers)} columns, got {len(paths)} in {path}")
    return ",".join(f"{h}:{p}" for h, p in zip(headers, paths))


def render_template(args: argparse.Namespace, doc: Any) -> str:
    """-o jsonpath or go-template, applied to `doc`."""
    from .. import gotemplate, jsonpath
    if args.output == "jsonpath":
        return jsonpath.render(args.template, doc)
    try:
        return gotemplate.render(args.template, doc)
    except gotemplate.TemplateError as e:
        sys.stdout.write(e.partial)  # as kubectl: what was printed before the failure stays
        raise CommandError(f"error executing template: {e}") from None


def get(conn: Connection, args: argparse.Namespace) -> int:
    targets = resolve_targets(conn.api, args.targets)
    _normalize_options(args, targets)
    found: list[Found] = []
    errors: list[str] = []
    list_rv: str | None = None  # where a watch (of the one listed kind) starts
    for t in targets:
        ns = None if (args.all_namespaces or not t.res.namespaced) else conn.namespace
        if t.names:
            for name in t.names:
                try:
                    found.append((t.res, conn.api.get(t.res, name, ns)))
                except ApiError as e:
                    if not (args.ignore_not_found and e.code == 404):
                        errors.append(api_error_line(e))
        else:
            result = conn.api.list_all(t.res, ns, label_selector=args.selector, field_selector=args.field_selector)
            list_rv = str((result.get("metadata") or {}).get("resourceVersion") or "") or None
            found.extend((t.res, item) for item in result.get("items") or [])
    if args.sort_path is not None:
        from .. import jsonpath
        found.sort(key=lambda f: jsonpath.sort_key(args.sort_path, f[1]))
    single = len(targets) == 1 and len(targets[0].names) == 1
    widths = [] if args.watch_only else print_found(found, args, single, conn.namespace, targets)
    sys.stdout.flush()
    for line in errors:
        print(line, file=sys.stderr)
    if args.watch and not errors:
        conn.run_async(lambda: watch(conn, args, targets[0], list_rv, widths, found))
    return 1 if errors else 0


def print_found(found: list[Found], args: argparse.Namespace, single: bool, namespace: str,
                targets: list[Target]) -> list[int]:
    """Print the objects in the chosen format; returns the table's column widths (for watch rows)."""
    out = args.output
    if out == "name":
        for res, obj in found:
            print(object_ref(res, obj))
        return []
    if out in ("jsonpath", "go-template"):
        doc = with_type(*found[0]) if single and len(found) == 1 else as_list(with_type(r, o) for r, o in found)
        sys.stdout.write(render_template(args, doc))
        return []
    if out in ("yaml", "json"):
        # Nothing found by name prints nothing (the error says why); an empty listing is an empty List.
        if found or not any(t.names for t in targets):
            doc = with_type(*found[0]) if single and len(found) == 1 else as_list(with_type(r, o) for r, o in found)
            sys.stdout.write(to_yaml(doc) if out == "yaml" else to_json(doc))
        return []
    if not found:
        if not any(t.names for t in targets):
            cluster_scoped = all(not t.res.namespaced for t in targets)
            where = "" if (args.all_namespaces or cluster_scoped) else f" in {namespace} namespace"
            print(f"No resources found{where}.", file=sys.stderr)
        return []
    if out == "custom-columns":
        from .. import jsonpath
        rows = ([] if args.no_headers else [[h for h, _ in args.columns]]) + \
            [jsonpath.column_cells(args.columns, o) for _, o in found]
        column_widths: list[int] = []
        print("\n".join(format_rows(rows, column_widths)))
        return column_widths
    kinds = list(dict.fromkeys(res for res, _ in found))
    prefix = len(kinds) > 1
    widths: list[int] = []
    for n, res in enumerate(kinds):
        if n:
            print()
        objs = [o for r, o in found if r == res]
        rows = ([] if args.no_headers else [table_headers(res, args)]) + [table_row(res, o, args, prefix) for o in objs]
        widths = []
        print("\n".join(format_rows(rows, widths)))
    return widths


def table_headers(res: Resource, args: argparse.Namespace) -> list[str]:
    head = columns.headers(res, args.output == "wide")
    if args.all_namespaces and res.namespaced:
        head = ["NAMESPACE", *head]
    head.extend(key.rsplit("/", 1)[-1].upper() for key in args.label_keys)
    if args.show_labels:
        head.append("LABELS")
    return head


def table_row(res: Resource, obj: dict[str, Any], args: argparse.Namespace, prefix: bool) -> list[str]:
    name = object_ref(res, obj) if prefix else None
    row = columns.cells(res, obj, utcnow(), args.output == "wide", name)
    if args.all_namespaces and res.namespaced:
        row = [(obj.get("metadata") or {}).get("namespace", ""), *row]
    labels = (obj.get("metadata") or {}).get("labels") or {}
    row.extend(labels.get(key, "") for key in args.label_keys)
    if args.show_labels:
        row.append(labels_cell(obj))
    return row


async def watch(conn: Connection, args: argparse.Namespace, target: Target, rv: str | None, widths: list[int],
                found: list[Found]) -> None:
    """Stream changes as rows (or documents) until interrupted, resuming when the server ends a stream."""
    from .. import watching  # only a watch needs an event loop (a plain `get` starts faster without)
    res = target.res
    ns = None if (args.all_namespaces or not res.namespaced) else conn.namespace
    field_selector = args.field_selector
    if target.names:
        # One name is selected by the server; several are filtered below.
        field_selector = f"metadata.name={target.names[0]}" if len(target.names) == 1 else None
        rv = max((str((o.get("metadata") or {}).get("resourceVersion") or "") for _, o in found), key=_rv_key,
                 default=None)
    tabular = args.output in (None, "wide", "custom-columns")
    header_printed = args.no_headers or (bool(found) and tabular and not args.watch_only)

    def show(event: dict[str, Any]) -> None:
        nonlocal header_printed
        obj = event.get("object") or {}
        if event.get("type") == "BOOKMARK":
            return
        if target.names and (obj.get("metadata") or {}).get("name") not in target.names:
            return
        if tabular and not header_printed:
            head = [h for h, _ in args.columns] if args.columns else table_headers(res, args)
            print(format_rows([head], widths)[0])
            header_printed = True
        _print_event(res, obj, args, widths)
    await watching.follow(conn.client, res, ns, rv, show, WATCH_RETRY_SECONDS, label_selector=args.selector,
                 field_selector=field_selector)


def _print_event(res: Resource, obj: dict[str, Any], args: argparse.Namespace, widths: list[int]) -> None:
    if args.output == "name":
        print(object_ref(res, obj))
    elif args.output in ("jsonpath", "go-template"):
        sys.stdout.write(render_template(args, obj))
    elif args.output == "custom-columns":
        from .. import jsonpath
        print(format_rows([jsonpath.column_cells(args.columns, obj)], widths)[0])
    elif args.output == "yaml":
        sys.stdout.write("---\n" + to_yaml(with_type(res, obj)))
    elif args.output == "json":
        sys.stdout.write(to_json(with_type(res, obj)))
    else:
        print(format_rows([table_row(res, obj, args, False)], widths)[0])
    sys.stdout.flush()


def _rv_key(rv: str) -> int:
    return int(rv) if rv.isdigit() else -1

