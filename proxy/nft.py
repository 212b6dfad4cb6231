"""Applying a ruleset to the kernel with one atomic `nft -f` transaction, listing and deleting the table.

A transaction declares the table (a no-op when present), flushes every rule of it, re-adds every chain
and rule, and deletes the chains and sets the new ruleset no longer has. The kernel commits all of it or
none, so there is never a moment where a Service has no rules. Sets are not flushed: the elements of the
session-affinity sets (client -> endpoint) survive rule rewrites.
"""
from __future__ import annotations

import json
import subprocess

from .rules import Ruleset, valid_table_name

NFT_TIMEOUT = 30.0


class NftError(Exception):
    pass


def _run(args: list[str], script: str | None = None) -> str:
    try:
        proc = subprocess.run(["nft", *args], input=script.encode() if script is not None else None,
                              capture_output=True, timeout=NFT_TIMEOUT)
    except FileNotFoundError:
        raise NftError("the nft command is not installed (Debian package nftables)") from None
    except subprocess.TimeoutExpired:
        raise NftError(f"nft {' '.join(args)} did not finish in {NFT_TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise NftError(f"nft {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()[:2000]}")
    return proc.stdout.decode()


def transaction(ruleset: Ruleset, existing_chains: set[str], existing_sets: set[str]) -> str:
    """The `nft -f` script that turns the table holding `existing_*` into exactly `ruleset`."""
    t = ruleset.table
    parts = [f"table ip {t} {{}}", f"flush table ip {t}", ruleset.text.rstrip("\n")]
    # Stale chains are unreferenced once the table is flushed; sets only once no rule mentions them.
    parts += [f"delete chain ip {t} {c}" for c in sorted(existing_chains - ruleset.chains)]
    parts += [f"delete set ip {t} {s}" for s in sorted(existing_sets - ruleset.sets)]
    return "\n".join(parts) + "\n"


def current_objects(table: str) -> tuple[set[str], set[str]]:
    """(chains, sets) the table has now; empty when it does not exist."""
    valid_table_name(table)
    try:
        out = _run(["-j", "list", "table", "ip", table])
    except NftError as e:
        if "No such file or directory" in str(e):
            return set(), set()
        raise
    chains, sets = set(), set()
    for item in json.loads(out).get("nftables", []):
        if "chain" in item:
            chains.add(item["chain"]["name"])
        elif "set" in item:
            sets.add(item["set"]["name"])
    return chains, sets


def apply(ruleset: Ruleset, existing_chains: set[str], existing_sets: set[str]) -> None:
    _run(["-f", "-"], transaction(ruleset, existing_chains, existing_sets))


def list_table(table: str) -> str:
    """`nft list table ip T` text, or "" when the table does not exist."""
    valid_table_name(table)
    try:
        return _run(["list", "table", "ip", table])
    except NftError as e:
        if "No such file or directory" in str(e):
            return ""
        raise


def delete_table(table: str) -> None:
    """Idempotent: declaring the table first makes the delete valid even when it does not exist."""
    valid_table_name(table)
    _run(["-f", "-"], f"table ip {table} {{}}\ndelete table ip {table}\n")
