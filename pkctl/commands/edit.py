"""`pkctl edit KIND NAME | KIND/NAME [-o yaml|json]`: kubectl's edit.

The object is written to a temporary file and opened in $KUBE_EDITOR, else $EDITOR, else vi. What comes back
is sent as the strategic merge patch from the object fetched to the object edited (kubectl's way: a change
made meanwhile by someone else to other fields survives). A file that does not parse or that the server
refuses is opened again with the reason as comments at the top; saving it unchanged gives up.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pklib import yamlsafe
from pklib.errors import ApiError
from pklib.patch import three_way_strategic_patch
from pklib.resources import Resource

from ..connect import Connection, call
from ..discovery import learn_custom_kinds_now
from ..errors import CommandError, api_error_line
from ..printers import kind_name, plural_name, to_json, to_yaml, with_type
from ..targets import parse_targets

HEADER = ("# Please edit the object below. Lines beginning with a '#' will be ignored,\n"
          "# and an empty file will abort the edit. If an error occurs while saving this file will be\n"
          "# reopened with the relevant failures.\n#\n")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("edit", help="edit an object in your editor",
                       description="Edit an object with $KUBE_EDITOR, $EDITOR or vi; it is saved when the editor "
                                   "exits.")
    p.add_argument("targets", nargs="+", metavar="KIND NAME | KIND/NAME")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml", help="the format to edit in")
    p.set_defaults(func=command)


def editor_command() -> list[str]:
    editor = os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi"
    try:
        words = shlex.split(editor)
    except ValueError as e:
        raise CommandError(f"cannot run the editor {editor!r}: {e}") from None
    if not words:
        raise CommandError("the editor named in $KUBE_EDITOR / $EDITOR is empty")
    return words


def strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))


def command(args: argparse.Namespace) -> int:
    targets = parse_targets(args.targets, learn=lambda: learn_custom_kinds_now(args))
    pairs = [(t.res, n) for t in targets for n in t.names]
    if not pairs:
        raise CommandError("resource(s) were provided, but no name was specified")

    def run(conn: Connection) -> int:
        failed = False
        for res, name in pairs:
            try:
                failed |= not edit_one(conn, res, name, conn.namespace if res.namespaced else None, args.output)
            except ApiError as e:
                print(api_error_line(e), file=sys.stderr)
                failed = True
        return int(failed)
    return call(args, run)


def edit_one(conn: Connection, res: Resource, name: str, namespace: str | None, output: str) -> bool:
    original = with_type(res, conn.api.get(res, name, namespace))
    dump = to_json if output == "json" else to_yaml
    shown = dump(original)
    fd, path = tempfile.mkstemp(prefix=f"pkctl-edit-{name}-", suffix=f".{output}")
    os.close(fd)
    try:
        problem = ""
        while True:
            comments = "".join(f"# {line}\n" for line in problem.splitlines()) + ("#\n" if problem else "")
            Path(path).write_text(HEADER + comments + shown)
            if subprocess.call([*editor_command(), path]) != 0:
                raise CommandError("there was a problem with the editor")
            text = strip_comments(Path(path).read_text())
            if not text.strip():
                print("Edit cancelled, saved file was empty.", file=sys.stderr)
                return True
            if problem and text == shown:
                keep = tempfile.NamedTemporaryFile("w", prefix=f"pkctl-edit-{name}-", suffix=f".{output}",
                                                   delete=False)
                with keep:
                    keep.write(text)
                print(f"A copy of your changes has been stored to \"{keep.name}\"", file=sys.stderr)
                raise CommandError("Edit cancelled, no valid changes were saved.")
            try:
                edited = json.loads(text) if output == "json" else yamlsafe.load(text)
            except (ValueError, yaml.YAMLError) as e:
                shown, problem = text, f"The edited file had a syntax error: {str(e).splitlines()[0]}"
                continue
            if edited == original:
                print("Edit cancelled, no changes made.", file=sys.stderr)
                return True
            if not isinstance(edited, dict) or any(
                    (edited.get(k), (edited.get("metadata") or {}).get("name")) != (original.get(k), name)
                    for k in ("apiVersion", "kind")):
                shown, problem = text, "At least one of apiVersion, kind and name was changed"
                continue
            try:
                patch = three_way_strategic_patch(original, edited, original)
                saved = conn.api.patch(res, name, patch, namespace, patch_type="strategic")
            except ApiError as e:
                shown, problem = text, f'{plural_name(res)} "{name}" was not valid:\n' + _reasons(e)
                continue
            print(f"{kind_name(res)}/{saved['metadata']['name']} edited")
            return True
    finally:
        os.unlink(path)


def _reasons(e: ApiError) -> str:
    causes = [f"* {c.get('field')}: {c.get('message', '')}" if c.get("field") else f"* {c.get('message', '')}"
              for c in e.causes]
    return "\n".join(causes) if causes else f"* {api_error_line(e)}"
