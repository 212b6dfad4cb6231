"""Dockerfile syntax of the newer instructions and flags (pure parsing): RUN --mount/--network, COPY --link,
HEALTHCHECK's Docker config form, ONBUILD triggers, and the resolver settings a RUN sandbox gets."""
from __future__ import annotations

import pytest

from images import buildmounts, dockerfile
from images.buildnet import resolv_conf
from images.errors import BuildError


def test_run_flags_repeat_and_keep_their_order() -> None:
    [_, run, copy] = dockerfile.parse(
        "FROM x\n"
        "RUN --mount=type=cache,target=/root/.cache/pip --network=none \\\n"
        "    --mount=type=secret,id=npm pip3 install -r requirements.txt\n"
        "COPY --link --chmod=644 a /b\n")
    assert run.mounts == ["type=cache,target=/root/.cache/pip", "type=secret,id=npm"]
    assert run.flags == {"network": "none"} and run.args == "pip3 install -r requirements.txt"
    assert str(run) == ("RUN --network=none --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=npm "
                        "pip3 install -r requirements.txt")
    assert copy.flags == {"link": "true", "chmod": "644"}


def test_mount_specs() -> None:
    [_, inst] = dockerfile.parse("FROM x\nRUN true\n")
    cache = buildmounts.parse(inst, 'type=cache,target=.cache,id=pip,sharing=locked,mode=0700,uid=1000,"ro"', "/app")
    assert (cache.type, cache.target, cache.id, cache.sharing, cache.mode, cache.uid, cache.readonly) == \
        ("cache", "/app/.cache", "pip", "locked", 0o700, 1000, True)
    secret = buildmounts.parse(inst, "type=secret,id=token", "/")
    assert secret.target == "/run/secrets/token" and not secret.required
    assert buildmounts.parse(inst, "type=secret,target=/etc/key,required", "/").id == "key"
    bind = buildmounts.parse(inst, "target=/src,from=builder,source=/out,rw", "/")
    assert (bind.type, bind.from_, bind.source, bind.readonly) == ("bind", "builder", "/out", False)
    for bad, message in (("type=volume,target=/x", "unsupported type 'volume'"),
                         ("type=cache", "needs target=PATH"),
                         ("type=secret", "needs id=ID"),
                         ("type=cache,target=/x,sharing=all", "invalid sharing 'all'"),
                         ("type=cache,target=/x,uid=me", "invalid value 'me' for uid"),
                         ("type=tmpfs,target=/x,from=a", "from= applies to type=bind only")):
        with pytest.raises(BuildError, match=rf"line 2: RUN: .*{message}"):
            buildmounts.parse(inst, bad, "/")


def test_healthcheck_and_onbuild_forms() -> None:
    insts = dockerfile.parse('FROM x\nHEALTHCHECK --interval=1m30s --retries=0 CMD ["curl", "-f", "http://l/"]\n'
                             "HEALTHCHECK NONE\nonbuild copy . /app\n")
    assert dockerfile.healthcheck(insts[1]) == {"Test": ["CMD", "curl", "-f", "http://l/"],
                                                "Interval": 90_000_000_000}
    assert dockerfile.healthcheck(insts[2]) == {"Test": ["NONE"]}
    assert dockerfile.trigger(insts[3].args, 1).cmd == "COPY"
    for text, message in (("HEALTHCHECK --interval=1ns CMD true", "cannot be less than 1ms"),
                          ("HEALTHCHECK --retries=-1 CMD true", "--retries must be a non-negative number"),
                          ("HEALTHCHECK --timeout=2s NONE", "HEALTHCHECK NONE takes no options"),
                          ("HEALTHCHECK --color=red CMD true", "unsupported flag '--color=red'"),
                          ("ONBUILD ONBUILD RUN true", "ONBUILD isn't allowed as an ONBUILD trigger"),
                          ("ONBUILD NOPE", "unsupported instruction 'NOPE'")):
        with pytest.raises(BuildError, match=message):
            dockerfile.healthcheck(dockerfile.parse(f"FROM x\n{text}\n")[1])


def test_sandbox_resolv_conf_skips_loopback_stubs() -> None:
    stub = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch corp.example\n"
    upstream = "nameserver 192.0.2.53\nnameserver ::1\nnameserver 2001:db8::53\n"
    assert resolv_conf(stub, upstream) == ("options edns0 trust-ad\nsearch corp.example\n"
                                           "nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
    assert resolv_conf("nameserver 198.51.100.1\n", upstream) == "nameserver 198.51.100.1\n"
    assert resolv_conf(stub, "") == "options edns0 trust-ad\nsearch corp.example\n"


def test_heredocs_are_read_to_their_delimiter() -> None:
    [_, run, copy] = dockerfile.parse("FROM x\nRUN python3 <<-PY\n\tprint(1)\n\tPY\nCOPY <<a <<'b' /d/\nA\na\nB\nb\n")
    assert [(h.name, h.body, h.strip_tabs) for h in run.heredocs] == [("PY", "print(1)\n", True)]
    assert [(h.name, h.body, h.quoted) for h in copy.heredocs] == [("a", "A\n", False), ("b", "B\n", True)]
    assert run.title() == "RUN python3 <<-PY" and str(run) == "RUN python3 <<-PY\nprint(1)\nPY"
    with pytest.raises(BuildError, match=r"line 2: RUN: the here-document <<EOF is not terminated by a EOF line"):
        dockerfile.parse("FROM x\nRUN <<EOF\necho\n")
