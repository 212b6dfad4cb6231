"""Loading YAML from users without memory bombs.

`yaml.safe_load` builds aliases (`*ref`) as shared references, so a few hundred bytes of
nested aliases ("billion laughs") become gigabytes as soon as the document is serialized
as JSON, copied or validated. Like sigs.k8s.io/yaml (which caps alias expansion rather than
refusing anchors), aliases stay allowed but bounded: while composing, every node's expanded
size (scalar characters + 1 per node, aliases counted in full) is tracked, and a document
whose aliases add more than ALIAS_EXPANSION_LIMIT to it is refused. A document without
aliases is never affected; recursive aliases are refused.

Timestamps are not resolved (`2024-01-01` stays a string, as Kubernetes keeps it), and every
failure — including nesting too deep for Python's stack and integers too long to convert —
is a `yaml.YAMLError`, so callers need one except clause.
"""
from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["ALIAS_EXPANSION_LIMIT", "AliasError", "load", "load_all"]

ALIAS_EXPANSION_LIMIT = 1024 * 1024  # bytes (about) that aliases may add to one document
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class AliasError(ComposerError):
    """A document whose aliases expand it past the limit, or refer to themselves."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that bounds what aliases may add to a document (see the module doc)."""

    yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
                               for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def __init__(self, stream: Any):
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> size with aliases expanded
        self._distinct = 0  # size counting every node once

    def compose_document(self) -> Node | None:
        self._expanded, self._distinct = {}, 0
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        alias = self.check_event(yaml.AliasEvent)
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        node = super().compose_node(parent, index)
        if node is None:
            return None
        if alias:
            if id(node) not in self._expanded:  # its anchor is still being composed: it contains itself
                raise AliasError(None, None, "YAML aliases (&anchor/*ref) may not refer to themselves", mark)
            return node
        own = len(node.value) + 1 if isinstance(node, ScalarNode) else 1
        size = own
        if isinstance(node, SequenceNode):
            size += sum(self._expanded[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
        self._expanded[id(node)] = size
        self._distinct += own
        if size - self._distinct > ALIAS_EXPANSION_LIMIT:
            raise AliasError(None, None, f"YAML aliases (&anchor/*ref) expand the document by more than "
                                         f"{ALIAS_EXPANSION_LIMIT} bytes", mark)
        return node


def _failure(e: Exception) -> yaml.YAMLError:
    if isinstance(e, RecursionError):
        return yaml.YAMLError("the document is nested too deeply")
    return yaml.YAMLError(str(e))  # ValueError: an integer with more digits than Python converts


def load(text: str | bytes) -> Any:
    """The single document in `text` (None if empty); any problem raises yaml.YAMLError."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except (RecursionError, ValueError) as e:
        raise _failure(e) from None


def load_all(text: str | bytes) -> list[Any]:
    """Every document in `text`, in order; any problem raises yaml.YAMLError."""
    try:
        return list(yaml.load_all(text, Loader=BoundedLoader))  # noqa: S506 - a SafeLoader subclass
    except (RecursionError, ValueError) as e:
        raise _failure(e) from None
