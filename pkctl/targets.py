"""What users name on the command line: `KIND[,KIND] [NAME...]` or `KIND/NAME...`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

from pklib.resources import Resource, all_resources, lookup

from .errors import CommandError

if TYPE_CHECKING:
    from pklib.syncclient import SyncClient


class Target(NamedTuple):
    res: Resource
    names: list[str]


class UnknownKind(CommandError):
    """A kind that is not built in: the server may know it (a custom kind)."""


def resolve_kind(name: str) -> Resource:
    res = lookup(name)
    if res is None:
        raise UnknownKind(f'the server doesn\'t have a resource type "{name}"')
    return res


def resolve_targets(api: SyncClient, args: list[str]) -> list[Target]:
    """`parse_targets`, learning the server's custom kinds first when a kind is not built in."""
    from .discovery import learn_custom_kinds
    try:
        return parse_targets(args)
    except UnknownKind:
        learn_custom_kinds(api)
        return parse_targets(args)


def parse_targets(args: list[str], learn: Callable[[], None] | None = None) -> list[Target]:
    """kubectl's two forms: a kind list then names, or every argument as KIND/NAME (never mixed). `learn`
    registers the server's custom kinds, called once if a kind is not built in."""
    try:
        return _parse_targets(args)
    except UnknownKind:
        if learn is None:
            raise
        learn()
        return _parse_targets(args)


def _parse_targets(args: list[str]) -> list[Target]:
    if not args:
        return []
    if "/" in args[0]:
        targets: list[Target] = []
        for arg in args:
            kind, sep, name = arg.partition("/")
            if not sep or not kind or not name or "/" in name:
                raise CommandError(f'arguments in resource/name form must have a single resource and name, got "{arg}"')
            res = resolve_kind(kind)
            for t in targets:
                if t.res == res:
                    t.names.append(name)
                    break
            else:
                targets.append(Target(res, [name]))
        return targets
    if any("/" in a for a in args[1:]):
        raise CommandError("there is no need to specify a resource type as a separate argument when passing "
                           "arguments in resource/name form (e.g. 'pkctl get resource/<resource_name>' instead "
                           "of 'pkctl get resource resource/<resource_name>'")
    kinds: list[Resource] = []
    for kind in args[0].split(","):
        if not kind:
            continue
        # A category (`all`) stands for every kind in it, as in `kubectl get all`.
        in_category = [r for r in all_resources() if kind.lower() in r.categories]
        for res in in_category or [resolve_kind(kind)]:
            if res not in kinds:
                kinds.append(res)
    if not kinds:
        raise UnknownKind(f'the server doesn\'t have a resource type "{args[0]}"')
    return [Target(res, list(args[1:])) for res in kinds]
