"""Applying a ruleset to the kernel with one atomic `nft -f` transaction, listing and deleting the table.

A full transaction (at start and every sync period) declares the table (a no-op when present), flushes
every rule of it, re-adds every chain and rule, and deletes the chains and sets the new ruleset no longer
has. In between, an incremental transaction rewrites only the chains that changed. Either way the kernel
commits all of it or none, so there is never a moment where a Service has no rules. Session-affinity
sets are never flushed: their elements (client -> endpoint) survive rule rewrites.
"""
from __future__ import annotations

import json
import subprocess

from .rules import HAIRPIN_SET, Ruleset, hairpin_elements, valid_table_name

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
    """A full rewrite: the `nft -f` script that turns the table holding `existing_*` into exactly `ruleset`."""
    t = ruleset.table
    parts = [f"table ip {t} {{}}", f"flush table ip {t}", ruleset.render().rstrip("\n"),
             f"flush set ip {t} {HAIRPIN_SET}"]
    if ruleset.hairpin:
        parts.append(f"add element ip {t} {HAIRPIN_SET} {hairpin_elements(ruleset.hairpin)}")
    # Stale chains are unreferenced once the table is flushed; sets only once no rule mentions them.
    parts += [f"delete chain ip {t} {c}" for c in sorted(existing_chains - set(ruleset.chains))]
    parts += [f"delete set ip {t} {s}" for s in sorted(existing_sets - set(ruleset.sets))]
    return "\n".join(parts) + "\n"


def incremental(old: Ruleset, new: Ruleset) -> str | None:
    """The script that turns the table from `old` (what the kernel holds) into `new`, touching only the
    chains that differ: one endpoint change rewrites a few small chains, not the whole table. None when
    there is nothing to do."""
    t = new.table
    changed = [c for c, rules in new.chains.items() if old.chains.get(c) != rules]
    added_sets = [s for s in new.sets if s not in old.sets]
    gone_chains = sorted(set(old.chains) - set(new.chains))
    gone_sets = sorted(set(old.sets) - set(new.sets))
    hairpin_added, hairpin_gone = new.hairpin - old.hairpin, old.hairpin - new.hairpin
    if not (changed or added_sets or gone_chains or gone_sets or hairpin_added or hairpin_gone):
        return None
    parts = [f"flush chain ip {t} {c}" for c in changed if c in old.chains]
    # New chains first, so that the rules added next may jump to them.
    ordered = [c for c in changed if c not in old.chains] + [c for c in changed if c in old.chains]
    parts += new.commands(ordered, added_sets, {c for c in changed if c not in old.chains})
    if hairpin_gone:
        parts.append(f"delete element ip {t} {HAIRPIN_SET} {hairpin_elements(hairpin_gone)}")
    if hairpin_added:
        parts.append(f"add element ip {t} {HAIRPIN_SET} {hairpin_elements(hairpin_added)}")
    # Whatever referred to the stale chains was rewritten above, in the same transaction.
    parts += [f"delete chain ip {t} {c}" for c in gone_chains]
    parts += [f"delete set ip {t} {s}" for s in gone_sets]
    return "\n".join(parts) + "\n"


def current_objects(table: str) -> tuple[set[str], set[str]]:
    """(chains, sets) the table has now; empty when it does not exist.

    Listed per kind, tersely (no rules, no set elements): listing the whole table would cost 10-30x more.
    """
    valid_table_name(table)
    chains: set[str] = set()
    sets: set[str] = set()
    for kind, key, args in (("chains", "chain", ["-j"]), ("sets", "set", ["-j", "-t"])):
        for item in json.loads(_run([*args, "list", kind, "ip"])).get("nftables", []):
            obj = item.get(key)
            if obj and obj.get("table") == table:
                (chains if key == "chain" else sets).add(obj["name"])
    return chains, sets


def apply_script(script: str) -> None:
    _run(["-f", "-"], script)


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
