"""What the proxy's table holds, kept per Service, so that a partial sync costs only the changed Services.

The table is the base chains plus one `rules.Fragment` per Service. A partial sync replaces the
fragments of the Services that changed: `partial()` gives two small rulesets -- the old and the new
fragments of just those Services -- whose difference (`nft.incremental`) is the whole transaction,
however many other Services there are. The hairpin set is shared (one endpoint may serve several
Services), so its elements are reference-counted here. Pure: no kernel involved.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

from .rules import Fragment, Ruleset, assemble, udp_targets, valid_table_name


class TableState:
    def __init__(self, table: str) -> None:
        self.table = valid_table_name(table)
        self.fragments: dict[str, Fragment] = {}  # service key "ns/name" -> what it has in the table
        self._hairpin: Counter[str] = Counter()

    def whole(self) -> Ruleset:
        return assemble(self.table, self.fragments.values())

    def replace(self, fragments: Mapping[str, Fragment]) -> None:
        """The table now holds exactly these fragments (after a full sync)."""
        self.fragments = dict(fragments)
        self._hairpin = Counter(ip for f in fragments.values() for ip in f.hairpin)

    def partial(self, updates: Mapping[str, Fragment | None]) -> tuple[Ruleset, Ruleset]:
        """(before, after) for the updated Services only (None: the Service is gone).

        Their hairpin sets hold just the addresses that leave and join the table's set, so that
        `nft.incremental(before, after)` touches nothing else.
        """
        old = [self.fragments[k] for k in updates if k in self.fragments]
        new = [f for f in updates.values() if f is not None]
        before, after = assemble(self.table, old), assemble(self.table, new)
        before.hairpin, after.hairpin = self._hairpin_changes(old, new)
        return before, after

    def update(self, updates: Mapping[str, Fragment | None]) -> None:
        """The partial transaction for `updates` was committed."""
        for key, frag in updates.items():
            old = self.fragments.pop(key, None)
            for ip in old.hairpin if old is not None else ():
                self._hairpin[ip] -= 1
                if self._hairpin[ip] <= 0:
                    del self._hairpin[ip]
            if frag is not None:
                self.fragments[key] = frag
                self._hairpin.update(frag.hairpin)

    def _hairpin_changes(self, old: Iterable[Fragment], new: Iterable[Fragment]) -> tuple[set[str], set[str]]:
        delta: Counter[str] = Counter()
        for f in old:
            delta.subtract(f.hairpin)
        for f in new:
            delta.update(f.hairpin)
        gone, added = set(), set()
        for ip, d in delta.items():
            now = self._hairpin.get(ip, 0)
            if now > 0 >= now + d:
                gone.add(ip)
            elif now <= 0 < now + d:
                added.add(ip)
        return gone, added


def stale_udp(before: Ruleset, after: Ruleset) -> set[tuple[str, int, str]]:
    """UDP (address, port, endpoint) flows that lost their endpoint between two rulesets."""
    return (udp_targets(before.ports) | before.udp_flows) - (udp_targets(after.ports) | after.udp_flows)
