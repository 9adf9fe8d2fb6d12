"""``trt-pose-td serve``: the camera service (config file + flags, see trt_pose_td.service)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from ..errors import SourceError
from ..io.paths import check_output_dir, check_output_file
from ..service import config as svc_config
from ..service.cameras import camera_sources
from .common import PIPELINE_FIELDS, add_pipeline_args, nonneg_int

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "/etc/trt-pose-td/config.toml"
#: Set (to 1) by the container images: a container sees only the devices it was started with,
#: so a /dev/videoN source missing at start is an error there, not a camera to wait for.
CONTAINER_ENV = "TRT_POSE_TD_CONTAINER"
SUPPRESS = argparse.SUPPRESS

DESCRIPTION = """\
Run the pose pipeline on a camera or stream for weeks: publish every frame's poses as JSONL
(stdout or a file) and MQTT, serve /healthz, /metrics (Prometheus), /stream.mjpg and a preview
page, and talk to systemd (READY after the engines load and the first frame is processed,
WATCHDOG pings, STATUS). A lost source is re-opened with backoff (/healthz turns 503 meanwhile),
a failing sink is retried without stalling inference, SIGTERM drains the sinks and exits 0.

Sources: csi://0 (Jetson CSI camera, needs OpenCV with GStreamer), v4l2:///dev/video0 or
/dev/video0, rtsp://user:pass@host/path, http://host/mjpeg, a video file, folder or glob (--loop).
Several cameras in one service: NAME=URI for each (serve door=rtsp://... yard=/dev/video0), or
[[source]] tables with camera = "NAME" in the config: one detector batch and one keypoint batch
across the cameras per tick, per-camera MQTT topics, metrics labels, /healthz verdicts, preview.

Settings come from the TOML file (tables [service] [source] [pipeline] [jsonl] [mqtt] [http]; see
docker/config.example.toml), then --set SECTION.KEY=VALUE, then the flags below. [pipeline] keys
are the model/tuning flag names (detector, pose, backend, det_size, max_batch, ...).
"""


def _host_port(text: str) -> Tuple[str, Optional[int]]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, None
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT], not {text!r}")
    return host, int(port)


def _http_addr(text: str) -> Tuple[Optional[str], int]:
    host, sep, port = text.rpartition(":")
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, not {text!r}")
    return (host or None) if sep else None, int(port)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="camera service: JSONL/MQTT/HTTP sinks, health, metrics, systemd",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  trt-pose-td serve --config /etc/trt-pose-td/config.toml\n"
               "  trt-pose-td serve /dev/video0 --mqtt localhost --http 8080\n"
               "  trt-pose-td serve clip.mp4 --loop --pose pp_tinypose_128x96 --jsonl out.jsonl\n"
               "  trt-pose-td serve door=rtsp://cam1/stream yard=/dev/video0 --mqtt localhost\n"
               "  trt-pose-td serve --config c.toml --set mqtt.qos=1 --print-config")
    p.add_argument("source", nargs="*", default=SUPPRESS, metavar="[NAME=]SOURCE",
                   help="camera / stream URI or file (overrides [source] uri); NAME=URI for "
                        "each of several cameras (overrides the config's cameras)")
    p.add_argument("--config", metavar="FILE", default=None,
                   help=f"TOML config (default: {DEFAULT_CONFIG} when it exists, else none)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key (TOML value syntax); repeatable")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as JSON and exit")
    s = p.add_argument_group("service")
    s.add_argument("--camera", dest="cfg:service.camera", default=SUPPRESS, metavar="NAME",
                   help="camera name in topics, metrics and the page (default: camera0)")
    s.add_argument("--loop", dest="cfg:source.loop", action="store_const", const=True,
                   default=SUPPRESS, help="repeat a file source forever")
    s.add_argument("--max-frames", dest="cfg:service.max_frames", type=nonneg_int, default=SUPPRESS,
                   metavar="N", help="stop after N frames (default: never)")
    s.add_argument("--jsonl", dest="cfg:jsonl.path", default=SUPPRESS, metavar="PATH",
                   help="JSONL output: - for stdout (default), a file (appended), '' for none")
    s.add_argument("--mqtt", dest="mqtt_addr", type=_host_port, default=None,
                   metavar="HOST[:PORT]", help="publish to this MQTT broker")
    s.add_argument("--mqtt-topic", dest="cfg:mqtt.topic", default=SUPPRESS, metavar="TOPIC",
                   help="topic, {camera} expands (default: trt-pose-td/{camera}/poses)")
    s.add_argument("--mqtt-qos", dest="cfg:mqtt.qos", type=int, choices=(0, 1, 2),
                   default=SUPPRESS, help="MQTT QoS (default: 1, at-least-once)")
    s.add_argument("--mqtt-retain", dest="cfg:mqtt.retain", action="store_const", const=True,
                   default=SUPPRESS, help="publish retained messages")
    s.add_argument("--http", dest="http_addr", type=_http_addr, default=None,
                   metavar="[HOST:]PORT",
                   help="HTTP address (default: 127.0.0.1:8080; 0.0.0.0:PORT for every "
                        "interface, then set [http] token_file)")
    s.add_argument("--no-http", dest="cfg:http.enabled", action="store_const", const=False,
                   default=SUPPRESS, help="no HTTP server")
    add_pipeline_args(p, explicit_only=True)  # given flags only: they beat the config file
    p.set_defaults(func=run)


def flag_tables(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """The flags given explicitly, as config tables (the pipeline flags as ``[pipeline]``: their
    names are its keys)."""
    out: Dict[str, Dict[str, Any]] = {}
    pipeline = {k: v for k, v in vars(args).items() if k in PIPELINE_FIELDS}
    if pipeline:
        out["pipeline"] = pipeline
    for key, value in vars(args).items():
        if key.startswith("cfg:"):
            section, name = key[4:].split(".", 1)
            out.setdefault(section, {})[name] = value
    if args.mqtt_addr is not None:
        host, port = args.mqtt_addr
        out.setdefault("mqtt", {})["host"] = host
        if port is not None:
            out["mqtt"]["port"] = port
    if args.http_addr is not None:
        host, port = args.http_addr
        out.setdefault("http", {}).update({"port": port, "enabled": True})
        if host is not None:
            out["http"]["host"] = host
    return out


def source_layer(args: argparse.Namespace) -> Dict[str, Any]:
    """The positional sources as a config layer: ``{"source": [{"camera"?, "uri"}, ...]}``
    (one bare URI: one table without a camera, i.e. a single ``[source]``)."""
    given = getattr(args, "source", None)
    if not given:
        return {}
    return {"source": [{"uri": uri} if name is None else {"camera": name, "uri": uri}
                       for name, uri in camera_sources(given)]}


def resolve(args: argparse.Namespace) -> svc_config.ServiceConfig:
    """Defaults < TOML file < --set < flags, validated."""
    path = args.config
    if path is None and os.path.isfile(DEFAULT_CONFIG):
        path = DEFAULT_CONFIG
    file_tables = svc_config.load_toml(path) if path else {}
    where = f"config {path}" if path else "config"
    tables = svc_config.merge(file_tables, source_layer(args),
                              svc_config.parse_set(tuple(args.set)), flag_tables(args))
    return svc_config.build_config(tables, where)


def check_device(cfg: svc_config.ServiceConfig) -> None:
    """In a container (``$TRT_POSE_TD_CONTAINER``), a missing V4L2 device is a one-line
    :class:`SourceError` naming how to pass it or another source."""
    from ..io.capture import is_live_uri, parse_live_uri

    if not os.environ.get(CONTAINER_ENV):
        return
    for _, src in cfg.cameras():
        if not is_live_uri(src.uri):
            continue
        kind, target = parse_live_uri(src.uri)
        if kind == "v4l2" and not os.path.exists(target):
            raise SourceError(
                f"no camera at {target} in this container: pass it (docker run --device "
                f"{target}) or give another source after the image name (IMAGE "
                "rtsp://HOST/PATH, or IMAGE /data/clip.mp4 --loop with -v DIR:/data:ro)")


def run(args: argparse.Namespace) -> int:
    cfg = resolve(args)
    if args.print_config:
        print(json.dumps(cfg.as_dict(), indent=2, sort_keys=True))
        return 0
    jsonl_file = cfg.jsonl.file()
    if jsonl_file is not None:  # before the engines load, not after
        check_output_file(jsonl_file, "--jsonl / [jsonl] path")
    spool = cfg.mqtt.spool_folder() if cfg.mqtt.host else None
    if spool is not None:
        check_output_dir(spool, "[mqtt] spool_dir")
    check_device(cfg)
    if not args.verbose:
        logging.getLogger().setLevel(logging.INFO)  # the service's log is its journal
    from ..service.loop import Service

    return Service(cfg).run()


__all__: List[str] = ["add_parser", "run", "resolve"]
