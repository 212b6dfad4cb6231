"""The web dashboard in a real headless Chromium (Selenium, Debian's chromium + chromium-driver) against a real
control plane and node: `pkctl dashboard --no-open` serves it, the browser logs in with the printed link.

One module-scoped node, dashboard and browser; the tests run in order on one Deployment (pods appear, a deleted one
is replaced, its logs follow, exec, scale, restart, an invalid YAML edit). Screenshots of the main pages go to
SHOTS (printed)."""
from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

from pklib.syncclient import SyncClient
from tests.support.controlplane import Etcd
from tests.support.dashboard import DASHBOARD_LOG, base, chromium, chromium_available, serve, until
from tests.support.node import BUSYBOX, NAMESPACES, PODS, Node, clean_namespace, private_node
from tests.support.pkctl import ROOT, kind, run_pkctl
from tests.util import unique

pytestmark = pytest.mark.root
Select = pytest.importorskip("selenium.webdriver.support.ui", reason="needs selenium (the test extras)").Select

# the screenshots of a run (ignored by git); docs/images/ has the one the README shows
SHOTS = Path(os.environ.get("PKUBE_DASHBOARD_SHOTS", Path(__file__).parent / "screenshots"))
DEPLOYMENTS, STATEFULSETS, DAEMONSETS = kind("deployments"), kind("statefulsets"), kind("daemonsets")
JOBS, CRONJOBS = kind("jobs"), kind("cronjobs")
SAMPLE_SECONDS = 2
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"


@pytest.fixture(scope="module")
def dash_node(etcd: Etcd) -> Iterator[Node]:
    with private_node(etcd) as n:
        yield n


@pytest.fixture(scope="module")
def api(dash_node: Node) -> Iterator[SyncClient]:
    c = SyncClient.from_kubeconfig(dash_node.api.kubeconfig)
    yield c
    c.close()


@contextmanager
def namespace(node: Node, api: SyncClient) -> Iterator[str]:
    """A new namespace, its workloads and pods removed after."""
    name = unique("dash")
    api.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        async def clean() -> None:
            async with node.client() as c:
                await clean_namespace(c, name)
        asyncio.run(clean())


@pytest.fixture(scope="module")
def ns(dash_node: Node, api: SyncClient) -> Iterator[str]:
    with namespace(dash_node, api) as name:
        yield name


@pytest.fixture(scope="module")
def dashboard(dash_node: Node) -> Iterator[str]:
    """The login URL printed by `pkctl dashboard --no-open` (stopped with Ctrl-C at the end); it samples CPU and
    memory every SAMPLE_SECONDS, so that plots have points soon."""
    with serve(dash_node.api.kubeconfig, env={"PKUBE_DASHBOARD_SAMPLE_SECONDS": str(SAMPLE_SECONDS)}) as (login_url, _):
        yield login_url


@pytest.fixture(scope="module")
def browser(dashboard: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    if not chromium_available():
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/install-deps.sh)")
    with chromium() as driver:
        shutil.rmtree(SHOTS, ignore_errors=True)
        SHOTS.mkdir(parents=True)
        yield driver
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # shown even when pytest captures output
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ndashboard screenshots: {SHOTS}")


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None,
            answer_headers: dict[str, str] | None = None) -> tuple[int, str]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.netloc, timeout=10)
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), headers=headers or {})
        r = conn.getresponse()
        if answer_headers is not None:
            answer_headers.update(r.getheaders())
        return r.status, r.read().decode()
    finally:
        conn.close()


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def rows(driver: Any) -> list[str]:
    """The names (data-name) of the rows of the page's first table."""
    return js(driver, "return [...document.querySelectorAll('main table tbody tr[data-key]')].map(r => r.dataset.name)")


def unlabelled(driver: Any) -> list[str]:
    """The form controls, buttons and links with no accessible name (no <label>, aria-label(ledby), text or title)."""
    return js(driver, """const named = (e) => (e.labels && [...e.labels].some(l => l.textContent.trim()))
            || (e.getAttribute('aria-label') || '').trim() || e.getAttribute('aria-labelledby')
            || (!['INPUT', 'SELECT', 'TEXTAREA'].includes(e.tagName) && e.textContent.trim()) || e.title;
        return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
            .filter(e => !named(e)).map(e => e.outerHTML)""")


def column(driver: Any, table: str, i: int) -> list[str]:
    """The texts of column `i` of the table labelled `table`."""
    return js(driver, "return [...document.querySelectorAll(`table[aria-label='${arguments[0]}'] tbody tr[data-key]`)]"
                      ".map(r => r.children[arguments[1]].textContent)", table, i)


def facts(driver: Any) -> dict[str, str]:
    """A workload page's summary (its <dl>) as term → value."""
    return js(driver, "const d = {}; for (const dt of document.querySelectorAll('#workload-summary dt')) "
                      "d[dt.textContent] = dt.nextElementSibling.textContent; return d")


def heading(driver: Any) -> str | None:
    return js(driver, "return document.querySelector('main h1')?.textContent")


def click(driver: Any, by: str, value: str) -> None:
    """Click an element of a live table (found again if a re-render replaced it meanwhile)."""
    until(lambda: driver.find_element(by, value).click() or True, what=f"a click on {value}")


def page_state(driver: Any) -> str:
    """What the browser shows, for a failure's message."""
    return (f"at {driver.current_url}: {driver.page_source[:600]!r}; console: {driver.get_log('browser')[-5:]}; "
            f"dashboard log: {DASHBOARD_LOG.read_text()[-1500:]}")


def go(driver: Any, url: str, heading: str) -> None:
    """Open a page and wait for its heading. Other tests on this machine add and remove network interfaces, and
    Chromium then fails the loads in flight (net::ERR_NETWORK_CHANGED): a page whose scripts failed so is loaded
    again (at most twice more)."""
    for attempt in range(3):
        driver.get(url)
        try:
            until(lambda: js(driver, "return document.querySelector('main h1')?.textContent") == heading,
                  15 if attempt < 2 else 30, heading, explain=lambda: page_state(driver))
            return
        except AssertionError as e:  # its message has the page's console (page_state)
            if attempt == 2 or "ERR_NETWORK_CHANGED" not in str(e):
                raise


def choose_namespace(driver: Any, ns: str) -> None:
    until(lambda: js(driver, "return [...document.querySelectorAll('#namespace option')].some(o => o.value === arguments[0])",
                     ns), what=f"namespace {ns} in the picker")
    js(driver, "const s = document.getElementById('namespace'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('change'))", ns)


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                                      {"name": "ticker", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                       "command": ["sh", "-c", TICKER]}]}}}}


def test_login_required(dashboard: str, browser: Any) -> None:
    root = base(dashboard)
    for path in ("/", "/api/v1/pods", "/static/app.js", "/vendor/xterm.js"):
        assert request(root + path)[0] == 401, path
    status, text = request(root + "/login?token=wrong")
    assert status == 401 and "wrong or was already used" in text
    status, _ = request(root + "/login", headers={"Host": "evil.example:80"})
    assert status == 400  # another Host (DNS rebinding) is refused before anything else

    browser.get(dashboard)  # the real link: a session cookie, then the page
    until(lambda: browser.get_cookie("pkube-dashboard-session"), what="the session cookie",
          explain=lambda: page_state(browser))
    go(browser, root + "/", "Overview")
    cookie = browser.get_cookie("pkube-dashboard-session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert request(dashboard)[0] == 401  # the link works once
    session = {"Cookie": f"pkube-dashboard-session={cookie['value']}"}
    got: dict[str, str] = {}
    assert request(root + "/", headers=session, answer_headers=got)[0] == 200
    assert got["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in got["Content-Security-Policy"]
    assert request(root + "/api/v1/namespaces", headers=session)[0] == 200
    # changes and WebSocket upgrades need this dashboard's Origin
    assert request(root + "/api/v1/namespaces", "POST", session)[0] == 403
    assert request(root + "/api/v1/namespaces", "POST", {**session, "Origin": "http://evil.example"})[0] == 403
    upgrade = {**session, "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"}
    assert request(root + "/api/v1/namespaces/default/pods/x/exec?command=sh", headers=upgrade)[0] == 403


def test_overview_lists_node(dashboard: str, browser: Any, dash_node: Node) -> None:
    go(browser, base(dashboard) + "/#/", "Overview")
    until(lambda: dash_node.name in rows(browser), what="the node in the overview")
    until(lambda: "Ready" in browser.find_element("css selector", f"main table tbody tr[data-name='{dash_node.name}']").text,
          what="the node Ready")
    # eight live watches on this page (more than the six HTTP connections a browser holds per server): all answer
    until(lambda: len(browser.find_elements("css selector", "#workload-counts .card .n")) == 5, what="workload counts",
          explain=lambda: browser.find_element("id", "workload-counts").text)
    until(lambda: browser.find_elements("css selector", "table[aria-label='Recent warning events'] tbody tr"),
          what="the warning events (or 'No warnings')")
    browser.save_screenshot(str(SHOTS / "overview.png"))


def test_overview_shows_warning_events_live(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    go(browser, base(dashboard) + "/#/", "Overview")
    until(lambda: browser.find_elements("css selector", "table[aria-label='Recent warning events'] tbody tr"),
          what="the warning events table")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    api.create(kind("events"), {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "disk.1"}, "type": "Warning", "reason": "DiskFull",
        "message": "the disk is full", "involvedObject": {"kind": "Pod", "name": "p1", "namespace": ns},
        "firstTimestamp": now, "lastTimestamp": now, "count": 3, "source": {"component": "test"}}, ns)
    row = until(lambda: browser.find_element("css selector", f"tr[data-key='{ns}/disk.1']"), what="the warning")
    assert "DiskFull" in row.text and "Pod/p1" in row.text and "the disk is full" in row.text


def test_keyboard_navigation(dashboard: str, browser: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    go(browser, base(dashboard) + "/#/", "Overview")
    js(browser, "document.activeElement && document.activeElement.blur()")
    for _ in range(12):  # Tab through the skip link and the navigation to "Pods"
        ActionChains(browser).send_keys(Keys.TAB).perform()
        if js(browser, "return document.activeElement.textContent") == "Pods":
            break
    else:
        raise AssertionError("Tab never reached the Pods link")
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    until(lambda: js(browser, "return document.querySelector('main h1')?.textContent") == "Pods", what="pods page")
    assert js(browser, "return document.querySelector('nav a[aria-current=page]').textContent") == "Pods"
    assert unlabelled(browser) == []


def test_pods_appear_live_and_deleted_pod_is_replaced(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    go(browser, base(dashboard) + "/#/pods", "Pods")
    choose_namespace(browser, ns)
    js(browser, "window.__sameDocument = true")  # gone if the page reloads
    api.create(DEPLOYMENTS, deployment("web", 3), ns)
    three = until(lambda: (lambda r: r if len(r) == 3 and all(n.startswith("web-") for n in r) else None)(rows(browser)),
                  60, "three pods of the Deployment")
    until(lambda: js(browser, "return [...document.querySelectorAll('main tbody tr[data-key]')]"
                              ".every(r => r.children[3].textContent === 'Running')"), 60, "all three Running")
    browser.save_screenshot(str(SHOTS / "pods.png"))

    # the label search: a selector no pod matches empties the table, clearing it brings them back
    search = browser.find_element("id", "label-selector")
    search.send_keys("app=nothing\n")
    until(lambda: rows(browser) == [], what="no pods for app=nothing")
    js(browser, "const s = document.getElementById('label-selector'); s.value = ''; s.dispatchEvent(new Event('change'))")
    until(lambda: sorted(rows(browser)) == sorted(three), what="the pods again")

    victim = three[0]
    api.delete(PODS, victim, ns)
    until(lambda: (lambda r: victim not in r and len(r) == 3 and set(r) - set(three))(rows(browser)), 60,
          f"{victim} replaced")
    assert js(browser, "return window.__sameDocument") is True


def test_applying_the_web_example_shows_its_pods_live(dashboard: str, browser: Any, api: SyncClient,
                                                     dash_node: Node) -> None:
    """`pkctl apply -f manifests/examples/web.yaml` while the Pods page is open: its three pods appear, Ready,
    without a reload."""
    with namespace(dash_node, api) as example:
        go(browser, base(dashboard) + "/#/pods", "Pods")
        choose_namespace(browser, example)
        until(lambda: rows(browser) == [], what="an empty namespace")
        js(browser, "window.__sameDocument = true")  # gone if the page reloads
        r = run_pkctl("apply", "-f", str(ROOT / "manifests/examples/web.yaml"), "-n", example,
                      "--kubeconfig", dash_node.api.kubeconfig)
        assert r.returncode == 0, r.stderr
        until(lambda: (lambda r: len(r) == 3 and all(n.startswith("web-") for n in r))(rows(browser)), 60,
              "the example's three pods")
        until(lambda: js(browser, "return [...document.querySelectorAll('main tbody tr[data-key]')]"
                                  ".every(r => r.children[2].textContent === '1/1')"), 60, "all three Ready",
              explain=lambda: rows(browser))
        assert js(browser, "return window.__sameDocument") is True
        browser.save_screenshot(str(SHOTS / "web-example.png"))


def test_pod_view_follows_logs(dashboard: str, browser: Any, ns: str) -> None:
    go(browser, base(dashboard) + "/#/pods", "Pods")
    choose_namespace(browser, ns)
    name = until(lambda: (lambda r: r[0] if len(r) == 3 else None)(rows(browser)), what="pods")
    until(lambda: js(browser, "return [...document.querySelectorAll('main tbody tr[data-key]')]"
                              ".every(r => r.children[3].textContent === 'Running')"), 60, "all three Running")
    click(browser, "link text", name)
    until(lambda: js(browser, "return document.querySelector('main h1')?.textContent") == f"Pod {ns}/{name}",
          what="pod page")
    until(lambda: "Running since" in browser.find_element("css selector", "main table").text, what="container state")

    def last_tick() -> int | None:
        ticks = re.findall(r"tick (\d+)", browser.find_element("id", "logs").text)
        return int(ticks[-1]) if ticks else None
    until(lambda: last_tick() is not None, what="log lines")
    seen = last_tick() or 0
    until(lambda: (last_tick() or 0) >= seen + 3, what="new log lines while following")
    assert unlabelled(browser) == []
    browser.save_screenshot(str(SHOTS / "pod.png"))


def test_exec_terminal(dashboard: str, browser: Any) -> None:
    # on the pod page of the previous test
    assert "Pod " in js(browser, "return document.querySelector('main h1').textContent")
    for attempt in range(3):  # a network change on this machine (other tests) may break the WebSocket's start
        browser.find_element("id", "exec-open").click()
        try:
            until(lambda: browser.find_element("id", "exec-state").text == "connected", 15, "exec connected",
                  explain=lambda: page_state(browser))
            break
        except AssertionError as e:
            if attempt == 2 or "ERR_NETWORK_CHANGED" not in str(e) and "could not connect" not in str(e):
                raise
    until(lambda: js(browser, "return document.activeElement.classList.contains('xterm-helper-textarea')"),
          what="terminal focused")
    browser.find_element("css selector", ".xterm-helper-textarea").send_keys("echo 4$((1+1))\n")

    def lines() -> list[str]:
        return js(browser, "return [...document.querySelectorAll('.xterm-rows > div')].map(d => d.textContent.trim())")
    until(lambda: "42" in lines(), what="42 in the terminal")  # the command line itself reads "echo 4$((1+1))"
    js(browser, "document.getElementById('terminal').scrollIntoView(false)")
    browser.save_screenshot(str(SHOTS / "terminal.png"))
    browser.find_element("css selector", ".xterm-helper-textarea").send_keys("exit\n")
    until(lambda: browser.find_element("id", "exec-state").text == "exited", what="the shell's end")


def points(driver: Any, panel: str, name: str, series: str) -> int:
    """How many samples the plot of `series` (cpu, memory) shows for `name` in the usage panel `panel`."""
    return int(js(driver, "return document.querySelector(`#${arguments[0]} figure[data-name='${arguments[1]}'] "
                          "svg[data-series='${arguments[2]}']`)?.dataset.points || 0", panel, name, series))


def test_usage_plots_for_node_and_pod(dashboard: str, browser: Any, dash_node: Node, ns: str) -> None:
    # sampled by the dashboard from the kubelet's Summary through nodes/{name}/proxy with the user's credentials
    go(browser, base(dashboard) + "/#/", "Overview")
    for series in ("cpu", "memory"):
        until(lambda: points(browser, "node-usage", dash_node.name, series) >= 2, 30, f"the node's {series} plot",
              explain=lambda: browser.find_element("id", "node-usage").text)
    label = browser.find_element("css selector", f"#node-usage figure[data-name='{dash_node.name}'] svg").get_attribute(
        "aria-label")
    assert label.startswith(f"Node {dash_node.name} cpu, last hour: now ")
    browser.save_screenshot(str(SHOTS / "overview-usage.png"))

    go(browser, base(dashboard) + "/#/pods", "Pods")
    choose_namespace(browser, ns)
    name = until(lambda: (lambda r: r[0] if r else None)(rows(browser)), what="a pod")
    go(browser, base(dashboard) + f"/#/pods/{ns}/{name}", f"Pod {ns}/{name}")
    for key in (name, f"{name}/ticker"):  # the pod, and its container
        for series in ("cpu", "memory"):
            until(lambda: points(browser, "pod-usage", key, series) >= 2, 30, f"the {series} plot of {key}",
                  explain=lambda: browser.find_element("id", "pod-usage").text)
    assert "Memory " in browser.find_element("css selector", f"#pod-usage figure[data-name='{name}']").text
    js(browser, "document.getElementById('pod-usage').scrollIntoView(false)")
    browser.save_screenshot(str(SHOTS / "pod-usage.png"))
    assert unlabelled(browser) == []


def test_pod_view_shows_previous_container_logs(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    script = "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo run $n; sleep 1; exit 1"
    api.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crasher"},
                      "spec": {"terminationGracePeriodSeconds": 1, "volumes": [{"name": "data", "emptyDir": {}}],
                               "containers": [{"name": "c", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                               "command": ["sh", "-c", script],
                                               "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                              {"name": "side", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                               "command": ["sh", "-c", "echo side-ok; exec sleep 3600"]}]}}, ns)
    def restarts_of_c() -> int:
        statuses = (api.get(PODS, "crasher", ns).get("status") or {}).get("containerStatuses") or []
        return next((int(x.get("restartCount", 0)) for x in statuses if x["name"] == "c"), 0)
    until(lambda: restarts_of_c() >= 1, 60, "a restart")
    go(browser, base(dashboard) + f"/#/pods/{ns}/crasher", f"Pod {ns}/crasher")

    def run_shown() -> int | None:
        runs = re.findall(r"run (\d+)", browser.find_element("id", "logs").text)
        return int(runs[-1]) if runs else None
    click(browser, "id", "log-previous")
    previous = until(run_shown, what="the previous container's log")
    restarts = int(browser.find_element("css selector", "table[aria-label='Containers'] tr[data-key='c']")
                   .find_elements("css selector", "td")[4].text)
    assert 1 <= previous <= restarts, (previous, restarts)  # an earlier run than the one now

    # the container picker: the other container's log (the current one: uncheck Previous)
    click(browser, "id", "log-previous")
    Select(browser.find_element("id", "log-container")).select_by_value("side")
    until(lambda: "side-ok" in browser.find_element("id", "logs").text, what="the side container's log")
    assert "run " not in browser.find_element("id", "logs").text
    api.delete(PODS, "crasher", ns, grace_period_seconds=0)


def test_scale_and_restart_from_page(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    go(browser, base(dashboard) + "/#/deployments", "Deployments")
    choose_namespace(browser, ns)
    until(lambda: rows(browser) == ["web"], what="the Deployment")
    field = browser.find_element("id", f"replicas-{ns}-web")
    field.clear()
    field.send_keys("2")
    browser.find_element("css selector", "tr[data-name='web'] button.scale").click()
    until(lambda: api.get(DEPLOYMENTS, "web", ns)["spec"]["replicas"] == 2, what="spec.replicas 2")
    until(lambda: "2/2" in browser.find_element("css selector", "tr[data-name='web']").text, 60, "2/2 ready")
    browser.find_element("css selector", "tr[data-name='web'] button.restart").click()
    until(lambda: "kubectl.kubernetes.io/restartedAt" in (
        api.get(DEPLOYMENTS, "web", ns)["spec"]["template"]["metadata"].get("annotations") or {}), what="restartedAt")
    assert unlabelled(browser) == []
    browser.save_screenshot(str(SHOTS / "deployments.png"))


def test_deployment_view_shows_rollout_revisions_and_pods(dashboard: str, browser: Any, ns: str) -> None:
    go(browser, base(dashboard) + "/#/deployments", "Deployments")
    choose_namespace(browser, ns)
    click(browser, "link text", "web")
    until(lambda: browser.find_element("id", "rollout-status").text == 'deployment "web" successfully rolled out', 60,
          "the restart rolled out", explain=lambda: browser.find_element("id", "rollout-status").text)

    until(lambda: column(browser, "Revisions", 0) == ["2", "1"], what="revisions 2 (the restart) and 1")
    until(lambda: len(column(browser, "Pods", 0)) == 2 and set(column(browser, "Pods", 2)) == {"Running"}, 60,
          "its two pods")
    assert "Available" in column(browser, "Conditions", 0)
    browser.save_screenshot(str(SHOTS / "deployment.png"))


def test_keyboard_reaches_navigation_and_tables_with_visible_focus(dashboard: str, browser: Any, ns: str) -> None:
    """Tab walks the skip link, every navigation link in order and the namespace picker, each with a visible focus
    ring; Enter opens a page; Tab from there reaches the links in its table, and Enter opens the row's page."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def press(key: str, shift: bool = False) -> dict[str, Any]:
        keys = ActionChains(browser)
        (keys.key_down(Keys.SHIFT).send_keys(key).key_up(Keys.SHIFT) if shift else keys.send_keys(key)).perform()
        return js(browser, """const e = document.activeElement, s = getComputedStyle(e);
            return {text: e.textContent.trim(), tag: e.tagName, id: e.id, href: e.getAttribute('href'),
                    ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2}""")
    go(browser, base(dashboard) + "/#/", "Overview")
    choose_namespace(browser, ns)
    # Tab from the top of the document (focusing the body moves the point sequential navigation starts from)
    js(browser, "document.body.tabIndex = -1; document.body.focus(); document.body.removeAttribute('tabindex')")
    nav = js(browser, "return [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
    walked = [press(Keys.TAB) for _ in range(len(nav) + 2)]
    assert walked[0]["text"] == "Skip to content", walked[0]
    assert [w["href"] for w in walked[1:-1]] == nav, walked
    assert walked[-1]["id"] == "namespace", walked[-1]
    assert all(w["ring"] for w in walked), [w for w in walked if not w["ring"]]  # focus visible on each

    # back to the Deployments link (Shift+Tab), Enter: its page, with the focus on the page's content
    for _ in range(len(nav) - nav.index("#/deployments")):
        focused = press(Keys.TAB, shift=True)
    assert focused["href"] == "#/deployments", focused
    press(Keys.ENTER)
    until(lambda: heading(browser) == "Deployments" and rows(browser) == ["web"], what="the Deployments page")
    for _ in range(5):  # Tab into the table: the Deployment's name links to its page
        focused = press(Keys.TAB)
        if focused["text"] == "web":
            break
    assert focused["text"] == "web" and focused["ring"], focused
    press(Keys.ENTER)
    until(lambda: heading(browser) == f"Deployment {ns}/web", what="the Deployment's page, opened with Enter")
    assert unlabelled(browser) == []


def workload_template(name: str, command: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", command]}]}}


def open_from_list(driver: Any, root: str, plural: str, title: str, ns: str, name: str, heading_text: str) -> None:
    """A workload's page, by its name's link in the list of its kind."""
    go(driver, f"{root}/#/{plural}", title)
    choose_namespace(driver, ns)
    click(driver, "link text", name)
    until(lambda: heading(driver) == heading_text, what=heading_text, explain=lambda: page_state(driver))


def test_statefulset_page_rollout_revisions_pods_restart_and_scale(dashboard: str, browser: Any, api: SyncClient,
                                                                    ns: str) -> None:
    api.create(STATEFULSETS, {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
                              "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                                       "template": workload_template("db", "exec sleep 3600")}}, ns)
    open_from_list(browser, base(dashboard), "statefulsets", "StatefulSets", ns, "db", f"StatefulSet {ns}/db")
    status = lambda: browser.find_element("id", "rollout-status").text  # noqa: E731
    until(lambda: status() == "partitioned roll out complete: 1 new pods have been updated...", 60, "rolled out",
          explain=status)
    until(lambda: column(browser, "Pods", 0) == ["db-0"] and column(browser, "Pods", 2) == ["Running"], 60, "db-0 Running")
    first = until(lambda: (lambda r: r[0] if len(r) == 1 else None)(column(browser, "Revisions", 1)), what="revision 1")
    assert facts(browser)["Current revision"] == facts(browser)["Update revision"] != "<none>"

    browser.find_element("css selector", "#workload-actions button.restart").click()  # a new template: revision 2
    until(lambda: column(browser, "Revisions", 0) == ["2", "1"], what="revisions 2 (the restart) and 1")
    assert "kubectl.kubernetes.io/restartedAt" in api.get(STATEFULSETS, "db", ns)["spec"]["template"]["metadata"]["annotations"]
    newest = column(browser, "Revisions", 1)[0].split(" ")[0]
    assert newest != first.split(" ")[0]
    until(lambda: facts(browser)["Update revision"] == facts(browser)["Current revision"] == newest
          and column(browser, "Pods", 2) == ["Running"], 60, "db-0 replaced at the new revision",
          explain=lambda: (facts(browser), column(browser, "Pods", 2)))

    # scale with the keyboard: the replicas field, Enter
    from selenium.webdriver.common.keys import Keys
    field = browser.find_element("id", f"replicas-{ns}-db")
    field.send_keys(Keys.CONTROL, "a", Keys.NULL, "2", Keys.ENTER)
    until(lambda: api.get(STATEFULSETS, "db", ns)["spec"]["replicas"] == 2, what="spec.replicas 2")
    until(lambda: column(browser, "Pods", 0) == ["db-0", "db-1"], 60, "db-1 on the page")
    until(lambda: facts(browser)["Replicas"].endswith("/2 ready"), what="the replica count")
    assert unlabelled(browser) == []
    browser.save_screenshot(str(SHOTS / "statefulset.png"))


def test_daemonset_page_rollout_revisions_pods_and_restart(dashboard: str, browser: Any, api: SyncClient,
                                                           dash_node: Node, ns: str) -> None:
    template = workload_template("agent", "exec sleep 3600")
    template["spec"]["containers"][0]["livenessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 30}
    api.create(DAEMONSETS, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
                            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template}}, ns)
    open_from_list(browser, base(dashboard), "daemonsets", "DaemonSets", ns, "agent", f"DaemonSet {ns}/agent")
    until(lambda: browser.find_element("id", "rollout-status").text == 'daemon set "agent" successfully rolled out', 60,
          "rolled out", explain=lambda: browser.find_element("id", "rollout-status").text)
    # the Pods table and the rollout status come from separate requests: either may show first
    until(lambda: column(browser, "Pods", 4) == [dash_node.name] and column(browser, "Pods", 2) == ["Running"], 30,
          "the pod on the page", explain=lambda: (column(browser, "Pods", 4), column(browser, "Pods", 2)))
    assert facts(browser)["Desired"] == facts(browser)["Ready"] == "1"
    until(lambda: column(browser, "Revisions", 0) == ["1"], what="revision 1")
    assert not browser.find_elements("id", f"replicas-{ns}-agent")  # a DaemonSet has no replicas to scale
    browser.save_screenshot(str(SHOTS / "daemonset.png"))

    # its pod's page (the link in the Pods table): the container's probes and the pod's events
    pod = column(browser, "Pods", 0)[0]
    click(browser, "link text", pod)
    until(lambda: heading(browser) == f"Pod {ns}/{pod}", what="the pod's page")
    until(lambda: column(browser, "Containers", 5) == ["liveness"], what="the probes")
    until(lambda: {"Created", "Started"} <= set(column(browser, "Events", 2)), 30, "the pod's events",
          explain=lambda: column(browser, "Events", 2))
    browser.back()
    until(lambda: heading(browser) == f"DaemonSet {ns}/agent", what="back on the DaemonSet's page")
    until(lambda: column(browser, "Revisions", 0) == ["1"], what="revision 1")
    browser.find_element("css selector", "#workload-actions button.restart").click()
    until(lambda: column(browser, "Revisions", 0) == ["2", "1"], what="revisions 2 (the restart) and 1")
    assert "kubectl.kubernetes.io/restartedAt" in api.get(DAEMONSETS, "agent", ns)["spec"]["template"]["metadata"]["annotations"]
    assert unlabelled(browser) == []


def test_cronjob_page_lists_its_jobs_and_job_page_shows_progress(dashboard: str, browser: Any, api: SyncClient,
                                                                 ns: str) -> None:
    job_spec = {"backoffLimit": 0, "template": {**workload_template("nightly", "echo done"),
                                                "spec": {**workload_template("nightly", "echo done")["spec"],
                                                         "restartPolicy": "Never"}}}
    cron = api.create(CRONJOBS, {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                                 "spec": {"schedule": "0 3 * * *", "suspend": True,
                                          "jobTemplate": {"spec": job_spec}}}, ns)
    # a run now, as `kubectl create job --from=cronjob/nightly` makes it: a Job the CronJob controls
    api.create(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "nightly-manual", "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                             "uid": cron["metadata"]["uid"], "controller": True}]}, "spec": job_spec}, ns)
    open_from_list(browser, base(dashboard), "cronjobs", "CronJobs", ns, "nightly", f"CronJob {ns}/nightly")
    until(lambda: facts(browser).get("Schedule") == "0 3 * * *", what="the CronJob's schedule")
    assert facts(browser)["Suspend"] == "true"
    until(lambda: column(browser, "Jobs", 0) == ["nightly-manual"], what="the CronJob's Job")
    until(lambda: column(browser, "Jobs", 1) == ["Complete"], 60, "the Job complete (live)",
          explain=lambda: column(browser, "Jobs", 1))
    browser.save_screenshot(str(SHOTS / "cronjob.png"))

    click(browser, "link text", "nightly-manual")
    until(lambda: heading(browser) == f"Job {ns}/nightly-manual", what="the Job's page")
    until(lambda: facts(browser).get("Status") == "Complete", what="the Job's status")
    got = facts(browser)
    assert (got["Completions"], got["Succeeded"], got["Failed"], got["Active"]) == ("1/1", "1", "0", "0"), got
    until(lambda: "Complete" in column(browser, "Conditions", 0), what="the Complete condition")
    assert column(browser, "Conditions", 1)[column(browser, "Conditions", 0).index("Complete")] == "True"
    until(lambda: column(browser, "Pods", 2) == ["Completed"], what="its pod, Completed")
    assert not browser.find_elements("css selector", "#workload-actions button")  # nothing to scale or restart
    assert unlabelled(browser) == []
    browser.save_screenshot(str(SHOTS / "job.png"))


def test_invalid_yaml_edit_shows_api_error(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    def settled() -> bool:  # the restart's rollout done: no status write changes the resourceVersion under the edit
        d = api.get(DEPLOYMENTS, "web", ns)
        st = d.get("status") or {}
        return (st.get("observedGeneration") == d["metadata"]["generation"]
                and st.get("replicas") == st.get("updatedReplicas") == st.get("availableReplicas") == 2)
    until(settled, 60, "the restarted Deployment settled")
    go(browser, base(dashboard) + f"/#/yaml/deployments/{ns}/web", f"YAML of deployments/{ns}/web")
    area = browser.find_element("id", "yaml-text")
    until(lambda: "\n  replicas: 2\n" in area.get_attribute("value"), what="the YAML")
    js(browser, "const a = document.getElementById('yaml-text'); a.value = a.value.replace('\\n  replicas: 2\\n', "
                "'\\n  replicas: -1\\n')")
    browser.find_element("id", "yaml-save").click()
    cause = until(lambda: browser.find_element("css selector", "#yaml-errors li[data-field='spec.replicas']"),
                  what="the error of spec.replicas", explain=lambda: browser.find_element("id", "yaml-errors").text)
    assert "greater than or equal to 0" in cause.text
    line = next(i for i, text in enumerate(area.get_attribute("value").split("\n"), 1) if text == "  replicas: -1")
    assert f"line {line}" in cause.text
    assert "is invalid" in browser.find_element("id", "yaml-errors").text  # the Status' message
    # and beside the editor, at the field's line
    marker = browser.find_element("css selector", ".marker[data-field='spec.replicas']")
    assert marker.is_displayed() and "greater than or equal to 0" in marker.text
    offset = js(browser, """const a = document.getElementById('yaml-text'), s = getComputedStyle(a);
        const lh = parseFloat(s.lineHeight), m = document.querySelector('.marker').getBoundingClientRect();
        const y = a.getBoundingClientRect().top + a.clientTop + parseFloat(s.paddingTop) + (arguments[0] - 1) * lh - a.scrollTop;
        return Math.abs(m.top + m.height / 2 - (y + lh / 2)) / lh""", line)
    assert offset < 0.5, f"the marker is {offset} lines off its field"
    assert api.get(DEPLOYMENTS, "web", ns)["spec"]["replicas"] == 2
    assert unlabelled(browser) == []
    browser.save_screenshot(str(SHOTS / "yaml.png"))


def test_services_show_nodeport_url_and_secrets_stay_hidden(dashboard: str, browser: Any, api: SyncClient,
                                                             ns: str) -> None:
    svc = api.create(kind("services"), {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                        "spec": {"type": "NodePort", "selector": {"app": "web"},
                                                 "ports": [{"port": 80}]}}, ns)
    node_port = svc["spec"]["ports"][0]["nodePort"]
    go(browser, base(dashboard) + "/#/services", "Services")
    choose_namespace(browser, ns)
    until(lambda: browser.find_element("css selector", "tr[data-name='web'] a[href^='http']").get_attribute("href")
          == f"http://127.0.0.1:{node_port}/", what="the NodePort URL (the node's InternalIP)")
    until(lambda: re.search(r"\d+\.\d+\.\d+\.\d+:80",
                            browser.find_element("css selector", "tr[data-name='web']").find_elements(
                                "css selector", "td")[5].text), 30, "the Service's endpoints")
    browser.save_screenshot(str(SHOTS / "services.png"))

    api.create(kind("secrets"), {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                                 "stringData": {"password": "s3cr3t-value"}}, ns)
    go(browser, base(dashboard) + "/#/secrets", "Secrets")
    row = until(lambda: browser.find_element("css selector", "tr[data-name='creds']"), what="the Secret")
    assert "password" in row.text and "s3cr3t-value" not in browser.page_source
    button = row.find_element("css selector", "button")
    button.click()
    until(lambda: "s3cr3t-value" in row.text, what="the value once asked for")
    assert button.get_attribute("aria-expanded") == "true"
    button.click()
    until(lambda: "s3cr3t-value" not in browser.page_source, what="the value hidden again")
    assert unlabelled(browser) == []

    # a big object arrives through the watch too (one event of 300 kB, beyond any line-length limit)
    go(browser, base(dashboard) + "/#/configmaps", "ConfigMaps")
    until(lambda: browser.find_element("css selector", "table[aria-label='ConfigMaps'] tbody tr"), what="the table")
    api.create(kind("configmaps"), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
                                    "data": {"blob": "x" * 300_000}}, ns)
    until(lambda: "big" in rows(browser), what="the big ConfigMap")


def test_ingress_and_hpa_pages(dashboard: str, browser: Any, api: SyncClient, ns: str) -> None:
    go(browser, base(dashboard) + "/#/ingresses", "Ingresses")
    choose_namespace(browser, ns)
    until(lambda: browser.find_element("css selector", "table[aria-label='Ingresses'] tbody tr"), what="the table")
    api.create(kind("ingresses"), {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "front"},
        "spec": {"tls": [{"hosts": ["shop.example"], "secretName": "shop-tls"}],
                 "rules": [{"host": "shop.example", "http": {"paths": [
                     {"path": "/api", "pathType": "Prefix",
                      "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}, ns)
    row = until(lambda: browser.find_element("css selector", "tr[data-name='front']"), what="the Ingress (live)")
    assert "shop.example/api (Prefix) → web:80" in row.text and "shop-tls (shop.example)" in row.text, row.text
    browser.save_screenshot(str(SHOTS / "ingresses.png"))

    go(browser, base(dashboard) + "/#/horizontalpodautoscalers", "HorizontalPodAutoscalers")
    until(lambda: browser.find_element("css selector", "table[aria-label='HorizontalPodAutoscalers'] tbody tr"),
          what="the table")
    api.create(kind("horizontalpodautoscalers"), {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {
                     "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]}}, ns)
    row = until(lambda: browser.find_element("css selector", "tr[data-name='web']"), what="the HPA (live)")
    cells = [td.text for td in row.find_elements("css selector", "td")]
    assert cells[2] == "Deployment/web" and cells[4:6] == ["1", "4"], cells
    assert re.fullmatch(r"cpu: (<unknown>|\d+%)/60%", cells[3]), cells
    assert unlabelled(browser) == []


def test_pvc_and_pv_pages_and_nothing_fetched_from_elsewhere(dashboard: str, browser: Any, api: SyncClient,
                                                             ns: str) -> None:
    pv_name = unique("dash-pv")
    go(browser, base(dashboard) + "/#/persistentvolumes", "PersistentVolumes")
    until(lambda: browser.find_element("css selector", "table[aria-label='PersistentVolumes'] tbody tr"), what="the table")
    api.create(kind("persistentvolumes"), {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "dash-manual",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/tmp/" + pv_name}}})
    try:
        row = until(lambda: browser.find_element("css selector", f"tr[data-name='{pv_name}']"), what="the PV (live)")
        assert "1Gi" in row.text and "ReadWriteOnce" in row.text and "Retain" in row.text, row.text
        go(browser, base(dashboard) + "/#/persistentvolumeclaims", "PersistentVolumeClaims")
        choose_namespace(browser, ns)
        until(lambda: browser.find_element("css selector", "table[aria-label='PersistentVolumeClaims'] tbody tr"),
              what="the table")
        api.create(kind("persistentvolumeclaims"), {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "dash-manual", "volumeName": pv_name,
                     "resources": {"requests": {"storage": "1Gi"}}}}, ns)
        row = until(lambda: browser.find_element("css selector", "tr[data-name='data']"), what="the PVC (live)")
        assert "dash-manual" in row.text and "ReadWriteOnce" in row.text, row.text
        until(lambda: "Bound" in browser.find_element("css selector", "tr[data-name='data']").text, 30,
              "the claim bound to its volume", explain=lambda: browser.find_element("css selector", "tr[data-name='data']").text)
    finally:
        api.delete(kind("persistentvolumeclaims"), "data", ns)
        api.delete(kind("persistentvolumes"), pv_name)
    # every file and connection of the page comes from the dashboard itself (no CDN)
    elsewhere = js(browser, "return performance.getEntriesByType('resource').map(e => e.name)"
                            ".filter(n => !n.startsWith(location.origin + '/'))")
    assert elsewhere == []


@pytest.mark.parametrize("args, message", [
    (["--address", "0.0.0.0"], "error: --address 0.0.0.0 is not a loopback address"),
    (["--port", "70000"], "port"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], "error: cannot read kubeconfig /nonexistent/kubeconfig"),
])
def test_pkctl_dashboard_refuses_bad_flags(args: list[str], message: str) -> None:
    r = run_pkctl("dashboard", "--no-open", *([] if "--kubeconfig" in args else ["--server", "http://127.0.0.1:1"]),
                  *args, timeout=30)
    assert r.returncode != 0 and message in r.stderr, r.stderr
    assert "Dashboard" not in r.stdout


def test_every_page_renders_without_errors(dashboard: str, browser: Any, ns: str) -> None:
    go(browser, base(dashboard) + "/#/", "Overview")
    browser.get_log("browser")  # what came before
    links = js(browser, "return [...document.querySelectorAll('nav a')].map(a => [a.getAttribute('href'), a.textContent])")
    titles = {"PVCs": "PersistentVolumeClaims", "PVs": "PersistentVolumes", "HPAs": "HorizontalPodAutoscalers"}
    for href, text in links:
        browser.find_element("css selector", f"nav a[href='{href}']").click()
        until(lambda: js(browser, "return document.querySelector('main h1')?.textContent") == titles.get(text, text)
              and js(browser, "return document.querySelector('main tbody tr')") is not None, what=f"page {text}")
        assert unlabelled(browser) == [], text
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
