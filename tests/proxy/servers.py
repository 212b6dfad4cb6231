"""Tiny programs the proxy tests run inside "pod" network namespaces (`python -m tests.proxy.servers ...`).

    who-am-i PORT NAME   HTTP: answers "NAME CLIENT-ADDRESS" (shows whether the proxy masqueraded)
    udp-echo PORT NAME   UDP: answers every datagram with NAME
    fetch URL            prints the body of a GET (busybox-static's wget crashes in these namespaces)
"""
from __future__ import annotations

import http.server
import socket
import sys
import urllib.request


def who_am_i(port: int, name: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: lets tests hold one connection across a proxy restart

        def do_GET(self) -> None:
            body = f"{name} {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    http.server.ThreadingHTTPServer(("", port), Handler).serve_forever()


def udp_echo(port: int, name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("", port))
        while True:
            _, addr = s.recvfrom(2048)
            s.sendto(name.encode(), addr)


def fetch(url: str) -> None:
    with urllib.request.urlopen(url, timeout=3) as r:
        sys.stdout.write(r.read().decode())


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "who-am-i":
        who_am_i(int(args[0]), args[1])
    elif command == "udp-echo":
        udp_echo(int(args[0]), args[1])
    elif command == "fetch":
        fetch(args[0])
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
