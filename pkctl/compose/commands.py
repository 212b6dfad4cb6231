"""`pkctl compose [-f FILE] [-p NAME] [--profile P] up|down|ps|logs|config|exec|build|restart`: a Compose
project run on the cluster (see convert.py for what each part of the file becomes)."""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

from images.errors import ImageError
from images.store import ImageStore, default_root

from ..connect import Connection, run
from ..errors import CommandError, as_command_error
from ..printers import to_yaml
from . import runner
from .convert import Plan, convert, image_of
from .model import ComposeError, Project, find_file, image_healthcheck, load


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("compose", help="run a Compose project (docker-compose.yml) on the cluster",
                       description="Run a Compose project: one namespace per project, each service a Deployment "
                                   "and a Service of its name, ports published on the node.")
    p.add_argument("-f", "--file", action="append", type=Path, default=[],
                   help="the Compose file (default: compose.yaml or docker-compose.yml in this directory)")
    p.add_argument("-p", "--project-name", help="the project name (default: the file's directory name)")
    p.add_argument("--profile", action="append", default=None, help="enable services of this profile")
    p.add_argument("--image-root", type=Path,
                   help="image store that `build` writes to (default: the cluster's, when the kubeconfig is in a "
                        "pkube home; else $PKUBE_HOME/images)")
    p.set_defaults(func=lambda args: p.print_help() or 2)
    cmds = p.add_subparsers(dest="compose_command", metavar="COMMAND")

    up = cmds.add_parser("up", help="create and start the services")
    up.add_argument("-d", "--detach", action="store_true", help="return once the services started")
    up.add_argument("--build", action="store_true", help="build images before starting")
    up.add_argument("--wait-timeout", type=float, default=180.0, help="seconds to wait for each service")
    up.add_argument("--remove-orphans", action="store_true", help="remove services no longer in the file")
    up.set_defaults(func=cmd_up)
    down = cmds.add_parser("down", help="stop and remove the services (named volumes stay unless -v)")
    down.add_argument("-v", "--volumes", action="store_true", help="also remove the named volumes")
    down.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for everything to go")
    down.set_defaults(func=cmd_down)
    cmds.add_parser("ps", help="list the project's containers").set_defaults(func=cmd_ps)
    logs = cmds.add_parser("logs", help="show the services' output")
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the output")
    logs.set_defaults(func=cmd_logs)
    config = cmds.add_parser("config", help="print the Kubernetes objects the project becomes")
    config.set_defaults(func=cmd_config)
    ex = cmds.add_parser("exec", help="run a command in a service's container: exec SERVICE -- CMD [ARGS]")
    ex.add_argument("service", metavar="SERVICE")
    ex.add_argument("-T", "--no-tty", action="store_true", help="accepted for docker compose compatibility")
    ex.set_defaults(func=cmd_exec, takes_command=True)
    build = cmds.add_parser("build", help="build the services' images")
    build.add_argument("services", nargs="*", metavar="SERVICE")
    build.add_argument("--no-cache", action="store_true")
    build.set_defaults(func=cmd_build)
    restart = cmds.add_parser("restart", help="restart the services' containers")
    restart.add_argument("services", nargs="*", metavar="SERVICE")
    restart.set_defaults(func=cmd_restart)


def project_of(args: argparse.Namespace) -> Project:
    if len(args.file) > 1:
        raise CommandError("several -f files (overrides) are not supported yet: pass one file")
    try:
        file = args.file[0] if args.file else find_file(Path("."))
        project = load(file, args.project_name, profiles=args.profile)
    except ComposeError as e:
        raise CommandError(str(e)) from None
    for warning in project.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return project


def plan_of(project: Project) -> Plan:
    try:
        return convert(project)
    except ComposeError as e:
        raise CommandError(str(e)) from None


def say(line: str) -> None:
    print(f" ✔ {line}", flush=True)


def image_roots(args: argparse.Namespace) -> list[Path]:
    """Where built images go: --image-root; else every node's store of the local cluster the kubeconfig belongs
    to (the first node's first: the build's); else the default store."""
    from pkctl.cluster.home import HomeError
    from pkctl.cluster.images import cluster_image_roots
    if args.image_root:
        return [args.image_root]
    with as_command_error(HomeError):
        return cluster_image_roots(getattr(args, "kubeconfig", None)) or [default_root()]


def image_root(args: argparse.Namespace) -> Path:
    """The store builds go to first (the first node's)."""
    return Path(image_roots(args)[0])


def use_image_healthchecks(args: argparse.Namespace, project: Project) -> bool:
    """Services whose file says nothing about health get their image's HEALTHCHECK, as with Docker, for the
    images in the local store (built or pulled here); returns whether any did."""
    pending = [svc for svc in project.services.values() if not svc.healthcheck_set]
    root = image_root(args)
    if not pending or not root.is_dir():
        return False  # no store here: nothing to look at (and none to create)
    changed = False
    try:
        store = ImageStore(root)
        for svc in pending:
            img = store.resolve(image_of(project, svc))
            hc = image_healthcheck((img.config.get("config") or {}).get("Healthcheck")) if img else None
            if hc is not None:
                svc.healthcheck, changed = hc, True
    except (ImageError, PermissionError):
        return changed  # an unreadable store: the file's settings alone, as before
    return changed


def build_images(args: argparse.Namespace, project: Project, only: list[str], always: bool,
                 no_cache: bool = False) -> bool:
    """Build the services' images (those not built yet unless `always`); returns whether any service's
    `image_id` was set (its pods carry it, so a rebuilt image rolls them)."""
    from pkctl.cluster.images import copy_images
    roots: list[Path] = []
    found = False
    for svc in project.services.values():
        if svc.build is None or (only and svc.name not in only):
            continue
        roots = roots or image_roots(args)
        store = ImageStore(roots[0])
        tag = image_of(project, svc)
        if not always and (img := store.resolve(tag)) is not None:
            svc.image_id, found = img.id, True
            copy_images([tag], store, roots, progress=lambda line: print(line, flush=True))
            continue
        print(f"[+] Building {svc.name} ({tag})", flush=True)
        try:
            svc.image_id = store.build(svc.build.context, dockerfile_path=svc.build.dockerfile, tag=tag,
                                       build_args=svc.build.args, target=svc.build.target, no_cache=no_cache,
                                       progress=lambda line: print(line, flush=True)).id
            found = True
        except ImageError as e:
            raise CommandError(f"service {svc.name!r}: build failed: {e}") from None
        except PermissionError as e:
            raise CommandError(f"service {svc.name!r}: permission denied: {e.filename or e}") from None
        copy_images([tag], store, roots, progress=lambda line: print(line, flush=True))  # nodes with their own store
    return found


def cmd_up(args: argparse.Namespace) -> int:
    project = project_of(args)
    plan = plan_of(project)
    built = build_images(args, project, [], args.build)
    if use_image_healthchecks(args, project) or built:
        plan = plan_of(project)

    async def go(conn: Connection) -> int:
        await runner.up(conn.client, project, plan, args.wait_timeout, say, args.remove_orphans)
        if args.detach:
            return 0
        print("Attaching to " + ", ".join(project.services) + " (Ctrl-C detaches; the services keep running, "
              "`pkctl compose down` removes them)", flush=True)
        await runner.logs(conn.client, project.name, [], follow=True)
        return 0
    return run(args, go)


def cmd_down(args: argparse.Namespace) -> int:
    project = project_of(args)
    return run(args, lambda conn: _ok(runner.down(conn.client, project.name, args.volumes, args.timeout, say)))


async def _ok(coro: Any) -> int:
    await coro
    return 0


def cmd_ps(args: argparse.Namespace) -> int:
    project = project_of(args)

    async def go(conn: Connection) -> int:
        rows = await runner.ps(conn.client, project.name)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        return 0
    return run(args, go)


def cmd_logs(args: argparse.Namespace) -> int:
    project = project_of(args)
    unknown = [s for s in args.services if s not in project.services]
    if unknown:
        raise CommandError(f"no such service: {unknown[0]}")
    return run(args, lambda conn: _ok(runner.logs(conn.client, project.name, args.services, args.follow)))


def cmd_config(args: argparse.Namespace) -> int:
    plan = plan_of(project_of(args))
    sys.stdout.write("---\n".join(to_yaml(o) for o in plan.objects()))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    project = project_of(args)
    unknown = [s for s in args.services if s not in project.services]
    if unknown:
        raise CommandError(f"no such service: {unknown[0]}")
    build_images(args, project, args.services, True, args.no_cache)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from ..commands import exec as exec_command
    project = project_of(args)
    if args.service not in project.services:
        raise CommandError(f"no such service: {args.service}")

    async def find(conn: Connection) -> int:
        args.exec_pod = await runner.first_running_pod(conn.client, project.name, args.service)
        return 0
    run(_in_namespace(args, project.name), find)
    exec_args = _in_namespace(args, project.name)
    exec_args.pod, exec_args.container, exec_args.stdin, exec_args.tty = args.exec_pod, args.service, False, False
    return exec_command.command(exec_args)


def cmd_restart(args: argparse.Namespace) -> int:
    project = project_of(args)

    async def go(conn: Connection) -> int:
        from pklib.resources import PODS
        for pod in await runner.service_pods(conn.client, project.name):
            service = pod["metadata"].get("labels", {}).get(runner.SERVICE_LABEL, "")
            if args.services and service not in args.services:
                continue
            if not pod["metadata"].get("ownerReferences"):
                raise CommandError(f"service {service!r} runs once (restart: no/on-failure): `up` it again instead")
            await conn.client.delete(PODS, pod["metadata"]["name"], project.name)
            say(f"Container {pod['metadata']['name']}  Restarted")
        return 0
    return run(args, go)


def _in_namespace(args: argparse.Namespace, namespace: str) -> argparse.Namespace:
    out = copy.copy(args)
    out.namespace = namespace
    return out
