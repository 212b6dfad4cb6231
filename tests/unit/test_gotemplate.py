"""pkctl's Go text/template subset (get -o go-template), on plain data."""
from __future__ import annotations

import pytest

from pkctl.gotemplate import TemplateError, parse, render

DATA = {"items": [{"name": "a", "n": 3, "tags": ["x", "y"], "ok": True},
                  {"name": "b", "n": 0.5, "tags": [], "ok": False}],
        "meta": {"z": 1, "a": {"b": None}}}


@pytest.mark.parametrize("template, expected", [
    ("{{range .items}}{{.name}}{{end}}", "ab"),
    ("{{range $i, $e := .items}}{{$i}}{{$e.name}} {{end}}", "0a 1b "),
    ("{{range .items}}{{range .tags}}{{.}}{{else}}none{{end}};{{end}}", "xy;none;"),
    ("{{range $k, $v := .meta}}{{$k}}={{$v}} {{end}}", "a=map[b:<nil>] z=1 "),
    ("{{.meta}} {{.items}}", "map[a:map[b:<nil>] z:1] [map[n:3 name:a ok:true tags:[x y]] "
                             "map[n:0.5 name:b ok:false tags:[]]]"),
    ("{{.missing}} {{.missing.deeper}}", "<no value> <no value>"),
    ("a  {{- 1 -}}  b\n{{- 2}}", "a1b2"),
    ("{{with .meta.z}}{{.}}{{end}}{{with .nothing}}no{{else}}else{{end}}", "1else"),
    ("{{$x := .meta.z}}{{if $x}}{{$x}}{{end}}{{$.meta.z}}", "11"),
    ('{{if eq .meta.z 1 2}}one{{end}}{{if ne 1 2}}!{{end}}{{if lt 1 2}}<{{end}}', "one!<"),
    ('{{index .items 1 | printf "%v"}}', "map[n:0.5 name:b ok:false tags:[]]"),
    ('{{(index .items 0).name}}{{len .items}}{{print 1 2 "s" 3}}', "a21 2s3"),
    ('{{and 1 .missing.x}}|{{or .missing "dflt"}}|{{not 0}}', "<no value>|dflt|true"),
    ("{{/* nothing */}}x{{`raw`}}", "xraw"),
])
def test_renders_as_go(template: str, expected: str) -> None:
    assert render(parse(template), DATA) == expected


def test_printf_verbs() -> None:
    assert render(parse('{{printf "%-3s|%03d|%q|%5.2f|%%" "ab" 7 "q" 2.5}}'), DATA) == 'ab |007|"q"| 2.50|%'


@pytest.mark.parametrize("template, message", [
    ("{{.a", "unclosed action"),
    ("{{if .a}}x", "has no {{end}}"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{nope 1}}", 'function "nope" not defined'),
    ("{{index .items 5}}", "index out of range"),
    ("{{template \"x\"}}", "not supported"),
])
def test_errors_are_template_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        render(parse(template), DATA)
