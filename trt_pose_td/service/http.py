"""The service's HTTP endpoints (stdlib ``http.server``, a bounded set of handler threads).

``/``              preview page (static/index.html): the stream and live stats
``/healthz``       200 ``{"healthy": true, ...}`` or 503 with the reason (source lost, stale, ...);
                   ``sinks`` (MQTT, its spool, the JSONL file), ``warnings``, ``run_id``
``/metrics``       Prometheus text: fps, per-stage latency, persons, drops, reconnects, errors
``/stats.json``    the numbers the page shows
``/stream.mjpg``   ``multipart/x-mixed-replace`` MJPEG of annotated frames
``/snapshot.jpg``  one annotated frame

With several cameras, ``?camera=NAME`` picks the camera of ``/stream.mjpg`` and
``/snapshot.jpg`` (default: the first), the page shows every camera, and ``/healthz`` has every
camera's verdict under ``cameras`` (its status: all healthy, or any with
``[service] healthy_when = "any"``).

Hardened for a LAN: at most ``max_connections`` connections are served at once (the next ones
are closed at accept, counted and logged once per interval), each with an idle / read / write
timeout, so a flood of half-open connections costs a bounded number of threads and file
descriptors and never the inference thread. With a token, every route but ``/healthz`` needs
``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``, which the preview page passes on).
A thread per connection (not asyncio) because the MJPEG stream blocks on the preview encoder's
condition variable and the handlers are plain blocking code; the cap bounds the threads.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import ConfigError
from .preview import Preview
from .stats import ServiceStats

log = logging.getLogger(__name__)

BOUNDARY = "trtposetdframe"
#: Refused connections are logged at most once per this many seconds (with their count).
REFUSED_LOG_INTERVAL_S = 60.0
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


def static_file(name: str) -> bytes:
    """A file of the package's static/ folder (installed as package data)."""
    return (Path(__file__).parent / "static" / name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.timeout_s)  # idle / read / write timeout

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s - %s", self.address_string(),
                  _TOKEN_IN_QUERY.sub(r"\1***", format % args))

    def _authorized(self, path: str) -> bool:
        token = self.server.token
        if token is None or path == "/healthz":
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            given = given[len("Bearer "):].strip()
        else:
            query = self.path.partition("?")[2]
            given = next((v for k, _, v in (p.partition("=") for p in query.split("&"))
                          if k == "token"), "")
        return hmac.compare_digest(given.encode(), token.encode())

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
            if not self._authorized(path):
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Bearer realm="trt-pose-td"')
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path in ("/", "/index.html"):
                self._send(200, srv.page, "text/html; charset=utf-8")
            elif path == "/healthz":
                snap = srv.stats.snapshot()
                doc = {k: snap[k] for k in ("healthy", "status", "camera", "frames", "fps",
                                            "last_frame_age_s", "source", "sinks", "warnings")}
                doc["run_id"] = snap["info"].get("run_id")
                if "cameras" in snap:
                    doc["cameras"] = {name: {k: c[k] for k in (
                        "healthy", "status", "frames", "fps", "last_frame_age_s", "source",
                        "sinks", "warnings")} for name, c in snap["cameras"].items()}
                self._json(200 if snap["healthy"] else HTTPStatus.SERVICE_UNAVAILABLE, doc)
            elif path == "/metrics":
                self._send(200, srv.stats.prometheus().encode(),
                           "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/stats.json":
                self._json(200, srv.stats.snapshot())
            elif path in ("/snapshot.jpg", "/stream.mjpg") and self._camera_arg() not in (
                    None, *srv.previews):
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such camera",
                                                  "cameras": list(srv.previews)})
            elif path == "/snapshot.jpg":
                preview = self._preview()
                jpeg = preview.snapshot() if preview else None
                if jpeg is None:
                    self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
                else:
                    self._send(200, jpeg, "image/jpeg")
            elif path == "/stream.mjpg" and self._preview() is not None:
                self._stream(self._preview())  # type: ignore[arg-type]
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
        except OSError:
            self.close_connection = True  # the client went away or timed out

    def _camera_arg(self) -> Optional[str]:
        query = self.path.partition("?")[2]
        return next((v for k, _, v in (p.partition("=") for p in query.split("&"))
                     if k == "camera"), None)

    def _preview(self) -> Optional[Preview]:
        """The preview of ``?camera=NAME`` (default: the first camera's)."""
        name = self._camera_arg()
        return self.server.preview if name is None else self.server.previews.get(name)

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
    request_queue_size = 64

    def __init__(self, address: tuple, stats: ServiceStats, preview: Optional[Preview],
                 token: Optional[str], max_connections: int, timeout_s: float,
                 previews: Optional[Dict[str, Preview]] = None) -> None:
        self.stats, self.preview, self.token = stats, preview, token
        self.previews: Dict[str, Preview] = previews or {}
        self.timeout_s, self.max_connections = timeout_s, max_connections
        self.stopping = threading.Event()
        self.page = static_file("index.html")
        self._slots = threading.BoundedSemaphore(max_connections)
        self.refused = self._refused_unlogged = 0
        self._refused_logged_at = -REFUSED_LOG_INTERVAL_S
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve on a new thread while a slot is free; otherwise close the connection now."""
        if not self._slots.acquire(blocking=False):
            self._count_refused()
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _count_refused(self) -> None:
        self.refused += 1
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= REFUSED_LOG_INTERVAL_S:
            log.warning("http: %d connection(s) closed unserved: %d already open "
                        "([http] max_connections); inference is not affected",
                        self._refused_unlogged, self.max_connections)
            self._refused_logged_at, self._refused_unlogged = now, 0


class HttpServer:
    """Serves the endpoints on ``host:port`` (port 0 picks a free one: see :attr:`port`).

    token: required as a bearer token on every route but /healthz (None: no authentication).
    stats: a :class:`ServiceStats` or, with several cameras, a :class:`.stats.StatsGroup`;
    previews: every camera's preview by name (``?camera=NAME``), ``preview`` the default one.
    """

    def __init__(self, host: str, port: int, stats: Any, preview: Optional[Preview],
                 token: Optional[str] = None, max_connections: int = 32,
                 timeout_s: float = 10.0, previews: Optional[Dict[str, Preview]] = None) -> None:
        try:
            self._server = _Server((host, port), stats, preview, token, max_connections,
                                   timeout_s, previews)
        except OSError as exc:
            raise ConfigError(f"[http] cannot listen on {host}:{port}: {exc.strerror}; pick "
                              "another port (--http PORT) or stop what uses it") from None
        self.host, self.port = str(self._server.server_address[0]), int(
            self._server.server_address[1])
        stats.http_refused = lambda: self._server.refused
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        where = " (every interface)" if self.host in ("0.0.0.0", "::") else ""
        log.info("http: listening on %s:%d%s, preview http://%s:%d/ (/healthz, /metrics, "
                 "/stream.mjpg); %s, at most %d connection(s), %.0f s timeout", self.host,
                 self.port, where, self.host, self.port,
                 "bearer token required" if self._server.token else "no authentication",
                 self._server.max_connections, self._server.timeout_s)
        return self

    @property
    def refused(self) -> int:
        """Connections closed unserved because ``max_connections`` were open."""
        return self._server.refused

    def close(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
