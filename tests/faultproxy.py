"""A small HTTP proxy for tests that injects faults on a schedule: 429 with Retry-After,
500, a connection reset (closed without a response), or a delay past the client's timeout
before forwarding. It counts what it did so a test can check nothing was lost or doubled."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "reset", "delay")


class FaultProxy:
    def __init__(self, upstream_port: int, schedule: Sequence[str | None], delay: float = 2.0):
        """schedule[k % len(schedule)] is the fault for the k-th request (None: forward)."""
        self.upstream_port = upstream_port
        self.schedule = list(schedule)
        self.delay = delay
        self.lock = threading.Lock()
        self.count = 0
        self.injected: dict[str, int] = {f: 0 for f in FAULTS}
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self._handle(body)

            def _handle(self, body: bytes) -> None:
                with proxy.lock:
                    fault = proxy.schedule[proxy.count % len(proxy.schedule)]
                    proxy.count += 1
                    if fault:
                        proxy.injected[fault] += 1
                if fault == "429":
                    self._reply(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0.2"})
                    return
                if fault == "500":
                    self._reply(500, b'{"error": {"message": "boom"}}')
                    return
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "delay":
                    time.sleep(proxy.delay)
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "content-length")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                res = conn.getresponse()
                data = res.read()
                conn.close()
                with proxy.lock:
                    proxy.forwarded += 1
                # the client may have given up (timeout) and closed the connection
                with contextlib.suppress(OSError):
                    self._reply(res.status, data, {"Content-Type": res.getheader(
                        "Content-Type", "application/json")})

            def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None
                       ) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
