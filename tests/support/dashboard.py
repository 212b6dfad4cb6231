"""The web dashboard as a process and a headless Chromium to look at it (Selenium with Debian's chromium and
chromium-driver), shared by tests/dashboard and bench/dashboard.py."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from tests.support.pkctl import ROOT
from tests.util import wait_for_sync

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DASHBOARD_LOG = Path(tempfile.gettempdir()) / "pkube-dashboard-test.log"
LOGIN = re.compile(r"(http://127\.0\.0\.1:\d+/login\?token=\S+)")


def chromium_available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


@contextmanager
def serve(kubeconfig: str, via_pkctl: bool = True,
          env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`pkctl dashboard --no-open` (or `pkube dashboard` itself) on a free port, with `env` added to its
    environment: (the login URL it printed, the process); stopped with Ctrl-C (SIGINT) after, which must end it cleanly. Its log goes to a file (a pipe nobody
    reads while it runs would fill up and stop it); DASHBOARD_LOG names where the last run's log is kept."""
    command = ["pkctl.main", "dashboard", "--no-open"] if via_pkctl else ["launcher", "dashboard"]
    with open(DASHBOARD_LOG, "w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", *command, "--kubeconfig", kubeconfig], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, **(env or {})})
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            m = LOGIN.search(line)
            assert m, f"no login link in {line!r}; log: {DASHBOARD_LOG.read_text()[-2000:]}"
            yield m.group(1), proc
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        assert proc.returncode == 0, DASHBOARD_LOG.read_text()[-2000:]


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A headless Chromium driven by Selenium (no download: Debian's browser and driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console: driver.get_log("browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--no-first-run", "--disable-background-networking"):
        opts.add_argument(arg)
    tmp = tempfile.mkdtemp(prefix="pkt-chromium-")  # Chromium leaves directories in $TMPDIR: its own one
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": tmp}), options=opts)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def base(login_url: str) -> str:
    return login_url.split("/login", 1)[0]


def until(check: Callable[[], Any], timeout: float = 30, what: str = "condition",
          explain: Callable[[], Any] | None = None) -> Any:
    """wait_for_sync for a page: a browser read that fails (an element not there yet, or gone stale) is a "not yet";
    `explain()` adds what the page shows to the failure."""
    from selenium.common.exceptions import WebDriverException

    def attempt() -> Any:
        try:
            return check()
        except WebDriverException:
            return None
    try:
        return wait_for_sync(attempt, timeout, 0.05, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; {explain()}" if explain else str(e)) from None
