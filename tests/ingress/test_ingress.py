"""Issue 15's Ingress end to end: `pkube ingress` drives a real nginx in front of real busybox pods.

One private control plane + kubelet for the module (tests/support/node.py), and the ingress controller on free
loopback ports implementing a class of its own. Requests go to 127.0.0.1 with the Host header (and SNI) of the
rule they aim at, like `curl --resolve`; nginx forwards them straight to the pods' addresses on the node's bridge.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest

from pklib.client import Client
from pklib.resources import DEPLOYMENTS, EVENTS, INGRESSCLASSES, INGRESSES, PODS, SECRETS, SERVICES
from tests.support.controlplane import Etcd, _stop
from tests.support.ingress import IngressController, CertAuthority, fetch, make_ca, start_ingress
from tests.support.node import Node, ctr, pod_namespace, private_node
from tests.util import unique, wait_for, wait_for_sync

pytestmark = pytest.mark.root

# busybox httpd answering "<app> <pod name>" on / and on the paths of the rules below, ready while /www/ready exists
HTTPD = ("mkdir -p /www && echo $APP $(hostname) > /www/index.html && "
         "for d in alpha beta betamax; do mkdir /www/$d && cp /www/index.html /www/$d/; done && "
         "touch /www/ready && exec httpd -f -p 8080 -h /www")
READINESS = {"exec": {"command": ["test", "-f", "/www/ready"]}, "periodSeconds": 1, "failureThreshold": 1}


class Env:
    def __init__(self, node: Node, ingress: IngressController, class_name: str, ca: CertAuthority):
        self.node, self.ingress, self.class_name, self.ca = node, ingress, class_name, ca

    def get(self, host: str, path: str = "/", tls: bool = False) -> Any:
        if tls:
            return fetch(self.ingress.https_port, host, path, self.ca.context())
        return fetch(self.ingress.http_port, host, path)


@pytest.fixture(scope="module")
def env(etcd: Etcd) -> Iterator[Env]:
    with private_node(etcd) as node:
        state = node.tmp / "ingress"
        controller = f"test.pkube.io/{unique('ing')}"
        ingress = start_ingress(node.api.url, node.api.token, state, controller, env={**os.environ, **(node.env or {})})
        class_name = unique("cls")
        try:
            async def install() -> None:
                async with node.client() as c:
                    await c.create(INGRESSCLASSES, {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                                                    "metadata": {"name": class_name},
                                                    "spec": {"controller": controller}})
            asyncio.run(install())

            def serving() -> bool:
                if ingress.proc.poll() is not None:
                    raise AssertionError(f"pkube ingress exited: {ingress.log.read_text()[-3000:]}")
                try:
                    return fetch(ingress.http_port, "nothing.test").status == 404
                except OSError:
                    return False
            wait_for_sync(serving, timeout=30, message="nginx serving")
            yield Env(node, ingress, class_name, make_ca())
        finally:
            _stop(ingress.proc)
            leftover = ingress.proc.returncode
            nginx_pid = state / "nginx.pid"
            assert not nginx_pid.exists(), f"nginx still recorded as running: {nginx_pid.read_text()}"
            shutil.rmtree(state, ignore_errors=True)
            assert leftover == 0, ingress.log.read_text()[-3000:]


@pytest.fixture
async def kc(env: Env) -> AsyncIterator[Client]:
    c = env.node.client()
    yield c
    await c.close()


@pytest.fixture
async def ns(kc: Client) -> AsyncIterator[str]:
    async with pod_namespace(kc, "ing") as name:
        yield name
    for res in (INGRESSES, DEPLOYMENTS, SERVICES):
        for obj in (await kc.list(res, name)).get("items") or []:
            await kc.delete(res, obj["metadata"]["name"], name)


async def deploy_app(c: Client, ns: str, app: str, replicas: int = 1) -> None:
    labels = {"app": app}
    await c.create(DEPLOYMENTS, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "strategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"terminationGracePeriodSeconds": 2, "containers": [
                                  ctr("httpd", HTTPD, env=[{"name": "APP", "value": app}],
                                      readinessProbe=READINESS)]}}}}, ns)
    await c.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": app},
                              "spec": {"selector": labels, "ports": [{"name": "http", "port": 80,
                                                                      "targetPort": 8080}]}}, ns)


def backend(service: str) -> dict[str, Any]:
    return {"service": {"name": service, "port": {"number": 80}}}


def rule(host: str, *paths: tuple[str, str, str]) -> dict[str, Any]:
    return {"host": host, "http": {"paths": [{"path": p, "pathType": t, "backend": backend(s)} for p, t, s in paths]}}


def ingress(name: str, class_name: str, *rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name},
            "spec": {"ingressClassName": class_name, "rules": list(rules), **spec}}


async def answered(env: Env, host: str, path: str = "/", tls: bool = False, status: int = 200,
                   body: str | None = None, timeout: float = 60) -> Any:
    """Poll until host+path answers `status` (and a body starting with `body`)."""
    async def check() -> Any:
        try:
            a = await asyncio.to_thread(env.get, host, path, tls)
        except OSError:
            return None
        return a if a.status == status and (body is None or a.body.startswith(body)) else None
    return await wait_for(check, timeout=timeout, interval=0.1, message=f"{host}{path} answering {status} {body}")


async def test_hosts_and_paths_route_to_services_with_tls_and_redirect(env: Env, kc: Client, ns: str) -> None:
    host_a, host_b, secure = f"a.{ns}.test", f"b.{ns}.test", f"secure.{ns}.test"
    await deploy_app(kc, ns, "alpha")
    await deploy_app(kc, ns, "beta")
    await kc.create(SECRETS, env.ca.tls_secret("secure-tls", secure), ns)
    await kc.create(INGRESSES, ingress("routes", env.class_name,
                                       rule(host_a, ("/", "Prefix", "alpha"), ("/beta", "Prefix", "beta")),
                                       rule(host_b, ("/", "Prefix", "beta"), ("/alpha/index.html", "Exact", "alpha"))),
                    ns)
    await kc.create(INGRESSES, ingress("secure", env.class_name, rule(secure, ("/", "Prefix", "alpha")),
                                       tls=[{"hosts": [secure], "secretName": "secure-tls"}]), ns)
    # two hosts, two paths each, two Services
    await answered(env, host_a, "/", body="alpha ")
    await answered(env, host_a, "/beta/", body="beta ")
    await answered(env, host_b, "/", body="beta ")
    await answered(env, host_b, "/alpha/index.html", body="alpha ")
    assert (await asyncio.to_thread(env.get, host_a, "/betamax/")).body.startswith("alpha ")  # Prefix: whole elements
    assert (await asyncio.to_thread(env.get, f"other.{ns}.test")).status == 404
    # TLS with the host's own certificate (verified against the test CA and the host name), plain HTTP redirected
    a = await answered(env, secure, "/", tls=True, body="alpha ")
    assert a.peer_cert is not None and ("DNS", secure) in a.peer_cert["subjectAltName"]
    redirect = await asyncio.to_thread(env.get, secure, "/x?y=1")
    assert redirect.status == 308
    assert redirect.headers["location"] == f"https://{secure}:{env.ingress.https_port}/x?y=1"
    # nginx's workers run unprivileged
    master = int((env.ingress.state_dir / "nginx.pid").read_text())
    workers = [d for d in Path("/proc").iterdir() if d.name.isdigit() and _status(d, "PPid") == str(master)]
    assert workers and all(_status(w, "Uid") != "0" for w in workers)
    # the Ingresses carry the node's address
    async def addressed() -> bool:
        ing = await kc.get(INGRESSES, "routes", ns)
        return (ing.get("status") or {}).get("loadBalancer", {}).get("ingress") == [{"ip": "127.0.0.1"}]
    await wait_for(addressed, timeout=10, message="status.loadBalancer.ingress")


def _status(proc: Path, field: str) -> str:
    try:
        line = next(x for x in (proc / "status").read_text().splitlines() if x.startswith(field + ":"))
    except (OSError, StopIteration):
        return ""
    return line.split()[1]


async def test_rolling_update_behind_the_ingress_fails_no_request(env: Env, kc: Client, ns: str) -> None:
    host = f"roll.{ns}.test"
    await deploy_app(kc, ns, "gamma", replicas=2)
    await kc.create(INGRESSES, ingress("roll", env.class_name, rule(host, ("/", "Prefix", "gamma"))), ns)
    await answered(env, host, body="gamma ")
    before = {p["metadata"]["name"] for p in (await kc.list(PODS, ns, label_selector="app=gamma"))["items"]}
    stop = asyncio.Event()
    results: list[int | str] = []

    async def load() -> None:  # bounded: one request at a time, until the rollout is over or 3000 were sent
        while not stop.is_set() and len(results) < 3000:
            try:
                results.append((await asyncio.to_thread(env.get, host)).status)
            except OSError as e:
                results.append(repr(e))
            await asyncio.sleep(0.01)
    task = asyncio.create_task(load())
    await wait_for(lambda: asyncio.sleep(0, len(results) >= 20), timeout=20, message="load running")
    assert len(before) == 2
    deploy = await kc.get(DEPLOYMENTS, "gamma", ns)
    deploy["spec"]["template"]["metadata"].setdefault("annotations", {})["restartedAt"] = unique("r")
    await kc.update(DEPLOYMENTS, deploy)

    async def rolled() -> bool:
        d = await kc.get(DEPLOYMENTS, "gamma", ns)
        s = d.get("status") or {}
        return (s.get("observedGeneration") == d["metadata"]["generation"] and s.get("updatedReplicas") == 2
                and s.get("readyReplicas") == 2 and s.get("replicas") == 2)
    await wait_for(rolled, timeout=90, interval=0.2, message="rollout done")
    # the new pods answer (the endpoints followed the replacement)
    new = await wait_for(lambda: _new_pod_answer(env, host, before), timeout=20, interval=0.1,
                         message="a new pod answering")
    stop.set()
    await task
    failed = [r for r in results if r != 200]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:10]}"
    assert new


async def _new_pod_answer(env: Env, host: str, before: set[str]) -> str | None:
    a = await asyncio.to_thread(env.get, host)
    name = a.body.split()[1] if a.status == 200 else ""
    return name if name and name not in before else None



async def test_nginx_that_dies_is_started_again(env: Env, kc: Client, ns: str) -> None:
    host = f"again.{ns}.test"
    await deploy_app(kc, ns, "delta")
    await kc.create(INGRESSES, ingress("again", env.class_name, rule(host, ("/", "Prefix", "delta"))), ns)
    await answered(env, host, body="delta ")
    pid_file = env.ingress.state_dir / "nginx.pid"
    old = int(pid_file.read_text())
    os.kill(old, signal.SIGTERM)  # nginx's fast shutdown: master and workers go

    async def new_master() -> bool:
        try:
            return int(pid_file.read_text()) != old
        except (OSError, ValueError):  # removed by the old master, not yet written by the new one
            return False
    await wait_for(new_master, timeout=30, interval=0.1, message="a new nginx master")
    await answered(env, host, body="delta ", timeout=30)


async def test_a_missing_tls_secret_is_a_warning_event_and_the_default_certificate(env: Env, kc: Client,
                                                                                   ns: str) -> None:
    host = f"nosecret.{ns}.test"
    await kc.create(INGRESSES, ingress("nosecret", env.class_name, rule(host, ("/", "Prefix", "missing")),
                                       tls=[{"hosts": [host], "secretName": "absent"}]), ns)

    async def warned() -> Any:
        events = (await kc.list(EVENTS, ns)).get("items") or []
        return [e for e in events if e["involvedObject"].get("name") == "nosecret" and e["type"] == "Warning"
                and e["reason"] == "InvalidTLSSecret"]
    (event,) = await wait_for(warned, timeout=20, message="InvalidTLSSecret event")
    assert f"Secret {ns}/absent not found" in event["message"]
    # still served over HTTPS (no Service: 503), with the controller's own certificate
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE

    async def served() -> bool:
        a = await asyncio.to_thread(fetch, env.ingress.https_port, host, "/", insecure)
        return a.status == 503  # the default server (404) until nginx runs the new configuration
    await wait_for(served, timeout=20, interval=0.1, message="the host served over HTTPS")
