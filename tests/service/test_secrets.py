"""Nothing secret leaves `serve`: a camera password (in the URI, or in a password file) and the
HTTP token are searched for in every output channel -- JSONL, MQTT payloads through a real
mosquitto, the MQTT spool on disk (the broker is stopped once), /healthz, /metrics, /stats.json,
the preview page and the log -- while the source (an MJPEG camera on loopback demanding HTTP
Basic auth) streams, drops and reconnects."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from tests.service.helpers import (
    Broker,
    MjpegCamera,
    Serve,
    Subscriber,
    http_get,
    video_frames,
    wait_for,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("paho.mqtt.client")

SECRET = "Sup3r-s3cret-pw"
TOKEN = "tok-9f8e7d6c5b4a"
ROUTES = ("/", "/metrics", "/stats.json", "/snapshot.jpg", "/stream.mjpg", "/nope")


def config(tmp_path: Path, camera: MjpegCamera, broker: Broker, form: str) -> str:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "camera-password").write_text(SECRET + "\n")
    if form == "uri":
        source = f'uri = "http://admin:{SECRET}@127.0.0.1:{camera.port}/cam.mjpg"'
    else:
        source = (f'uri = "http://127.0.0.1:{camera.port}/cam.mjpg"\nusername = "admin"\n'
                  f'password_file = "{tmp_path / "camera-password"}"')
    text = f"""
[source]
{source}
timeout_s = 2.0
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[jsonl]
path = "{tmp_path / 'poses.jsonl'}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[http]
token_file = "{tmp_path / 'token'}"
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def get(serve: Serve, route: str, token: str = TOKEN) -> tuple:
    status, _, body = http_get(serve.url + route, token=token)
    return status, body.decode("utf-8", "replace")


def frames(serve: Serve) -> int:
    status, body = get(serve, "/stats.json")
    return json.loads(body)["frames"] if status == 200 else 0


def spooled(serve: Serve) -> int:
    status, body = get(serve, "/stats.json")
    return json.loads(body)["sinks"]["mqtt"]["spooled"] if status == 200 else 0


def spool_text(tmp_path: Path, raw: bool = False) -> str:
    """The spooled messages (decompressed), or ``raw``: every byte under the state folder."""
    folder = tmp_path / "state" / "trt-pose-td" / "spool"
    if raw:
        return "".join(f.read_bytes().decode("latin-1") for f in folder.iterdir())
    with sqlite3.connect(f"file:{folder / 'camera0.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT topic, payload FROM spool").fetchall()
    return "\n".join(t + zlib.decompress(p).decode() for t, p in rows)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["uri", "password_file"])
def test_no_channel_shows_the_camera_password_or_the_token(service_clip, tmp_path, procs, form):
    camera = MjpegCamera(video_frames(service_clip), fps=8, frames_per_connection=12,
                         auth=("admin", SECRET)).start()
    broker = Broker().start()
    sub = Subscriber(broker.port, "trt-pose-td/#")
    serve = Serve(tmp_path, "--config", config(tmp_path, camera, broker, form))
    procs.append(serve)
    seen = []
    try:
        wait_for(lambda: serve.serving() and frames(serve) >= 10, 90, "ten processed frames")
        wait_for(lambda: camera.authorized >= 3, 30, "reconnects that pass the camera's auth")
        # the token guards every route but /healthz
        for route in ROUTES:
            assert get(serve, route, token="")[0] == 401, route
            assert get(serve, route, token="wrong")[0] == 401, route
        assert get(serve, "/healthz", token="")[0] in (200, 503)
        assert http_get(serve.url + f"/stats.json?token={TOKEN}")[0] == 200
        seen += [get(serve, r)[1] for r in ("/", "/metrics", "/stats.json")]
        broker.stop()  # an outage: the poses go to the spool on disk
        wait_for(lambda: spooled(serve) >= 3, 60, "poses in the spool")
        spool = spool_text(tmp_path)
        broker.start()
        camera.stop()  # unplugged: open errors and reconnect messages carry the URI
        wait_for(lambda: "cannot open" in get(serve, "/healthz", "")[1], 30,
                 "/healthz naming the open error")
        health = get(serve, "/healthz", "")[1]
        assert f"cannot open http://***@127.0.0.1:{camera.port}/cam.mjpg" in health
        seen += [health] + [get(serve, r)[1] for r in ("/metrics", "/stats.json")]
        camera.start()
        before = frames(serve)
        wait_for(lambda: frames(serve) > before + 5, 60, "frames after the camera is back")
    finally:
        code = serve.terminate()
        camera.stop()
    broker.stop()
    assert code == 0, serve.log[-3000:]
    payloads = [m[1].decode() for m in sub.drain()]
    jsonl = (tmp_path / "poses.jsonl").read_text()
    assert payloads and jsonl
    source = json.loads(jsonl.splitlines()[0])["source"]
    assert source == f"http://***@127.0.0.1:{camera.port}/cam.mjpg"  # named, not revealed
    assert f"http://***@127.0.0.1:{camera.port}/cam.mjpg" in spool
    channels = {"jsonl": jsonl, "mqtt": "\n".join(payloads), "http": "\n".join(seen),
                "log": serve.log, "stdout": "".join(serve.lines), "spool": spool,
                "state folder": spool_text(tmp_path, raw=True)}
    for name, text in channels.items():
        assert SECRET not in text, f"the camera password leaked into {name}"
        assert TOKEN not in text, f"the HTTP token leaked into {name}"
    assert "reconnecting in" in serve.log  # the log did talk about the source
    sub.close()
