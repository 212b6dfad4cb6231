"""`pkube dns`: the cluster DNS server, over UDP and TCP.

    pkube dns --kubeconfig FILE [--listen 10.96.0.10:53 ...] [--cluster-domain cluster.local]
              [--upstream HOST[:PORT] ...] [--forward-timeout 2s] [--address-interface lo] [--no-notrack]
    pkube dns --cleanup [--listen ...]

Cluster names are answered from Services and EndpointSlices (see proxy/dns.py); other names are forwarded to
the host's resolvers (the nameservers of /etc/resolv.conf, or --upstream) and a SERVFAIL comes back
quickly when they do not answer in time.

How pods reach the DNS ClusterIP: a --listen address that is not on this host yet (the default
10.96.0.10) is added as a /32 to --address-interface (`lo`; kube-proxy's IPVS mode does the same with
its dummy kube-ipvs0), so it is a local address: pods send to it through their default gateway, the
node, and the host itself can query it too. No DNAT rule is involved, so the DNS server does not depend
on the service proxy. The addresses it added are removed when it stops.

Queries to those addresses and their replies bypass conntrack (NOTRACK rules in a table of their own, see
dns_notrack.py: the parallel A/AAAA race), unless --no-notrack. The table goes when the server stops;
`--cleanup` removes one a killed server left.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import struct
from pathlib import Path
from typing import Any

from dnslib import QTYPE, DNSRecord

from pklib.client import Client
from pklib.component import (ConfigError, add_client_flags, make_client as _make_client, run_until_signalled,
                             setup_logging)
from pklib.errors import ConnectionFailed
from pklib.informer import Handler, InformerFactory
from pklib.kubeconfig import KubeconfigError
from pklib.resources import ENDPOINTSLICES, SERVICES

from . import dns, dns_notrack
from .main import duration
from .local_addresses import LocalAddressError, LocalAddresses
from .nft import NftError
from .slices import is_ipv4
from pklib.timeouts import wait_for

log = logging.getLogger("dns")

UDP_LIMIT = 512  # without EDNS0, a UDP answer must fit in 512 bytes
CACHE_ENTRIES = 50_000


def address(text: str, default_port: int = 53) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535 or not is_ipv4(host):
        raise argparse.ArgumentTypeError(f"expected IPv4[:PORT], got {text!r}")
    return host, int(port)


def domain(text: str) -> str:
    try:
        return dns.normalize_domain(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pkube dns", description="Serves cluster DNS.")
    add_client_flags(p)
    p.add_argument("--listen", type=address, action="append",
                   help="IPv4[:PORT] to serve on, UDP and TCP; repeatable (default 10.96.0.10:53)")
    p.add_argument("--cluster-domain", type=domain, default="cluster.local.")
    p.add_argument("--upstream", type=address, action="append",
                   help="resolver for other names, IPv4[:PORT]; repeatable (default: from --resolv-conf)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf")
    p.add_argument("--forward-timeout", type=duration, default=2.0, help="per upstream, e.g. 2s")
    p.add_argument("--ttl", type=int, default=dns.DEFAULT_TTL)
    p.add_argument("--address-interface", default="lo",
                   help="interface that receives the --listen addresses not yet on this host")
    p.add_argument("--notrack", action=argparse.BooleanOptionalAction, default=True,
                   help="exempt queries to the --listen addresses and their replies from conntrack")
    p.add_argument("--cleanup", action="store_true",
                   help="remove the NOTRACK rules of these --listen addresses (left by a killed server) and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def resolv_conf_upstreams(path: str, own: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Nameservers of a resolv.conf, minus our own addresses (forwarding to ourselves would loop)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        log.warning("cannot read %s (%s): names outside the cluster will get SERVFAIL", path, e.strerror)
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and is_ipv4(parts[1]) \
                and (parts[1], 53) not in own:
            out.append((parts[1], 53))
    return out


def udp_limit(request: DNSRecord) -> int:
    for rr in request.ar:
        if rr.rtype == QTYPE.OPT:
            return max(UDP_LIMIT, int(rr.rclass))  # EDNS0: the client's buffer size
    return UDP_LIMIT


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future[bytes]):
        self.done = done

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


class DnsServer:
    def __init__(self, client: Client, config: argparse.Namespace, upstreams: list[tuple[str, int]]):
        self.config = config
        self.upstreams = upstreams
        self.informers = InformerFactory(client)
        self.services = self.informers.informer(SERVICES)
        self.slices = self.informers.informer(ENDPOINTSLICES)
        self._zone: dns.Zone | None = None
        # Answers for cluster names by query packet minus its id: hot names cost a dict lookup, not a
        # parse and an encode. Emptied whenever the zone changes.
        self._cache: dict[tuple[bytes, bool], bytes] = {}
        for inf in (self.services, self.slices):
            inf.add_handler(Handler(self._changed, lambda o, n: self._changed(n), self._changed))

    def _changed(self, _: Any) -> None:
        self._zone = None  # rebuilt on the next query: a burst of changes costs one rebuild
        self._cache = {}

    @property
    def zone(self) -> dns.Zone:
        if self._zone is None:
            self._zone = dns.build_zone(self.services.store.list(), self.slices.store.list(),
                                        self.config.cluster_domain)
        return self._zone

    def cached(self, data: bytes, udp: bool) -> bytes | None:
        """The answer to a query asked before (same packet but for its id), if the zone did not change since."""
        cached = self._cache.get((data[2:], udp))
        return None if cached is None else data[:2] + cached

    async def resolve(self, data: bytes, udp: bool) -> bytes:
        """The reply to one query packet; b"" (no reply) for garbage."""
        cached = self.cached(data, udp)
        if cached is not None:
            return cached
        try:
            request = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - dnslib raises assorted errors on malformed packets
            return b""
        if not request.questions:
            return b""
        zone = self.zone
        if not dns.is_cluster_name(str(request.q.qname).lower(), zone):
            return await self.forward(request, data)
        try:
            reply = dns.answer(zone, request, self.config.ttl)
            out = reply.pack()
        except Exception:  # noqa: BLE001 - e.g. a name from an object that cannot be encoded: answer, don't die
            log.exception("cannot answer %s", request.q.qname)
            return dns.servfail(request).pack()
        if udp:
            out = dns.truncate_for_udp(reply, out, udp_limit(request))
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache = {}
        self._cache[(data[2:], udp)] = out[2:]
        return out

    async def forward(self, request: DNSRecord, data: bytes) -> bytes:
        """Ask each upstream in turn; the first answer wins, SERVFAIL when none answers in time."""
        loop = asyncio.get_running_loop()
        for host, port in self.upstreams:
            done: asyncio.Future[bytes] = loop.create_future()
            transport = None
            try:
                transport, _ = await loop.create_datagram_endpoint(lambda: _Upstream(done), remote_addr=(host, port))
                transport.sendto(data)
                answer = await wait_for(done, self.config.forward_timeout)
                if answer[:2] == data[:2]:  # same query id
                    return answer
            except (OSError, asyncio.TimeoutError) as e:
                log.debug("upstream %s:%d failed for %s: %r", host, port, request.q.qname, e)
            finally:
                if transport is not None:
                    transport.close()
        return dns.servfail(request).pack()


class _UdpServer(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cached = self.server.cached(data, udp=True)
        if cached is not None and self.transport is not None:
            self.transport.sendto(cached, addr)  # the hot path: no task, no parsing
            return
        task = asyncio.ensure_future(self._handle(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, data: bytes, addr: Any) -> None:
        out = await self.server.resolve(data, udp=True)
        if out and self.transport is not None:
            self.transport.sendto(out, addr)


async def _handle_tcp(server: DnsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                size = struct.unpack("!H", await wait_for(reader.readexactly(2), 10))[0]
                data = await wait_for(reader.readexactly(size), 10)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                return
            out = await server.resolve(data, udp=False)
            if not out:
                return
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    finally:
        writer.close()


def make_client(config: argparse.Namespace) -> Client:
    return _make_client(config, "pkube-dns")


async def run(config: argparse.Namespace, ready: asyncio.Event) -> None:
    """Serve until cancelled; `ready` is set once the caches are filled and every socket is bound."""
    listen = config.listen or [("10.96.0.10", 53)]
    if config.cleanup:
        await asyncio.to_thread(dns_notrack.remove, listen)
        ready.set()
        return
    upstreams = config.upstream or resolv_conf_upstreams(config.resolv_conf, listen)
    client = make_client(config)
    server = DnsServer(client, config, upstreams)
    local = LocalAddresses(config.address_interface)
    closers: list[Any] = []
    notrack_table = ""
    loop = asyncio.get_running_loop()
    try:
        try:
            await asyncio.to_thread(local.ensure, [host for host, _ in listen])
        except LocalAddressError as e:
            raise ConfigError(str(e)) from None
        if config.notrack:
            # once every address is ours (the table is named after them), and before the first query can come:
            # no query may open a conntrack flow
            try:
                notrack_table = await asyncio.to_thread(dns_notrack.ensure, listen)
            except NftError as e:  # DNS still works, only exposed to the conntrack race again
                log.warning("cannot exempt DNS traffic from conntrack: %s", e)
        server.informers.start()
        await server.informers.wait_synced()
        for host, port in listen:
            try:
                transport, proto = await loop.create_datagram_endpoint(lambda: _UdpServer(server),
                                                                       local_addr=(host, port))
                closers.append(transport)
                tcp = await asyncio.start_server(lambda r, w: _handle_tcp(server, r, w), host, port)
                closers.append(tcp)
            except OSError as e:
                raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
        log.info("serving %s on %s; upstreams %s", config.cluster_domain,
                 ", ".join(f"{h}:{p}" for h, p in listen), ", ".join(f"{h}:{p}" for h, p in upstreams) or "none")
        ready.set()
        await asyncio.Event().wait()
    finally:
        for c in closers:
            c.close()
        await server.informers.stop()
        await client.close()
        if notrack_table:
            try:
                await asyncio.to_thread(dns_notrack.remove, listen)
            except NftError as e:
                log.warning("cannot remove the NOTRACK rules: %s", e)
        await asyncio.to_thread(local.release)


# What ends the process with one `error: ...` line instead of a traceback (also used by `pkube group`).
REPORT: tuple[type[BaseException], ...] = (ConfigError, KubeconfigError, ConnectionFailed, NftError, OSError)


def main(argv: list[str] | None = None) -> int:
    config = build_parser().parse_args(argv)
    setup_logging(config.verbose)
    return run_until_signalled(lambda: run(config, asyncio.Event()), report=REPORT)  # on uvloop: answers faster
