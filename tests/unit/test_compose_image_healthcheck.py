"""Compose services without a healthcheck key get their image's HEALTHCHECK (as with Docker), as readiness
probes; a file's own healthcheck (or `disable: true`) wins. Images from a store in a temp dir."""
from __future__ import annotations

import argparse
from pathlib import Path

from images.store import ImageStore
from pkctl.compose.commands import plan_of, use_image_healthchecks
from pkctl.compose.model import Healthcheck, image_healthcheck, load


def test_image_healthcheck_forms() -> None:
    assert image_healthcheck({"Test": ["CMD-SHELL", "wget -q -O- localhost || exit 1"], "Interval": 5_000_000_000,
                              "Retries": 2}) == Healthcheck(["sh", "-c", "wget -q -O- localhost || exit 1"],
                                                            interval=5.0, retries=2)
    assert image_healthcheck({"Test": ["CMD", "/bin/check", "--deep"], "Timeout": 1_500_000_000,
                              "StartPeriod": 60_000_000_000}) == Healthcheck(["/bin/check", "--deep"], timeout=1.5,
                                                                             start_period=60.0)
    for none in (None, {}, {"Test": ["NONE"]}, {"Test": []}, "junk"):
        assert image_healthcheck(none) is None


def test_up_uses_the_image_healthcheck_unless_the_file_has_one(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    check = {"Test": ["CMD-SHELL", "test -f /ready"], "Interval": 7_000_000_000, "Retries": 4}
    for name in ("pkube.local/app-web:latest", "pkube.local/app-db:latest", "pkube.local/app-nocheck:latest"):
        store.commit({"config": {"Cmd": ["sh"], "Healthcheck": check}}, [], name)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "docker-compose.yml").write_text(
        "services:\n"
        "  web: {image: pkube.local/app-web:latest}\n"
        "  db:\n    image: pkube.local/app-db:latest\n    healthcheck: {test: [CMD, pg_isready], interval: 2s}\n"
        "  nocheck:\n    image: pkube.local/app-nocheck:latest\n    healthcheck: {disable: true}\n"
        "  other: {image: pkube.local/not-here:1}\n")
    project = load(tmp_path / "app" / "docker-compose.yml", environ={})
    assert use_image_healthchecks(argparse.Namespace(image_root=store.root), project)
    containers = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
                  for d in plan_of(project).objects() if d["kind"] == "Deployment"}
    assert containers["web"]["readinessProbe"] == {"exec": {"command": ["sh", "-c", "test -f /ready"]},
                                                   "periodSeconds": 7, "timeoutSeconds": 30, "failureThreshold": 4,
                                                   "initialDelaySeconds": 0}
    assert containers["db"]["readinessProbe"]["exec"]["command"] == ["pg_isready"]
    assert "readinessProbe" not in containers["nocheck"] and "readinessProbe" not in containers["other"]

    missing = tmp_path / "no-store"
    assert not use_image_healthchecks(argparse.Namespace(image_root=missing), project) and not missing.exists()
