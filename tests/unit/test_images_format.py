"""`pkctl image` output formatting: Docker-style sizes and ages, and the progress line."""
from __future__ import annotations

import io

from pkctl.commands.image import TerminalReporter, human_ago, human_size


def test_human_size_uses_decimal_units_like_docker() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_101_694, 45_600_000, 3_210_000_000)] == \
        ["0B", "999B", "1kB", "1.1MB", "45.6MB", "3.21GB"]


def test_human_ago() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert human_ago("2023-11-14T22:13:19.5Z", now) == "Less than a second ago"
    assert human_ago("2023-11-14T22:12:50Z", now) == "30 seconds ago"
    assert human_ago("2023-11-14T22:12:10Z", now) == "About a minute ago"
    assert human_ago("2023-11-14T21:13:20Z", now) == "About an hour ago"
    assert human_ago("2023-11-14T19:13:20.123456789Z", now) == "3 hours ago"
    assert human_ago("2023-11-04T22:13:20Z", now) == "10 days ago"
    assert human_ago("2023-09-14T22:13:20Z", now) == "2 months ago"
    assert human_ago(None, now) == "N/A" and human_ago("yesterday", now) == "N/A"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_on_a_tty_and_silent_otherwise() -> None:
    tty = _Tty()
    r = TerminalReporter(tty)
    r.progress("sha256:a", 500, 1000)
    r.progress("sha256:a", 1000, 1000)
    r.line("done")
    out = tty.getvalue()
    assert "\r\033[KDownloading 1/1 blobs: 1kB / 1kB" in out and out.endswith("\r\033[Kdone\n")
    plain = io.StringIO()
    p = TerminalReporter(plain)
    p.progress("sha256:a", 1000, 1000)
    p.line("done")
    assert plain.getvalue() == "done\n"
