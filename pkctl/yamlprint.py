"""YAML output as kubectl writes it (go-yaml's layout), for `-o yaml`; kept apart from pkctl/printers.py so that
commands printing tables do not pay for importing PyYAML's emitter."""
from __future__ import annotations

import io
import re
from typing import Any

import yaml

# libyaml's emitter is ~6x faster than the pure-Python one (it matters for `get -o yaml` of long lists).
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Only its scalar analysis is used: it tells whether a string could be written plain.
_ANALYZER = yaml.emitter.Emitter(io.StringIO(), allow_unicode=True)
# Names, paths, images: always fine plain once they do not resolve to another type (the common case, fast).
_SIMPLE = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_./]*\Z")


class _Dumper(_BaseDumper):  # type: ignore[misc]
    """Block style, list items level with their key, double quotes: the layout of kubectl's (go-yaml) output."""

    def ignore_aliases(self, data: Any) -> bool:
        # A dict reached twice is printed twice: users read manifests, not YAML anchors (&id001).
        return True


def _str_presenter(dumper: Any, data: str) -> yaml.Node:
    # Multi-line strings (scripts, certificates, last-applied JSON) read best as literal blocks.
    if "\n" in data and all(line == line.rstrip() for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    # Strings that would read as something else ("6", "true", a timestamp) or cannot be plain get
    # double quotes, as go-yaml writes them (PyYAML would pick single quotes).
    plain = dumper.resolve(yaml.ScalarNode, data, (True, False)) == "tag:yaml.org,2002:str"
    if plain and not _SIMPLE.match(data):
        analysis = _ANALYZER.analyze_scalar(data)
        plain = not analysis.empty and not analysis.multiline and analysis.allow_block_plain
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=None if plain else '"')


_Dumper.add_representer(str, _str_presenter)


def to_yaml(obj: Any) -> str:
    return str(yaml.dump(obj, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True,
                         width=1 << 16))
