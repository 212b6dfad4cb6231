"""Dockerfile syntax: continuation lines, flags, quoting, variable expansion, .dockerignore."""
from __future__ import annotations

import pytest

from images.context import IgnoreRules
from images.dockerfile import expand, json_form, key_values, parse, words
from images.errors import BuildError


def test_parse_joins_continuations_and_skips_comments() -> None:
    insts = parse("# syntax comment\nFROM base AS b\n\nRUN a \\\n  # inner comment\n  && b\nCOPY --from=b --chown=1:2 x /y\n")
    assert [(i.lineno, i.cmd) for i in insts] == [(2, "FROM"), (4, "RUN"), (7, "COPY")]
    assert insts[1].args == "a && b"
    assert insts[2].flags == {"from": "b", "chown": "1:2"} and insts[2].args == "x /y"
    assert str(insts[2]) == "COPY --from=b --chown=1:2 x /y"


@pytest.mark.parametrize("text, message", [
    ("", "no instructions"),
    ("RUN x\n", "line 1: RUN: a Dockerfile must begin with FROM"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "line 2: ONBUILD: ONBUILD isn't allowed as an ONBUILD trigger"),
    ("FROM a\nRUN --foo x\n", "line 2: RUN: unsupported flag '--foo'"),
    ("FROM a\nCOPY --from x /\n", "unsupported flag '--from'"),
    ("FROM a\nENV\n", "line 2: ENV: missing arguments"),
])
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        parse(text)


def test_words_quote_and_expand_like_docker() -> None:
    env = {"A": "x y", "B": "", "N": "1"}
    assert words('k="$A" \'$A\' ${A}z $N\\$', env) == ["k=x y", "$A", "x yz", "1$"]
    assert words("${B:-dflt} ${N:+set} ${B:+unset}x", env) == ["dflt", "set", "x"]
    assert words('"" a', env) == ["", "a"]
    with pytest.raises(BuildError, match="unterminated"):
        words('"open', env)
    with pytest.raises(BuildError, match="unsupported substitution"):
        words("${A/x/y}", env)


def test_expand_keeps_quotes_and_word_boundaries() -> None:
    assert expand('echo "$A" \\$A', {"A": "1"}) == 'echo "1" $A'


def test_json_form_only_for_string_lists() -> None:
    assert json_form('["sh", "-c", "x"]') == ["sh", "-c", "x"]
    assert json_form("[1, 2]") is None
    assert json_form("[not json") is None
    assert json_form("echo hi") is None


def test_env_and_label_pairs() -> None:
    [inst] = parse('FROM a\nENV A=1 B="two words" C=$A\n')[1:]
    assert key_values(inst, {"A": "0"}) == [("A", "1"), ("B", "two words"), ("C", "0")]
    [legacy] = parse("FROM a\nENV NAME some value\n")[1:]
    assert key_values(legacy, {}) == [("NAME", "some value")]
    [bad] = parse("FROM a\nLABEL novalue\n")[1:]
    with pytest.raises(BuildError, match="line 2: LABEL: expected KEY=VALUE"):
        key_values(bad, {})


def test_dockerignore_patterns() -> None:
    rules = IgnoreRules("# comment\n*.log\n!keep.log\nbuild/\n**/secret*\n/docs/*.md\n")
    assert rules.excluded("a.log") and not rules.excluded("keep.log")
    assert not rules.excluded("sub/a.log")  # * does not cross directories
    assert rules.excluded("build/out/x.o")  # a matched directory excludes what is below
    assert rules.excluded("deep/er/secret.key") and rules.excluded("secret.txt")
    assert rules.excluded("docs/readme.md") and not rules.excluded("docs/sub/readme.md")
    assert not rules.excluded("src/main.py")
