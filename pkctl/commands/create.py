"""`pkctl create -f FILE|DIR|-`, and from arguments: `create namespace|deployment|job|cronjob|configmap|secret
generic`."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from pklib.errors import ApiError
from pklib.resources import CRONJOBS, JOBS, NAMESPACES, Resource, for_kind

from .. import generators
from ..connect import Connection, call
from ..errors import CommandError, api_error_line
from ..flags import dry_run, output_flags
from ..manifests import Manifest, add_file_flags, place_or_report, read_files
from ..printers import kind_name, print_result
from .apply import with_last_applied


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("create", help="create objects from files or from arguments",
                       description="Create objects from files (failing for ones that exist), or from arguments.")
    add_file_flags(p, required=False)
    p.add_argument("--save-config", action="store_true",
                   help="record the configuration, so that a later `pkctl apply` can tell what was removed")
    p.set_defaults(func=from_files)
    kinds = p.add_subparsers(dest="create_kind", metavar="KIND")
    ns = kinds.add_parser("namespace", aliases=["ns"], help="create a namespace")
    ns.add_argument("name", metavar="NAME")
    ns.set_defaults(func=namespace)

    deploy = kinds.add_parser("deployment", aliases=["deploy"], help="create a deployment running an image",
                              description="Create a deployment. `-- COMMAND [ARGS...]` runs that instead of "
                                          "the image's command.")
    deploy.add_argument("name", metavar="NAME")
    deploy.add_argument("--image", action="append", default=[], help="image to run (repeat for several containers)")
    deploy.add_argument("--replicas", type=int, default=1, help="number of replicas (default 1)")
    deploy.add_argument("--port", type=int, help="port the containers expose")
    output_flags(deploy)
    # A command to run instead of the image's follows `--` (pkctl.main hands it over as args.after_dashes).
    deploy.set_defaults(takes_command=True, func=lambda args: generated(args, lambda: generators.deployment(
        args.name, args.image, args.replicas, args.port, args.after_dashes or None)))

    job = kinds.add_parser("job", help="create a job running an image to completion",
                           description="Create a job. `-- COMMAND [ARGS...]` runs that instead of the image's "
                                       "command; --from=cronjob/NAME starts one from a cron job's template.")
    job.add_argument("name", metavar="NAME")
    job.add_argument("--image", help="image to run")
    job.add_argument("--from", dest="from_", metavar="cronjob/NAME", help="the cron job to start a job from")
    output_flags(job)
    job.set_defaults(takes_command=True, func=create_job)

    cj = kinds.add_parser("cronjob", aliases=["cj"], help="create a cron job running an image on a schedule",
                          description="Create a cron job. `-- COMMAND [ARGS...]` runs that instead of the image's "
                                      "command.")
    cj.add_argument("name", metavar="NAME")
    cj.add_argument("--image", help="image to run")
    cj.add_argument("--schedule", help="a schedule in the cron format, e.g. '*/5 * * * *' or @hourly")
    cj.add_argument("--restart", default="OnFailure", help="the job's pods' restart policy: OnFailure (default) "
                                                          "or Never")
    output_flags(cj)
    cj.set_defaults(takes_command=True, func=lambda args: generated(args, lambda: generators.cronjob(
        args.name, args.image, args.schedule, args.restart, args.after_dashes or None)))

    cm = kinds.add_parser("configmap", aliases=["cm"], help="create a config map from literals and files")
    cm.add_argument("name", metavar="NAME")
    _data_flags(cm)
    cm.set_defaults(func=lambda args: generated(args, lambda: generators.configmap(
        args.name, args.from_literal, args.from_file)))

    secret = kinds.add_parser("secret", help="create a secret").add_subparsers(dest="secret_kind", metavar="TYPE")
    generic = secret.add_parser("generic", help="create a secret from literals and files")
    generic.add_argument("name", metavar="NAME")
    generic.add_argument("--type", help="the secret's type (default Opaque)")
    _data_flags(generic)
    generic.set_defaults(func=lambda args: generated(args, lambda: generators.secret(
        args.name, args.from_literal, args.from_file, args.type)))
    docker = secret.add_parser("docker-registry", help="create a secret for use with a Docker registry")
    docker.add_argument("name", metavar="NAME")
    docker.add_argument("--docker-server", default="https://index.docker.io/v1/", help="server location for the registry")
    docker.add_argument("--docker-username", help="username for registry authentication")
    docker.add_argument("--docker-password", help="password for registry authentication")
    docker.add_argument("--docker-email", help="email for the registry")
    docker.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                        help="a Docker config.json, e.g. --from-file=.dockerconfigjson=$HOME/.docker/config.json")
    output_flags(docker)
    docker.set_defaults(func=lambda args: generated(args, lambda: generators.docker_registry_secret(
        args.name, args.docker_server, args.docker_username, args.docker_password, args.docker_email,
        args.from_file)))


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE", help="a key and its value")
    p.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                   help="a file (key: its name) or every file of a directory")
    output_flags(p)


def generated(args: argparse.Namespace, build: Callable[[], dict[str, Any]]) -> int:
    """Create (or with --dry-run=client only print) an object built from arguments."""
    try:
        obj = build()
    except generators.GeneratorError as e:
        raise CommandError(str(e)) from None
    res = for_kind(obj["apiVersion"], obj["kind"])
    assert res is not None, obj["kind"]
    if args.dry_run == "client":
        print_result(res, obj, args.output, "created (dry run)")
        return 0

    def create(conn: Connection) -> int:
        params, suffix = dry_run(args.dry_run)
        created = conn.api.create(res, obj, conn.namespace if res.namespaced else None, params=params)
        print_result(res, created, args.output, "created" + suffix)
        return 0
    return call(args, create)


def create_job(args: argparse.Namespace) -> int:
    if not args.from_:
        return generated(args, lambda: generators.job(args.name, args.image, args.after_dashes or None))
    if args.image or args.after_dashes:
        raise CommandError("cannot specify --from and command or --image")
    kind, _, source = args.from_.partition("/")
    if kind.lower() not in ("cronjob", "cronjobs", "cj", "cronjob.batch", "cronjobs.batch") or not source:
        raise CommandError(f"from must be an existing cronjob: {args.from_}")

    def create(conn: Connection) -> int:
        job = generators.job_from_cronjob(args.name, conn.api.get(CRONJOBS, source, conn.namespace))
        if args.dry_run == "client":
            print_result(JOBS, job, args.output, "created (dry run)")
            return 0
        params, suffix = dry_run(args.dry_run)
        print_result(JOBS, conn.api.create(JOBS, job, conn.namespace, params=params), args.output, "created" + suffix)
        return 0
    return call(args, create)


def from_files(args: argparse.Namespace) -> int:
    if not args.filename:
        raise CommandError("must specify one of -f, or a kind to create (e.g. `pkctl create namespace NAME`)")
    manifests = read_files(args.filename, args.recursive, none_given="no objects passed to create")
    return call(args, lambda conn: create_all(conn, manifests, args.save_config))


def create_all(conn: Connection, manifests: list[Manifest], save_config: bool) -> int:
    failed = False
    for m in manifests:
        p = place_or_report(m, conn.namespace, conn.namespace_given)
        if p is None:
            failed = True
            continue
        obj = with_last_applied(p.obj) if save_config else p.obj
        try:
            created = conn.api.create(p.res, obj, p.namespace)
        except ApiError as e:
            failed = True
            print(api_error_line(e, f'error when creating "{m.source}"'), file=sys.stderr)
            continue
        # generateName objects get their name from the server.
        print(f"{kind_name(p.res)}/{_name(created) or p.name} created")
        sys.stdout.flush()
    return 1 if failed else 0


def namespace(args: argparse.Namespace) -> int:
    def create(conn: Connection) -> int:
        created = conn.api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": args.name}})
        print(f"namespace/{_name(created) or args.name} created")
        return 0
    return call(args, create)


def _name(obj: Any) -> str:
    return str(((obj or {}).get("metadata") or {}).get("name") or "") if isinstance(obj, dict) else ""
