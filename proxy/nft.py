"""Applying a ruleset to the kernel with one atomic nft transaction, listing and deleting the table.

Transactions go through an in-process libnftables context (libnft.py: it keeps nft's cache of the table
between them); listings and the table's deletion, which are rare, run the `nft` command.

A full transaction (at start and every sync period) declares the table (a no-op when present), flushes
every rule and Service map of it, re-adds every chain, rule and map element, and deletes the chains and
sets the new ruleset no longer has. In between, an incremental (partial) transaction rewrites only the
chains that changed and adds or deletes only the map elements that changed, as kube-proxy's partial syncs
do: its size follows the change, not the number of Services. Either way the kernel
commits all of it or none, so there is never a moment where a Service has no rules. Session-affinity
sets are never flushed: their elements (client -> endpoint) survive rule rewrites.
"""
from __future__ import annotations

import json
import subprocess
from typing import Iterable

from . import libnft
from .rules import ELEMENT_MAPS, HAIRPIN_SET, REJECT_CHAIN, Ruleset, hairpin_elements, map_elements, valid_table_name

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


def _chain_commands(t: str, ruleset: Ruleset, chains: Iterable[str], new_chains: set[str]) -> list[str]:
    """Flat `add chain/rule` commands (the flat form costs nft about half the time of the block form).

    Every chain is declared before any rule is added, so that a rule may jump to a chain that comes later
    (a new Service's svc chain to its ep chains). Chains not in `new_chains` exist already and are expected
    to have been flushed.
    """
    declarations, rules_out = [], []
    for name in chains:
        rules = ruleset.chains[name]
        if rules and rules[0].startswith("type "):  # a base chain: its hook line is part of the chain
            declarations.append(f"add chain ip {t} {name} {{ {rules[0]} }}")
            rules = rules[1:]
        elif name in new_chains:
            declarations.append(f"add chain ip {t} {name}")
        rules_out += [f"add rule ip {t} {name} {r}" for r in rules]
    return declarations + rules_out


def transaction(ruleset: Ruleset, existing_chains: set[str], existing_sets: set[str]) -> str:
    """A full rewrite: the `nft -f` script that turns the table holding `existing_*` into exactly `ruleset`."""
    t = ruleset.table
    parts = [f"table ip {t} {{}}", f"flush table ip {t}", ruleset.render().rstrip("\n"),
             f"flush set ip {t} {HAIRPIN_SET}"]
    if ruleset.hairpin:
        parts.append(f"add element ip {t} {HAIRPIN_SET} {hairpin_elements(ruleset.hairpin)}")
    for name in ELEMENT_MAPS:
        parts.append(f"flush map ip {t} {name}")
        if ruleset.elements[name]:
            parts.append(f"add element ip {t} {name} {map_elements(ruleset.elements[name])}")
    # Stale chains are unreferenced once the rules and maps are flushed; sets only once no rule mentions them.
    parts += [f"delete chain ip {t} {c}" for c in sorted(existing_chains - set(ruleset.chains))]
    parts += [f"delete set ip {t} {s}" for s in sorted(existing_sets - set(ruleset.sets))]
    return "\n".join(parts) + "\n"


def incremental(old: Ruleset, new: Ruleset) -> str | None:
    """The script that turns the table from `old` (what the kernel holds) into `new`, touching only what
    differs: one endpoint change rewrites a few small chains and map elements, whatever the table's size.
    None when there is nothing to do."""
    t = new.table
    changed = [c for c, rules in new.chains.items() if old.chains.get(c) != rules]
    added_sets = [s for s in new.sets if s not in old.sets]
    gone_chains = sorted(set(old.chains) - set(new.chains))
    gone_sets = sorted(set(old.sets) - set(new.sets))
    hairpin_added, hairpin_gone = new.hairpin - old.hairpin, old.hairpin - new.hairpin
    element_gone: list[tuple[str, list[str]]] = []
    element_added: list[tuple[str, dict[str, str]]] = []
    for m in ELEMENT_MAPS:
        before, after = old.elements[m], new.elements[m]
        if before is after or before == after:
            continue
        # A key whose verdict changes is deleted and added again in the same transaction.
        gone = [k for k, v in before.items() if after.get(k) != v]
        added = {k: v for k, v in after.items() if before.get(k) != v}
        if gone:
            element_gone.append((m, sorted(gone)))
        if added:
            element_added.append((m, added))
    if not (changed or added_sets or gone_chains or gone_sets or hairpin_added or hairpin_gone
            or element_gone or element_added):
        return None
    parts = [f"flush chain ip {t} {c}" for c in changed if c in old.chains]
    parts += [f"add set ip {t} {name} {{ {new.sets[name]} }}" for name in added_sets]
    # New chains are declared before any rule or map element may jump to them.
    new_chains = [c for c in changed if c not in old.chains]
    parts += _chain_commands(t, new, changed, set(new_chains))
    parts += [f"delete element ip {t} {m} {{ {', '.join(keys)} }}" for m, keys in element_gone]
    parts += [f"add element ip {t} {m} {map_elements(entries)}" for m, entries in element_added]
    if hairpin_gone:
        parts.append(f"delete element ip {t} {HAIRPIN_SET} {hairpin_elements(hairpin_gone)}")
    if hairpin_added:
        parts.append(f"add element ip {t} {HAIRPIN_SET} {hairpin_elements(hairpin_added)}")
    # Whatever referred to the stale chains was rewritten or deleted above, in the same transaction; flushing
    # them all first drops the references among themselves (a Service's svc chain jumps to its ep chains).
    parts += [f"flush chain ip {t} {c}" for c in gone_chains]
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


def proxy_tables() -> set[str]:
    """The `ip` tables that hold a pkube proxy ruleset (recognised by its reject-no-endpoints chain)."""
    items = json.loads(_run(["-j", "list", "chains", "ip"])).get("nftables", [])
    return {item["chain"]["table"] for item in items
            if "chain" in item and item["chain"].get("name") == REJECT_CHAIN}


def apply_script(script: str) -> None:
    """One atomic transaction, through the process's long-lived libnftables context (see libnft.py)."""
    try:
        libnft.context().run(script)
    except libnft.LibNftError as e:
        raise NftError(f"nft transaction failed: {e}") from None


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
