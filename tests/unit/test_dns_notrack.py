"""The DNS server's NOTRACK rules (proxy/dns_notrack.py): which addresses, what rules, which table."""
from __future__ import annotations

from proxy import dns_notrack


def test_table_is_named_after_the_first_address_and_loopback_is_left_tracked() -> None:
    listen = [("10.96.0.10", 53), ("127.0.0.1", 5353)]
    assert dns_notrack.table_name(listen) == "pkube-dns-10-96-0-10-53"
    assert dns_notrack.tracked_free(listen) == [("10.96.0.10", 53)]
    assert dns_notrack.ensure([("127.0.0.1", 5353)]) == ""  # nothing to exempt: no table at all


def test_queries_and_replies_of_every_served_address_are_untracked_in_both_raw_hooks() -> None:
    script = dns_notrack.ruleset("pkube-dns-t", [("10.96.0.10", 53), ("10.96.0.11", 5353)])
    # declared, deleted and made again in one transaction: applying twice leaves one copy
    assert script.startswith("table ip pkube-dns-t {}\ndelete table ip pkube-dns-t\ntable ip pkube-dns-t {")
    prerouting, output = script.split("chain output")
    assert "type filter hook prerouting priority raw;" in prerouting
    assert "type filter hook output priority raw;" in output
    for proto in ("udp", "tcp"):
        assert f"ip daddr 10.96.0.11 {proto} dport 5353 notrack" in prerouting
        assert f"ip daddr 10.96.0.10 {proto} dport 53 notrack" in output  # the host's own queries
        assert f"ip saddr 10.96.0.10 {proto} sport 53 notrack" in output  # the replies
        assert "sport" not in prerouting
