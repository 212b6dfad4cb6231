"""Attack: root runs `pkctl cluster down` (or up, or dashboard) in a directory another user can write to, such as
/tmp, where that user left a Python package named like one of pkube's. The helper processes pkctl starts
(`python -m launcher ...`, the supervisor) must not import it: they run with `-P` (no current directory on the
module path)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pkctl.cluster.components import BY_NAME
from pkctl.cluster.home import ClusterConfig, Home
from tests.util import unique

pytestmark = pytest.mark.root


def test_a_package_planted_in_the_current_directory_is_not_run_by_a_cleanup(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "planted-code-ran"
    for name in ("launcher", "json", "argparse"):  # pkube's own module and two it imports on the way
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        (package / "__main__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    table = unique("pkt-cwd")
    cleanup = BY_NAME["proxy"].cleanup
    assert cleanup is not None
    problems = cleanup(Home(tmp_path / "home"), ClusterConfig(2379, 2380, 6443, proxy_table=table))
    assert not marker.exists(), "a helper imported code from the current directory"
    assert problems == []
    assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
