"""A tiny threaded HTTP file server in the test process, counting the requests per path (the build tests' ADD of a
URL, the local package index of tests/support/python_image.py)."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

from tests.util import free_port


class FileServer:
    """Serves the files under `root` on `host`:`port`; `hits` counts the GET requests per path. Subclasses add
    response headers with `extra_headers`."""

    def __init__(self, root: Path, host: str):
        self.root = root
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                super().do_GET()

            def end_headers(self) -> None:
                for name, value in server.extra_headers(self.path).items():
                    self.send_header(name, value)
                super().end_headers()

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass
        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer((host, self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def extra_headers(self, path: str) -> dict[str, str]:
        return {}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
