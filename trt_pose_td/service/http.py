"""The service's HTTP endpoints (stdlib ``http.server``, one thread per connection).

``/``              preview page (static/index.html): the stream and live stats
``/healthz``       200 ``{"healthy": true, ...}`` or 503 with the reason (source lost, stale, ...)
``/metrics``       Prometheus text: fps, per-stage latency, persons, drops, reconnects, errors
``/stats.json``    the numbers the page shows
``/stream.mjpg``   ``multipart/x-mixed-replace`` MJPEG of annotated frames
``/snapshot.jpg``  one annotated frame
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from ..errors import ConfigError
from .preview import Preview
from .stats import ServiceStats

log = logging.getLogger(__name__)

BOUNDARY = "trtposetdframe"


def static_file(name: str) -> bytes:
    """A file of the package's static/ folder (installed as package data)."""
    return (Path(__file__).parent / "static" / name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if not cache:
            self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, (json.dumps(doc, indent=1) + "\n").encode(), "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        srv = self.server
        try:
            if path in ("/", "/index.html"):
                self._send(200, srv.page, "text/html; charset=utf-8")
            elif path == "/healthz":
                snap = srv.stats.snapshot()
                doc = {k: snap[k] for k in ("healthy", "status", "camera", "frames", "fps",
                                            "last_frame_age_s", "source", "sinks")}
                self._json(200 if snap["healthy"] else HTTPStatus.SERVICE_UNAVAILABLE, doc)
            elif path == "/metrics":
                self._send(200, srv.stats.prometheus().encode(),
                           "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/stats.json":
                self._json(200, srv.stats.snapshot())
            elif path == "/snapshot.jpg":
                jpeg = srv.preview.snapshot() if srv.preview else None
                if jpeg is None:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
                else:
                    self._send(200, jpeg, "image/jpeg")
            elif path == "/stream.mjpg" and srv.preview is not None:
                self._stream(srv.preview)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    def _stream(self, preview: Preview) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        for jpeg in preview.stream(self.server.stopping):
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                             f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
            self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple, stats: ServiceStats, preview: Optional[Preview]) -> None:
        self.stats, self.preview = stats, preview
        self.stopping = threading.Event()
        self.page = static_file("index.html")
        super().__init__(address, _Handler)


class HttpServer:
    """Serves the endpoints on ``host:port`` (port 0 picks a free one: see :attr:`port`)."""

    def __init__(self, host: str, port: int, stats: ServiceStats,
                 preview: Optional[Preview]) -> None:
        try:
            self._server = _Server((host, port), stats, preview)
        except OSError as exc:
            raise ConfigError(f"[http] cannot listen on {host}:{port}: {exc.strerror}; pick "
                              "another port (--http PORT) or stop what uses it") from None
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        log.info("http: preview on http://%s:%d/ (/healthz, /metrics, /stream.mjpg)", shown,
                 self.port)
        return self

    def close(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
