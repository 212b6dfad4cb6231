"""`pkctl cluster up|down|status|logs|backup|restore|token|join|node`: a local cluster (like minikube, kind, k3s),
machines joining one, and nodes added to and removed from it."""
from __future__ import annotations

import argparse
import copy
import fcntl
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import yaml

from pkctl.cluster import backup, images, kubemerge, procs
from pkctl.cluster import prereqs as prereq_checks
from pkctl.cluster.components import (BY_NAME, COMPONENTS, all_names, api_get, apiserver_serves_tls, components,
                                     node_ready)
from pkctl.cluster.backup import BackupError
from pkctl.cluster.home import (ClusterConfig, Home, HomeError, append_workers, make_room_for_nodes, resolve,
                                write_json)
from pkctl.cluster.join import JoinError
from pklib import validation
from pklib.api.timefmt import parse_duration
from pkctl.cluster.report import print_next_steps, status_report
from pkctl.errors import as_command_error
from pklib.flagtypes import int_in_range
from pkctl.main import CommandError

DEFAULT_WAIT = 120.0
DOWN_TIMEOUT = 90.0  # the supervisor gives each component 10 s of grace, in reverse order


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="run a local pkube cluster (one or more nodes and control planes)")
    csub = p.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND", required=True)

    def home_arg(q: argparse.ArgumentParser) -> None:
        q.add_argument("--home", help="directory the cluster lives in (default $PKUBE_HOME or /var/lib/pkube)")

    up = csub.add_parser("up", help="start the cluster (no-op when it is running)")
    home_arg(up)
    up.add_argument("--api-port", type=_port, help="API server port (default 6443 if free, for the default home)")
    up.add_argument("--install-deps", action="store_true", help="apt-get install missing system packages")
    up.add_argument("--merge-kubeconfig", action="store_true",
                    help="also add the cluster to ~/.kube/config as context pkube and switch to it")
    up.add_argument("--control-planes", type=_control_planes, default=None, metavar="N",
                    help="control-plane members (etcd, apiserver, controller-manager, scheduler each): 1 (default) "
                         "or 3 for a highly available control plane; fixed when the home is created")
    up.add_argument("--nodes", type=_nodes, default=None, metavar="N",
                    help="nodes (1 by default): the host runs the first, each other one runs in a network "
                         "namespace of its own, as kind runs them in containers; fixed when the home is created")
    up.add_argument("--wait-timeout", type=_seconds, default=DEFAULT_WAIT, metavar="S",
                    help=f"seconds to wait for every component to be healthy (default {DEFAULT_WAIT:.0f})")
    up.add_argument("--node-monitor-grace-period", type=_seconds, default=None, metavar="S",
                    help="seconds a node may stay silent before it is marked NotReady (default 40, as Kubernetes)")
    up.add_argument("--default-unreachable-toleration-seconds", type=_seconds, default=None, metavar="S",
                    help="seconds pods without their own toleration stay on an unreachable node before they are "
                         "evicted (default 300, as Kubernetes)")
    up.add_argument("--network-backend", choices=("host-gw", "vxlan", "auto"), default=None,
                    help="how the nodes route each other's pod CIDRs: host-gw (routes via the nodes' IPs, one L2 "
                         "network), vxlan (a VXLAN tunnel, as flannel's backend) or auto (default: host-gw when "
                         "every node is on a directly connected subnet, else vxlan); kept for later `up`s")
    up.add_argument("--cluster-signing-duration", type=_signing_duration, default=None, metavar="DURATION",
                    help="how long the certificates the controller-manager signs last (node client and serving "
                         "certificates; kubelets renew theirs at 70-90 %% of it), e.g. 720h (default 8760h, as "
                         "Kubernetes); kept for later `up`s")
    up.add_argument("--event-ttl", type=_event_ttl, default=None, metavar="DURATION",
                    help="how long Events are kept, e.g. 10m (default 1h, as Kubernetes); kept for later `up`s")
    up.add_argument("--compact", action=argparse.BooleanOptionalAction, default=None,
                    help="run the apiserver, the kubelet and the control-plane components in one process, as k3s "
                         "does: ~80 MB less memory, but a failure of one restarts them all; one control plane "
                         "only; kept for later `up`s (--no-compact goes back to a process each)")
    up.set_defaults(func=cmd_up)

    down = csub.add_parser("down", help="stop the cluster, keeping its data unless --purge")
    home_arg(down)
    down.add_argument("--purge", action="store_true", help="also delete the home: data, credentials, logs")
    down.set_defaults(func=cmd_down)

    bk = csub.add_parser("backup", help="save a snapshot of the cluster's etcd data into FILE")
    home_arg(bk)
    bk.add_argument("file", metavar="FILE", help="the snapshot file to write (must not exist)")
    bk.set_defaults(func=cmd_backup)

    rs = csub.add_parser("restore", help="make a new cluster home from a snapshot FILE, then start it")
    home_arg(rs)
    rs.add_argument("file", metavar="FILE", help="a snapshot written by `pkctl cluster backup`")
    rs.add_argument("--control-planes", type=_control_planes, default=None, metavar="N",
                    help="control-plane members of the new cluster (default 1)")
    rs.add_argument("--api-port", type=_port, help="API server port (default 6443 if free, for the default home)")
    rs.add_argument("--wait-timeout", type=_seconds, default=DEFAULT_WAIT, metavar="S",
                    help=f"seconds to wait for every component to be healthy (default {DEFAULT_WAIT:.0f})")
    rs.set_defaults(func=cmd_restore, install_deps=False, merge_kubeconfig=False, nodes=None, network_backend=None)

    st = csub.add_parser("status", help="components, their health, node readiness")
    home_arg(st)
    st.set_defaults(func=cmd_status)

    lg = csub.add_parser("logs", help="print a component's log")
    home_arg(lg)
    lg.add_argument("component", metavar="COMPONENT",
                    help="one of: " + ", ".join([*BY_NAME, "supervisor"])
                    + " (with several control planes: etcd-cp1, apiserver-cp1, control-plane-cp1, ...)")
    lg.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    lg.add_argument("--tail", type=_count, default=None, metavar="N", help="only the last N lines")
    lg.set_defaults(func=cmd_logs)

    tk = csub.add_parser("token", help="bootstrap tokens other machines join the cluster with")
    tsub = tk.add_subparsers(dest="token_command", metavar="SUBCOMMAND", required=True)
    tc = tsub.add_parser("create", help="create a token and print the `pkctl cluster join` command that uses it")
    home_arg(tc)
    tc.add_argument("--ttl", type=_ttl, default=24 * 3600.0, metavar="DURATION",
                    help="how long the token lasts, e.g. 24h (default), 30m; 0: it never expires")
    tc.add_argument("--description", default="", help="a note stored with the token")
    tc.add_argument("--control-plane", action="store_true",
                    help="also upload the control-plane certificates, encrypted, for 2h (kubeadm's upload-certs) "
                         "and print a join command for a control-plane member, with the key to decrypt them")
    tc.set_defaults(func=cmd_token_create)
    tl = tsub.add_parser("list", help="the bootstrap tokens")
    home_arg(tl)
    tl.set_defaults(func=cmd_token_list)
    td = tsub.add_parser("delete", help="delete bootstrap tokens (by ID or ID.SECRET)")
    home_arg(td)
    td.add_argument("tokens", nargs="+", metavar="TOKEN")
    td.set_defaults(func=cmd_token_delete)

    jn = csub.add_parser("join", help="make this machine a node of the cluster at URL (TLS bootstrap with a token)")
    home_arg(jn)
    jn.add_argument("server", metavar="URL", help="the cluster's API server, https://HOST:PORT")
    jn.add_argument("--token", required=True, help="a bootstrap token (`pkctl cluster token create`)")
    jn.add_argument("--ca-hash", required=True, metavar="sha256:HEX",
                    help="the hash of the cluster CA's public key: the server is trusted only if it matches")
    jn.add_argument("--node-name", default=None, help="the Node's name (default: this host's name); with "
                                                      "--control-plane: the etcd member's name")
    jn.add_argument("--control-plane", action="store_true",
                    help="join as a control-plane member (etcd member, apiserver, controller-manager, scheduler)")
    jn.add_argument("--certificate-key", default=None, metavar="HEX",
                    help="with --control-plane: the key that decrypts the uploaded control-plane certificates")
    jn.add_argument("--network-backend", choices=("host-gw", "vxlan", "auto"), default="auto",
                    help="how this node routes the other nodes' pod CIDRs: host-gw, vxlan, or auto (default: the "
                         "cluster's own backend)")
    jn.add_argument("--wait-timeout", type=_seconds, default=DEFAULT_WAIT, metavar="S",
                    help=f"seconds to wait for the node to be Ready (default {DEFAULT_WAIT:.0f})")
    jn.set_defaults(func=cmd_join)


    nd = csub.add_parser("node", help="add, remove or list the nodes of a local cluster")
    nsub = nd.add_subparsers(dest="node_command", metavar="SUBCOMMAND", required=True)
    na = nsub.add_parser("add", help="add nodes to the running cluster, each in a network namespace of its own "
                                     "(etcd and the API keep running; running pods are not touched)")
    home_arg(na)
    na.add_argument("--count", type=_add_count, default=1, metavar="K", help="how many nodes to add (default 1)")
    na.add_argument("--wait", type=_wait, default=DEFAULT_WAIT, metavar="DURATION",
                    help=f"how long to wait for the cluster and its new nodes to be Ready, e.g. 90s "
                         f"(default {DEFAULT_WAIT:.0f}s)")
    na.set_defaults(func=cmd_node_add)
    nr = nsub.add_parser("remove", help="drain a node, then stop it and remove it from the cluster and the host")
    home_arg(nr)
    nr.add_argument("name", metavar="NAME", help="the node (see `pkctl cluster node list`)")
    nr.add_argument("--force", action="store_true",
                    help="remove the node without draining it (its pods go with it)")
    nr.add_argument("--timeout", default="5m", metavar="DURATION",
                    help="how long draining may take (default 5m; 0s: no limit)")
    nr.add_argument("--wait", type=_wait, default=DEFAULT_WAIT, metavar="DURATION",
                    help=f"how long to wait for the cluster to be Ready again (default {DEFAULT_WAIT:.0f}s)")
    nr.set_defaults(func=cmd_node_remove)
    nl = nsub.add_parser("list", help="the cluster's nodes: role, InternalIP, network namespace, readiness")
    home_arg(nl)
    nl.set_defaults(func=cmd_node_list)


_port = int_in_range(1, 65535, "port number", show_range=True)


def _control_planes(text: str) -> int:
    if not text.isdigit() or int(text) not in (1, 3, 5):
        raise argparse.ArgumentTypeError(f"{text!r}: the control plane has 1, 3 or 5 members "
                                          "(etcd needs an odd number for a majority)")
    return int(text)


MAX_NODES = 16


def _nodes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_NODES:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of nodes is between 1 and {MAX_NODES}")
    return int(text)


def _add_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) < MAX_NODES:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of nodes to add is between 1 and {MAX_NODES - 1}")
    return int(text)


def _wait(text: str) -> float:
    try:
        value = parse_duration(text if not text.replace(".", "", 1).isdigit() else text + "s")
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0s and 1h")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 3600 seconds")
    return value


def _go_duration(least: float, too_short: str) -> Callable[[str], float]:
    """A flag's parser: a Go duration (as Kubernetes' own flags take them) of at least `least` seconds."""
    def parse(text: str) -> float:
        try:
            value = parse_duration(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{text!r}: {too_short}")
        return value
    return parse


_ttl = _go_duration(0, "a token's lifetime cannot be negative")
# `up --cluster-signing-duration` (the controller-manager's flag) and `up --event-ttl` (kube-apiserver's)
_signing_duration = _go_duration(10, "certificates must last at least 10s")
_event_ttl = _go_duration(1, "Events must live at least 1s")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of lines")
    return int(text)


def _home(args: argparse.Namespace) -> Home:
    return Home(resolve(args.home))


def _config(home: Home) -> ClusterConfig:
    with as_command_error(HomeError):
        return home.load_config()


def supervisor(home: Home) -> procs.ProcRecord | None:
    """The live supervisor of this home, if any."""
    rec = procs.ProcRecord.from_state(home.read_state("supervisor"))
    return rec if rec and rec.alive() else None


def cmd_up(args: argparse.Namespace) -> int:
    home = _home(args)
    running = supervisor(home)
    if running and (args.control_planes is not None or args.nodes is not None) and home.exists():
        with as_command_error(HomeError):
            home.prepare_check(args.control_planes, args.nodes)
    if running:
        print(f"pkube cluster at {home.root} is already running (supervisor pid {running.pid}); nothing to do.")
        if getattr(args, "compact", None) is not None and args.compact != _config(home).compact:
            print(f"  the layout changes at the next start: pkctl cluster down --home {home.root}, then `up` again "
                  f"with {'--compact' if args.compact else '--no-compact'}")
        print(f"  pkctl cluster status --home {home.root}")
        return 0
    joined = home.exists() and bool(_config(home).joined)
    problems = _prerequisites(joined)
    if problems and args.install_deps:
        print("Installing missing packages ...")
        try:
            prereq_checks.install(problems)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            raise CommandError(f"installing packages failed: {e}") from None
        problems = _prerequisites(joined)
    if problems:
        _print_problems(problems)
        raise CommandError("this machine is missing what a pkube cluster needs (see above)")
    if joined:  # a node of another machine's cluster: only start it again
        cfg = _config(home)
        if args.control_planes is not None or args.nodes is not None or args.api_port is not None:
            raise CommandError(f"{home.root} is a node joined to {cfg.joined}: --control-planes, --nodes and "
                               "--api-port do not apply")
        print(f"Starting node {cfg.node_name} of {cfg.joined} in {home.root}", flush=True)
        return 0 if _wait_ready(home, cfg, _start_supervisor(home), args.wait_timeout) else 1
    if (args.control_planes is not None or args.nodes is not None) and home.exists():
        with as_command_error(HomeError):
            home.prepare_check(args.control_planes, args.nodes)
    _check_ports(home, args.api_port)
    # `restore` ends here too; its flags have no node-loss timings (the home keeps the defaults)
    cfg = _prepare(home, args.api_port, args.control_planes, args.nodes,
                   getattr(args, "node_monitor_grace_period", None),
                   getattr(args, "default_unreachable_toleration_seconds", None), getattr(args, "network_backend", None),
                   getattr(args, "cluster_signing_duration", None), getattr(args, "event_ttl", None),
                   getattr(args, "compact", None))
    if args.merge_kubeconfig:
        try:
            kubemerge.merge(kubemerge.user_kubeconfig(), _kubeconfig_doc(home))
        except (kubemerge.MergeError, OSError) as e:
            raise CommandError(f"cannot merge the kubeconfig: {e}") from None
    print(f"Starting pkube cluster in {home.root}"
          + (f" with {cfg.control_planes} control planes" if cfg.members else "")
          + (f"{' and' if cfg.members else ' with'} {cfg.nodes} nodes ({cfg.pod_routing} pod network)"
             if cfg.workers else "")
          + (", compact (one process besides etcd)" if cfg.compact else ""))
    if args.merge_kubeconfig:
        print(f"  ✓ kubeconfig merged into {kubemerge.user_kubeconfig()} as context pkube (now current)")
    if not cfg.tls:
        print("  - TLS: this build's apiserver serves plain HTTP; pkctl works, kubectl will not "
              "(it sends no token over HTTP)", flush=True)
    images.ensure_bundled(home)
    sup = _start_supervisor(home)
    if not _wait_ready(home, cfg, sup, args.wait_timeout):
        return 1
    print_next_steps(home, cfg)
    return 0


def _prerequisites(node_only: bool) -> list[prereq_checks.Problem]:
    """What this machine misses to run a cluster (`node_only`: a joined node, which runs no etcd)."""
    return [p for p in prereq_checks.check() if not (node_only and p.package == prereq_checks.BINARIES["etcd"])]


def _prepare(home: Home, api_port: int | None, control_planes: int | None, nodes: int | None = None,
             grace: float | None = None, toleration: float | None = None,
             network_backend: str | None = None, signing_duration: float | None = None,
             event_ttl: float | None = None, compact: bool | None = None) -> ClusterConfig:
    tls = BY_NAME["apiserver"].available() and apiserver_serves_tls()
    try:
        return home.prepare(api_port, default_home=home.root == resolve(None) and api_port is None, tls=tls,
                            control_planes=control_planes, nodes=nodes, node_monitor_grace_period=grace,
                            default_unreachable_toleration_seconds=toleration, network_backend=network_backend,
                            cluster_signing_duration=signing_duration, event_ttl=event_ttl, compact=compact)
    except (HomeError, OSError) as e:
        raise CommandError(str(e)) from None


def _check_ports(home: Home, api_port: int | None) -> None:
    """Before anything is written: the ports this home recorded, or the one asked for, must be free
    (a new home picks the others free)."""
    if home.exists():
        cfg = _config(home)
        ports = {"etcd client": cfg.etcd_client_port, "etcd peer": cfg.etcd_peer_port, "apiserver": cfg.api_port}
        for m in cfg.members:
            ports.update({f"etcd client ({m.name})": m.etcd_client_port, f"etcd peer ({m.name})": m.etcd_peer_port,
                          f"apiserver ({m.name})": m.api_port})
    else:
        ports = {"apiserver": api_port} if api_port is not None else {}
    busy = prereq_checks.busy_ports(ports)
    if busy:
        _print_problems(busy)
        raise CommandError(f"ports the cluster at {home.root} needs are taken (see above)")


def _kubeconfig_doc(home: Home) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(home.kubeconfig.read_text())
    return doc


def _print_problems(problems: list[prereq_checks.Problem]) -> None:
    for p in problems:
        print(f"  ✗ {p.what}\n      fix: {p.fix}", file=sys.stderr)


def _start_supervisor(home: Home) -> subprocess.Popen[bytes]:
    with open(home.log("supervisor"), "ab") as logf:
        # A new session: the cluster outlives this command and the terminal it ran in.
        return subprocess.Popen(procs.python_module("pkctl.cluster.supervisor", "--home", str(home.root)),
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=home.root, start_new_session=True)


def _wait_ready(home: Home, cfg: ClusterConfig, sup: subprocess.Popen[bytes] | procs.ProcRecord, timeout: float,
                only: Collection[str] | None = None) -> bool:
    """Print each component (of `only`, if given) as it becomes healthy; False (with the reason) on failure or
    timeout. `sup`: the supervisor just started, or the running one (`cluster node add|remove`)."""
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    while True:
        pending = []
        for c in components(cfg):
            if only is not None and c.name not in only:
                continue
            st = home.read_state(c.name) or {}
            if st.get("supervisor") != sup.pid:
                st = {}  # written by an earlier run
            state = st.get("state", "Waiting")
            key = f"{state}/{st.get('restarts', 0)}"
            if shown.get(c.name) != key:
                if state == "Running":
                    hosts = [m.name for m in c.members if m.available()]
                    print(f"  ✓ {c.name} ready ({st.get('ready_after', 0):.1f}s)"
                          + (f": {', '.join(hosts)}" if hosts else ""), flush=True)
                elif state == "NotAvailable":
                    print(f"  - {c.name}: {st.get('detail')}", flush=True)
                elif state == "Restarting":
                    print(f"  ! {c.name} {st.get('detail')} (see `pkctl cluster logs {c.name} "
                          f"--home {home.root}`)", flush=True)
                shown[c.name] = key
            if state not in ("Running", "NotAvailable"):
                pending.append((c.name, st))
        if not pending:
            return True
        if sup.poll() is not None if isinstance(sup, subprocess.Popen) else not sup.alive():
            how = f" with {sup.returncode}" if isinstance(sup, subprocess.Popen) else ""
            print(f"error: the supervisor exited{how}:\n{_tail(home.log('supervisor'), 15)}", file=sys.stderr)
            return False
        if time.monotonic() > deadline:
            name, st = pending[0]
            print(f"error: {name} is not healthy after {timeout:.0f}s ({st.get('detail') or 'waiting'}); "
                  f"the cluster keeps trying. Last lines of its log:\n{_tail(home.log(name), 15)}\n"
                  f"Inspect: pkctl cluster status --home {home.root}; stop: pkctl cluster down --home {home.root}",
                  file=sys.stderr)
            return False
        time.sleep(0.1)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "    (no log yet)"


def cmd_down(args: argparse.Namespace) -> int:
    home = _home(args)
    if not home.exists():
        raise CommandError(f"no pkube cluster at {home.root}")
    try:
        cfg: ClusterConfig | None = home.load_config()
    except HomeError as e:
        if not args.purge:
            raise CommandError(str(e)) from None
        cfg = None  # a damaged home can still be removed: that is the way out the error suggests
    sup = supervisor(home)
    if sup and args.purge and cfg is not None and cfg.joined and cfg.members:
        _leave_etcd(home, cfg)
    if sup:
        print(f"Stopping pkube cluster in {home.root} ...", flush=True)
        _stop_supervisor(home, sup)
    else:
        print(f"pkube cluster in {home.root} is not running.")
    left = leftovers(home, cfg)
    if left:
        raise CommandError("still running after stop: " + ", ".join(left))
    if args.purge:
        try:
            if home.kubeconfig.exists() and kubemerge.unmerge(kubemerge.user_kubeconfig(), _kubeconfig_doc(home)):
                print(f"✓ removed context pkube from {kubemerge.user_kubeconfig()}")
        except (kubemerge.MergeError, OSError) as e:
            print(f"warning: {e}", file=sys.stderr)  # the user's own file: report, do not block the purge
        try:
            shutil.rmtree(home.root)
        except OSError as e:  # e.g. something still mounted below it
            raise CommandError(f"could not remove {home.root}: {e}") from None
        print(f"✓ removed {home.root}")
    elif sup:
        print(f"✓ stopped; data kept in {home.root} (`pkctl cluster up` brings it back, `--purge` deletes it)")
    return 0


def _stop_supervisor(home: Home, sup: procs.ProcRecord) -> None:
    """Stop the supervisor and, through it, every component (in reverse order); pods keep running."""
    sup.signal(signal.SIGTERM)
    if procs.wait_gone([sup], DOWN_TIMEOUT):
        raise CommandError(f"the supervisor (pid {sup.pid}) did not stop within {DOWN_TIMEOUT:.0f}s; "
                           f"see {home.log('supervisor')}")


def leftovers(home: Home, cfg: ClusterConfig | None) -> list[str]:
    """Stop recorded component processes that outlived their supervisor, then report what could not be stopped.

    Node-level state (containers, netns, nft tables) is undone by each component's `cleanup` hook
    (skipped without a readable config: then the hooks cannot know what to look for).
    """
    problems = []
    comps = components(cfg) if cfg is not None else COMPONENTS
    # every record the supervisor wrote, whatever the config says now
    names = {p.stem for p in home.run.glob("*.json") if p.stem != "supervisor"} | {c.name for c in comps}
    recs = {name: r for name in sorted(names) if (r := procs.ProcRecord.from_state(home.read_state(name)))}
    stale = [r for r in recs.values() if r.alive()]
    if stale:
        print(f"  stopping leftover processes: {', '.join(str(r.pid) for r in stale)}")
    for r in procs.terminate(stale, 10.0):
        problems.append(f"pid {r.pid}")
    for c in comps:
        if c.cleanup is not None and cfg is not None and c.available():
            problems += c.cleanup(home, cfg)
    if cfg is not None and (cfg.workers or cfg.node_bridge):  # the bridge stays after the last node is removed
        from pkctl.cluster import nodes  # netlink: only a multi-node cluster needs it
        problems += nodes.delete_network(cfg)
    return problems


def cmd_backup(args: argparse.Namespace) -> int:
    home = _home(args)
    cfg = _config(home)
    if supervisor(home) is None:
        raise CommandError(f"the cluster at {home.root} is not running: start it with "
                           f"`pkctl cluster up --home {home.root}`, then back it up")
    file = Path(args.file).absolute()
    with as_command_error(BackupError):
        status = backup.backup(home, cfg, file, lambda line: print(line, flush=True))
    print(f"✓ saved {file} ({status['totalKey']} keys at revision {status['revision']}, "
          f"{status['totalSize'] / 2**20:.1f} MiB); restore it with "
          f"`pkctl cluster restore {file} --home NEW_HOME`")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    home = _home(args)
    file = Path(args.file).absolute()
    if home.exists():
        raise CommandError(f"{home.root} already holds a cluster; restore into a new home (--home DIR), or remove "
                           f"this one first with `pkctl cluster down --purge --home {home.root}`")
    if not file.is_file():
        raise CommandError(f"{file}: no such file")
    with as_command_error(BackupError):
        status = backup.snapshot_status(file)
    print(f"Restoring {file} ({status['totalKey']} keys at revision {status['revision']}) into {home.root}")
    created = not home.root.exists()
    cfg = _prepare(home, args.api_port, args.control_planes)
    try:
        backup.restore(home, cfg, file, lambda line: print(line, flush=True))
    except (BackupError, OSError) as e:
        if created:  # leave nothing half made behind
            shutil.rmtree(home.root, ignore_errors=True)
        raise CommandError(str(e)) from None
    args.control_planes = None  # recorded in the new home
    return cmd_up(args)


def cmd_status(args: argparse.Namespace) -> int:
    home = _home(args)
    cfg = _config(home)
    ok = status_report(home, cfg, supervisor(home))
    return 0 if ok else 1


def cmd_logs(args: argparse.Namespace) -> int:
    home = _home(args)
    cfg = _config(home)
    known = [*all_names(cfg), "supervisor"]
    if args.component not in known:
        raise CommandError(f"unknown component {args.component!r}; one of: {', '.join(known)}")
    # a member of a control-plane process writes into that process's log, its lines tagged [name]
    # (with several control planes: the first member's process)
    # (a worker node's process tags its proxy-<node> member [proxy]: the name it runs under)
    host, tag = next(((c.name, m.launch or m.name) for c in components(cfg) for m in c.members
                      if m.name == args.component), (None, args.component))
    path = home.log(host or args.component)
    if not path.exists():
        raise CommandError(f"{args.component} has no log yet in {home.logs}")
    keep = MemberLines(tag) if host else None
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
        if keep is not None:
            lines = [line for line in lines if keep(line)]
        if args.tail is not None:
            lines = lines[-args.tail:] if args.tail else []
        sys.stdout.buffer.write(b"".join(lines))
        sys.stdout.flush()
        pending = b""
        while args.follow:  # until Ctrl-C, like `tail -f`
            chunk = f.read()
            if not chunk:
                time.sleep(0.2)
                continue
            *complete, pending = (pending + chunk).split(b"\n")
            out = [line + b"\n" for line in complete if keep is None or keep(line + b"\n")]
            sys.stdout.buffer.write(b"".join(out))
            sys.stdout.flush()
    return 0


class MemberLines:
    """Picks one member's lines out of a group log: its tagged lines, the lines that continue them
    (tracebacks), and what concerns the whole process (supervisor marks, the final error line)."""

    def __init__(self, name: str):
        self.tag, self.mine = f" [{name}] ".encode(), False

    def __call__(self, line: bytes) -> bool:
        if line[:4].isdigit() and b" [" in line[:60]:  # a log record: "<date> <time> LEVEL [member] ..."
            self.mine = self.tag in line[:80]
            return self.mine
        return self.mine or line.startswith((b"====", b"error:"))


def _running_cluster(args: argparse.Namespace) -> tuple[Home, ClusterConfig]:
    home = _home(args)
    cfg = _config(home)
    if cfg.joined:
        raise CommandError(f"{home.root} is a node joined to {cfg.joined}; run this on its control plane")
    if supervisor(home) is None:
        raise CommandError(f"the cluster at {home.root} is not running: start it with "
                           f"`pkctl cluster up --home {home.root}`")
    return home, cfg


def cmd_token_create(args: argparse.Namespace) -> int:
    from pkctl.cluster import join
    from pkctl.cluster import cpjoin
    home, cfg = _running_cluster(args)
    with as_command_error(JoinError):
        if args.control_plane:
            key = cpjoin.upload_certs(home, cfg)
            _, command = join.create_token(home, cfg, args.ttl, args.description, (cpjoin.CONTROL_PLANE_GROUP,))
            command += f" --control-plane --certificate-key {key}"
        else:
            _, command = join.create_token(home, cfg, args.ttl, args.description)
    print(command)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from pkctl.cluster import join
    from pkctl.cluster.report import human_duration, table
    home, cfg = _running_cluster(args)
    with as_command_error(JoinError):
        tokens = join.list_tokens(home, cfg)
    now = time.time()
    rows = [["TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION", "EXTRA GROUPS"]]
    for t in tokens:
        left = t.expires.timestamp() - now if t.expires else None
        rows.append([t.token, "<forever>" if left is None else ("<invalid>" if left <= 0 else human_duration(left)),
                     t.expires.strftime("%Y-%m-%dT%H:%M:%SZ") if t.expires else "<never>",
                     ",".join(t.usages) or "<none>", t.description or "<none>", ",".join(t.groups) or "<none>"])
    print(table(rows))
    return 0


def cmd_token_delete(args: argparse.Namespace) -> int:
    from pkctl.cluster import join
    home, cfg = _running_cluster(args)
    for token in args.tokens:
        with as_command_error(JoinError):
            token_id = join.delete_token(home, cfg, token)
        print(f"bootstrap token \"{token_id}\" deleted")
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    import socket
    from pkctl.cluster import join, pki
    from pklib.hostnet import host_ip
    home = _home(args)
    if supervisor(home) is not None or home.exists():
        raise CommandError(f"{home.root} already holds a cluster or a node; join with another --home, or remove "
                           f"it first with `pkctl cluster down --purge --home {home.root}`")
    with as_command_error(JoinError):
        join.check_join_args(args.server, args.token, args.ca_hash)
        key = _certificate_key(args)
    node = (args.node_name or socket.gethostname()).lower()
    if validation.is_dns1123_subdomain(node):
        raise CommandError(f"--node-name {node!r} is not a valid node name: "
                           + "; ".join(validation.is_dns1123_subdomain(node)))
    problems = _prerequisites(node_only=not args.control_plane)
    if problems:
        _print_problems(problems)
        raise CommandError("this machine is missing what a pkube node needs (see above)")
    with as_command_error(JoinError):
        info = join.discover(args.server, args.ca_hash)
        print(f"Joining {args.server} as {'control-plane member' if key else 'node'} {node}")
        print(f"  ✓ cluster CA verified ({args.ca_hash})", flush=True)
    if key:
        return _join_control_plane(home, args, node, info.ca_pem, key)
    with as_command_error(JoinError):
        key_pem, cert_pem = join.bootstrap_certificate(args.server, info.ca_pem, args.token, node,
                                                       lambda line: print(line, flush=True))
    print("  ✓ node client certificate issued", flush=True)
    created = not home.root.exists()
    try:
        node_ip = host_ip()
        # auto: the backend the cluster's nodes use (else the kubelet's own auto, per peer)
        backend = args.network_backend if args.network_backend != "auto" else info.network_backend or "auto"
        cfg = home.prepare_joined(args.server, node, node_ip, info.service_cidr, info.cluster_cidr,
                                  default_home=home.root == resolve(None), network_backend=backend,
                                  vxlan_vni=info.vxlan_vni)
        join.write_credentials(home, args.server, info.ca_pem, key_pem, cert_pem)
        # the kubelet API's first serving certificate, from a CA of this node's own, until the cluster signs
        # one (see join.py)
        serving = pki.ensure_kubelet(home.root / "kubelet-pki", node, [node_ip])
        home.pki.cert("kubelet").write_bytes(serving.cert("kubelet").read_bytes())
        pki.write_private(home.pki.key("kubelet"), serving.key("kubelet").read_bytes())
    except (HomeError, OSError) as e:
        if created:
            shutil.rmtree(home.root, ignore_errors=True)
        raise CommandError(str(e)) from None
    images.ensure_bundled(home)
    sup = _start_supervisor(home)
    if not _wait_ready(home, cfg, sup, args.wait_timeout):
        return 1
    print(f"This machine is node {node} of {args.server}. Status: pkctl cluster status --home {home.root}; "
          f"leave: pkctl cluster down --purge --home {home.root}")
    return 0


def _certificate_key(args: argparse.Namespace) -> bytes | None:
    from pkctl.cluster import cpjoin
    if not args.control_plane:
        if args.certificate_key is not None:
            raise JoinError("--certificate-key is for a control-plane member: add --control-plane")
        return None
    if args.certificate_key is None:
        raise JoinError("--control-plane needs --certificate-key (printed by `pkctl cluster token create "
                        "--control-plane`)")
    return cpjoin.check_certificate_key(args.certificate_key)


def _join_control_plane(home: Home, args: argparse.Namespace, name: str, ca_pem: bytes, key: bytes) -> int:
    """The control-plane half of `cluster join` (see pkctl/cluster/cpjoin.py); a failure after the etcd member
    was added removes it again."""
    from pkctl.cluster import cpjoin
    from pkctl.cluster.components import etcd_client_context
    from pklib.hostnet import host_ip
    with as_command_error(JoinError):
        files = cpjoin.download_certs(args.server, ca_pem, args.token, key)
    print("  ✓ control-plane certificates downloaded and decrypted", flush=True)
    created, member_id, sup = not home.root.exists(), "", None
    try:
        cfg = cpjoin.prepare_member_home(home, args.server, name, host_ip(), files,
                                         default_home=home.root == resolve(None))
        m, tls = cfg.members[0], etcd_client_context(home)
        member_id, cfg.etcd_initial_cluster = cpjoin.add_learner(cfg.etcd_peers, tls, name, m.peer_url)
        write_json(home.config_file, asdict(cfg))
        print(f"  ✓ etcd member {name} added as a learner ({m.peer_url})", flush=True)
        sup = _start_supervisor(home)
        cpjoin.promote(cfg.etcd_peers, tls, member_id)
        print(f"  ✓ etcd member {name} promoted to a voting member", flush=True)
    except (JoinError, HomeError, OSError, KeyError, ValueError) as e:
        if member_id:
            try:
                cpjoin.remove_member(cfg.etcd_peers, tls, member_id=member_id)
            except JoinError as undo:
                print(f"warning: could not remove etcd member {name} again: {undo}", file=sys.stderr)
        if sup is not None:
            sup.terminate()
            try:
                sup.wait(DOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"warning: the supervisor (pid {sup.pid}) is still stopping", file=sys.stderr)
        if created and (sup is None or sup.poll() is not None):
            shutil.rmtree(home.root, ignore_errors=True)
        raise CommandError(str(e) if isinstance(e, JoinError) else f"joining the control plane failed: {e}") from None
    if not _wait_ready(home, cfg, sup, args.wait_timeout):
        return 1
    print(f"This machine is control-plane member {name} of {args.server} (its apiserver: {cfg.api_url}). Status: "
          f"pkctl cluster status --home {home.root}; leave: pkctl cluster down --purge --home {home.root}")
    return 0


def _leave_etcd(home: Home, cfg: ClusterConfig) -> None:
    """A joined control-plane member leaving for good (`down --purge`) removes its etcd member first, while the
    quorum still counts it (as kubeadm reset does)."""
    from pkctl.cluster import cpjoin
    from pkctl.cluster.components import etcd_client_context
    try:
        if cpjoin.remove_member([*cfg.etcd_peers, *cfg.etcd_urls], etcd_client_context(home),
                                name=cfg.members[0].name):
            print(f"✓ removed etcd member {cfg.members[0].name}", flush=True)
    except (JoinError, OSError) as e:
        print(f"warning: could not remove etcd member {cfg.members[0].name} ({e}); remove it on the cluster with "
              "`etcdctl member remove`", file=sys.stderr)


# -- `pkctl cluster node add|remove|list` ------------------------------------------------------------------------
# The nodes' names, addresses, credentials and the shape of the pod range are in config.json, which every component
# is started from, so `down`, `status` and a restart after a power cut see the cluster as it is now. A node is added
# or removed by changing the config and telling the running supervisor (SIGHUP): it starts the new node's process
# (or stops the removed one's) and restarts only the node processes whose flags changed (e.g. the pod range widened),
# never etcd or the apiservers, so the API answers throughout (supervisor.Supervision). An extra node authenticates
# with a client certificate, which the running apiserver takes without a restart. A cluster that cannot take a node
# that way (its API served over plain HTTP, its apiserver started with a certificate that does not name the cluster
# network, a supervisor of an older pkube) restarts its components instead; running pods are left alone.

@contextmanager
def _changing_nodes(home: Home) -> Iterator[None]:
    """One `cluster node add|remove` at a time per home (each rewrites config.json and tells the supervisor)."""
    with open(home.run / "nodes.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError(f"another `pkctl cluster node` command is changing the cluster at {home.root}; "
                               "try again when it is done") from None
        yield


def cmd_node_add(args: argparse.Namespace) -> int:
    home, _ = _running_cluster(args)
    with _changing_nodes(home):
        return _add_nodes(home, _config(home), args)


def _reloads(home: Home) -> bool:
    """Whether the running supervisor takes a new config on SIGHUP (it records the config it runs): one of an
    older pkube would die of the signal."""
    return "config" in (home.read_state("supervisor") or {})


def _add_nodes(home: Home, cfg: ClusterConfig, args: argparse.Namespace) -> int:
    if cfg.nodes + args.count > MAX_NODES:
        raise CommandError(f"the cluster at {home.root} has {cfg.nodes} nodes: adding {args.count} would make more "
                           f"than {MAX_NODES}")
    make_room_for_nodes(cfg, cfg.nodes + args.count)
    added = append_workers(cfg, home.root, args.count)
    serving = home.pki.serving_cert.read_bytes() if home.pki.serving_cert.exists() else b""
    write_json(home.config_file, asdict(cfg))
    cfg = _prepare(home, None, None)  # the new nodes' certificates and kubeconfigs
    print(f"Adding {len(added)} node{'s' if len(added) > 1 else ''} to the pkube cluster in {home.root}")
    for w in added:
        print(f"  - {w.name}: InternalIP {w.ip}, network namespace {w.netns}")
    sup = _live_supervisor(home)
    if cfg.tls and _reloads(home) and home.pki.serving_cert.read_bytes() == serving:
        if not _apply_config(home, cfg, sup, args.wait):
            return 1
    else:
        print("  restarting the cluster's components: its apiserver cannot take the new nodes while it runs "
              "(running pods are not touched) ...", flush=True)
        _stop_supervisor(home, sup)
        if not _wait_ready(home, cfg, _start_supervisor(home), args.wait):
            return 1
    print("✓ " + ", ".join(f"node {w.name} Ready" for w in added))
    return 0


def _apply_config(home: Home, cfg: ClusterConfig, sup: procs.ProcRecord, timeout: float) -> bool:
    """Tell the running supervisor to take the config just written, then wait until what it started or restarted
    is healthy (printing each step); False (with the reason) on failure or timeout."""
    deadline = time.monotonic() + timeout
    applied = _take_config(home, sup, timeout)
    if applied is None:
        return False
    waiting = [*applied.get("started", []), *applied.get("restarted", [])]
    return _wait_ready(home, cfg, sup, max(0.0, deadline - time.monotonic()), only=waiting) if waiting else True


def _take_config(home: Home, sup: procs.ProcRecord, timeout: float) -> dict[str, list[str]] | None:
    """SIGHUP to the running supervisor, and wait until it runs the config just written (it records the config's
    digest once it has stopped, restarted and started what changed): what it did, or None (with the reason)."""
    deadline = time.monotonic() + timeout
    digest = home.read_config()[1]
    sup.signal(signal.SIGHUP)
    while (state := home.read_state("supervisor") or {}).get("config") != digest:
        if not sup.alive() or time.monotonic() > deadline:
            print(f"error: the supervisor (pid {sup.pid}) did not take the new config"
                  f"{'' if sup.alive() else ': it exited'}:\n{_tail(home.log('supervisor'), 15)}", file=sys.stderr)
            return None
        time.sleep(0.05)
    applied: dict[str, list[str]] = state.get("applied") or {}
    for verb in ("stopped", "started", "restarted"):
        if applied.get(verb):
            why = " (their flags changed)" if verb == "restarted" else ""
            print(f"  ✓ supervisor (pid {sup.pid}) {verb} {', '.join(applied[verb])}{why}", flush=True)
    return applied


def cmd_node_remove(args: argparse.Namespace) -> int:
    home, _ = _running_cluster(args)
    with _changing_nodes(home):
        return _remove_node(home, _config(home), args)


def _remove_node(home: Home, cfg: ClusterConfig, args: argparse.Namespace) -> int:
    from pkctl.cluster import nodes
    from pkctl.main import main as pkctl
    if args.name == cfg.node_name:
        raise CommandError(f"node {args.name!r} is the cluster's first node: it runs on the host with the control "
                           f"plane and cannot be removed (remove the whole cluster with `pkctl cluster down --purge "
                           f"--home {home.root}`)")
    w = next((w for w in cfg.workers if w.name == args.name), None)
    if w is None:
        raise CommandError(f"node {args.name!r} is not a node of the cluster at {home.root}; its nodes: "
                           + ", ".join([cfg.node_name, *(w.name for w in cfg.workers)]))
    try:
        parse_duration(args.timeout)
    except ValueError as e:
        raise CommandError(f'invalid argument "{args.timeout}" for "--timeout" flag: {e}') from None
    print(f"Removing node {w.name} from the pkube cluster in {home.root}", flush=True)
    registered = api_get(home, cfg, f"/api/v1/nodes/{w.name}") is not None
    if not args.force and registered:
        # kubectl's drain for node removal (kubeadm's advice): evictions honour PodDisruptionBudgets, DaemonSet pods
        # stay (they go with the node), emptyDir data goes with its pod; pods no controller recreates stop the
        # removal unless --force (which skips the drain).
        if pkctl(["--kubeconfig", str(home.kubeconfig), "drain", w.name, "--ignore-daemonsets",
                  "--delete-emptydir-data", "--timeout", args.timeout]):
            raise CommandError(f"node {w.name} was not removed: draining it failed (see above); it stays cordoned "
                               f"(`pkctl uncordon {w.name}` takes it back), `--force` removes it without draining")
    before = copy.deepcopy(cfg)
    cfg.workers = [x for x in cfg.workers if x.name != w.name]
    # the in-cluster API address (the `kubernetes` Service's endpoint) may be the cluster network's gateway: then
    # the bridge stays while the apiserver runs (`down` removes it)
    keep_bridge = bool(cfg.node_bridge) and cfg.node_gateway in _kubernetes_endpoints(home, cfg)
    write_json(home.config_file, asdict(cfg))
    sup = _live_supervisor(home)
    live, restarted = _reloads(home), []
    if live:
        print(f"  stopping node {w.name}'s kubelet and proxy ...", flush=True)
        applied = _take_config(home, sup, args.wait)
        if applied is None:
            return 1
        restarted = applied.get("restarted", [])  # waited for below, once the node is cleaned up
    else:
        print("  stopping the cluster's components ...", flush=True)
        _stop_supervisor(home, sup)
    # its pods (containers, their netns, volumes, cgroups) from inside its netns, then the netns, its veth, its
    # files; the cluster bridge too when no extra node is left
    problems = [p for c in components(before) if c.name == w.component and c.cleanup for p in c.cleanup(home, before)]
    problems += nodes.delete_node(w)
    if not cfg.workers and not (live and keep_bridge):
        problems += nodes.delete_network(cfg)
    problems += home.forget_node(w)
    print(f"  ✓ stopped node {w.name} and removed its network namespace, pods and state", flush=True)
    if live:
        ready = _wait_ready(home, cfg, sup, args.wait, only=restarted)
    else:
        print("  starting the cluster's components again ...", flush=True)
        ready = _wait_ready(home, cfg, _start_supervisor(home), args.wait)
    if not ready:
        return 1
    # once its kubelet is gone for good (a running kubelet registers its Node again); the other nodes drop their
    # routes to its pods when they see it go, and the pod garbage collector deletes pods left bound to it
    if registered and pkctl(["--kubeconfig", str(home.kubeconfig), "delete", "node", w.name, "--ignore-not-found"]):
        problems.append(f"the Node object {w.name} (delete it with `pkctl delete node {w.name}`)")
    if problems:
        raise CommandError(f"node {w.name} was removed, but not everything of it: " + "; ".join(problems))
    print(f"✓ node {w.name} removed")
    return 0


def _kubernetes_endpoints(home: Home, cfg: ClusterConfig) -> set[str]:
    ep = api_get(home, cfg, "/api/v1/namespaces/default/endpoints/kubernetes") or {}
    return {a.get("ip") for s in ep.get("subsets") or [] for a in s.get("addresses") or []}


def _live_supervisor(home: Home) -> procs.ProcRecord:
    sup = supervisor(home)
    if sup is None:
        raise CommandError(f"the cluster at {home.root} stopped meanwhile: start it with "
                           f"`pkctl cluster up --home {home.root}`")
    return sup


def cmd_node_list(args: argparse.Namespace) -> int:
    from pkctl.cluster.report import table
    home = _home(args)
    cfg = _config(home)
    if cfg.joined:
        raise CommandError(f"{home.root} is a node joined to {cfg.joined}; run this on its control plane")
    listed = api_get(home, cfg, "/api/v1/nodes") if supervisor(home) else None
    known = {n["metadata"]["name"]: n for n in (listed or {}).get("items", [])}

    def status(name: str) -> str:
        if listed is None:
            return "Unknown (cluster not running)"
        if name not in known:
            return "NotRegistered"
        node = known[name]
        ready = "Ready" if node_ready(node) else "NotReady"
        return ready + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")
    rows = [["NAME", "ROLE", "INTERNAL-IP", "NETNS", "STATUS"],
            [cfg.node_name, "control-plane", cfg.node_ip or "<none>", "<host>", status(cfg.node_name)]]
    rows += [[w.name, "worker", w.ip, w.netns, status(w.name)] for w in cfg.workers]
    print(table(rows))
    return 0
