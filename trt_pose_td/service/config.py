"""Service configuration: frozen dataclasses loaded from TOML, overridden by flags, validated.

The file has one table per component (``[service]``, ``[source]``, ``[pipeline]``, ``[jsonl]``,
``[mqtt]``, ``[http]``); see ``docker/config.example.toml``. ``[pipeline]`` keys are the
pipeline flags of ``trt-pose-td run`` without the dashes (``detector``, ``pose``, ``backend``,
``det_size``, ``max_batch``, ...), so every pipeline flag is also a config key. Precedence:
defaults < TOML file < ``--set section.key=value`` < dedicated flags. Every mistake is one
:class:`ConfigError` line naming the file, table and key.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union, get_type_hints

from ..config import PipelineConfig
from ..config_checks import coerce, unknown_key
from ..errors import ConfigError
from ..io.capture import CaptureOptions
from ..io.uri import NETWORK_SCHEMES, has_credentials, redact, with_credentials
from .cameras import check_cameras, merge_sources
from .sink_config import JsonlSection, MqttSection, validate_jsonl, validate_mqtt

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceSection:
    """camera: name in MQTT topics, metrics and the preview page; stale_after_s: no processed
    frame for this long -> unhealthy; max_consecutive_errors: frames failing in a row before the
    service exits non-zero (systemd restarts it); drain_timeout_s: time sinks get at shutdown;
    status_interval_s: sd_notify STATUS / log cadence; max_frames: stop after N (0 = never);
    log_repeat_interval_s: a warning repeated within this interval (and OpenCV / FFmpeg's own
    messages) is logged once, then once more with the count at the end of the interval;
    healthy_when: with several cameras, /healthz answers 200 when "all" of them are healthy
    (default) or when "any" is (its JSON body has every camera's verdict either way)."""

    camera: str = "camera0"
    stale_after_s: float = 10.0
    max_consecutive_errors: int = 100
    drain_timeout_s: float = 5.0
    status_interval_s: float = 10.0
    max_frames: int = 0
    log_repeat_interval_s: float = 60.0
    healthy_when: str = "all"


@dataclass(frozen=True)
class SourceSection(CaptureOptions):
    """uri: csi://N, v4l2:///dev/videoN, /dev/videoN, rtsp://, http(s)://, file, folder or glob;
    loop: repeat a file source; username / password_file / password_env: credentials of an
    rtsp:// or http(s):// source kept out of the URI (the password read from that file, or that
    environment variable, at start); the rest: the live-capture settings of
    :class:`~trt_pose_td.io.capture.CaptureOptions` (same keys). camera: the camera's name (in
    ``[[source]]`` tables, one per camera; a single ``[source]`` uses ``[service] camera``)."""

    uri: str = ""
    camera: str = ""
    loop: bool = False
    username: str = ""
    password_file: str = ""
    password_env: str = ""

    def capture_options(self) -> CaptureOptions:
        return CaptureOptions(**{f.name: getattr(self, f.name) for f in fields(CaptureOptions)})


@dataclass(frozen=True)
class HttpSection:
    """The /healthz, /metrics, /stream.mjpg and preview-page server. host: 127.0.0.1 unless set
    (containers set 0.0.0.0); token_file: a bearer token every route but /healthz requires;
    max_connections: connections served at once (more are closed at accept);
    timeout_s: idle / read / write timeout of a connection."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    preview_fps: float = 10.0
    preview_width: int = 960
    jpeg_quality: int = 80
    keypoint_threshold: float = 0.3
    token_file: str = ""
    max_connections: int = 32
    timeout_s: float = 10.0


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``trt-pose-td serve`` runs with."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    service: ServiceSection = field(default_factory=ServiceSection)
    source: SourceSection = field(default_factory=SourceSection)
    jsonl: JsonlSection = field(default_factory=JsonlSection)
    mqtt: MqttSection = field(default_factory=MqttSection)
    http: HttpSection = field(default_factory=HttpSection)
    #: ``[[source]]`` tables / ``serve NAME=URI ...``: several cameras in one service (then
    #: ``source`` is unused); empty for one camera (``[source]``).
    sources: Tuple[SourceSection, ...] = ()

    def cameras(self) -> List[Tuple[str, SourceSection]]:
        """``(camera name, source)`` of every camera, in order (one for a single [source])."""
        if self.sources:
            return [(s.camera, s) for s in self.sources]
        return [(self.source.camera or self.service.camera, self.source)]

    def as_dict(self, mask_secrets: bool = True) -> Dict[str, Any]:
        """JSON-ready; passwords replaced by "***" unless ``mask_secrets`` is False."""
        out = asdict(self)
        if mask_secrets:
            if out["mqtt"]["password"]:
                out["mqtt"]["password"] = "***"
            for src in [out["source"], *out["sources"]]:
                src["uri"] = redact(src["uri"])
        return out


SECTIONS: Dict[str, type] = {"service": ServiceSection, "source": SourceSection,
                             "jsonl": JsonlSection, "mqtt": MqttSection, "http": HttpSection}


def load_toml(path: Union[str, Path]) -> Dict[str, Any]:
    """The parsed file; :class:`ConfigError` (one line) when missing or malformed."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.8-3.10 (JetPack 5/6)
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse config {path}: {exc}") from None


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax (``3``, ``true``, ``"x"``, ``[416, 320]``) or bare text."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(items: Tuple[str, ...]) -> Dict[str, Dict[str, Any]]:
    """``("mqtt.qos=1", ...)`` -> ``{"mqtt": {"qos": 1}}``."""
    out: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, not {item!r}")
        if name.replace("-", "_") in ("password", "token"):
            raise ConfigError(f"--set {section}.{name} would show the secret to every user "
                              f"(ps, shell history): put it in a file, {section}.{name}_file")
        out.setdefault(section, {})[name.replace("-", "_")] = parse_value(value.strip())
    return out


def merge(*layers: Mapping[str, Any]) -> Dict[str, Any]:
    """Table-wise merge; later layers win key by key. Non-table top-level values are errors,
    but for ``source``: a list of tables (``[[source]]``, ``serve NAME=URI ...``) replaces the
    cameras so far (an earlier ``[source]`` table gives their defaults), and a later
    ``[source]`` table (``--set source.loop=true``, ``--loop``) applies to every camera."""
    out: Dict[str, Any] = {}
    for layer in layers:
        for section, table in layer.items():
            if section == "source" and (isinstance(table, list) or
                                        isinstance(out.get("source"), list)):
                out["source"] = merge_sources(out.get("source", {}), table)
                continue
            if not isinstance(table, Mapping):
                raise ConfigError(f"top-level key {section!r} must be a [table]")
            out.setdefault(section, {}).update(
                {str(k).replace("-", "_"): v for k, v in table.items()})
    return out


def section_from_dict(cls: Type[T], data: Mapping[str, Any], where: str) -> T:
    """A frozen section dataclass from a table: unknown keys and wrong types are errors."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values = {}
    for key, value in data.items():
        if key not in names:
            raise unknown_key(where, key, names)
        values[key] = coerce(f"{where} {key}", value, hints[key])
    return cls(**values)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: ServiceConfig, where: str = "config") -> None:
    """Value checks the types cannot express; one-line :class:`ConfigError`."""
    s, m, h = cfg.service, cfg.mqtt, cfg.http
    _check(bool(s.camera) and not any(c in s.camera for c in "/#+"),
           f"{where} [service] camera must be a non-empty name without / # +, not {s.camera!r}")
    _check(s.healthy_when in ("all", "any"),
           f"{where} [service] healthy_when must be 'all' or 'any', not {s.healthy_when!r}")
    _check(bool(cfg.sources) or bool(cfg.source.uri),
           f"{where}: no source: give one (trt-pose-td serve SOURCE) or set [source] uri")
    if cfg.sources:
        check_cameras([c.camera for c in cfg.sources], f"{where} [[source]]")
    for name, src in cfg.cameras():
        _validate_source(src, f"{where} [source]" if not cfg.sources else
                         f"{where} [[source]] {name}")
    for name in ("stale_after_s", "drain_timeout_s", "status_interval_s"):
        _check(getattr(s, name) > 0, f"{where} [service] {name} must be > 0")
    _check(s.max_consecutive_errors >= 1, f"{where} [service] max_consecutive_errors must be >= 1")
    _check(s.max_frames >= 0, f"{where} [service] max_frames must be >= 0")
    validate_mqtt(m, _check, where)
    validate_jsonl(cfg.jsonl, _check, where)
    _check(h.max_connections >= 1 and h.timeout_s > 0,
           f"{where} [http] needs max_connections >= 1 and timeout_s > 0")
    _check(s.log_repeat_interval_s >= 0, f"{where} [service] log_repeat_interval_s must be >= 0")
    _check(0 <= h.port <= 65535, f"{where} [http] port must be 0..65535, not {h.port}")
    _check(h.preview_fps > 0 and h.preview_width >= 16 and 1 <= h.jpeg_quality <= 100,
           f"{where} [http] needs preview_fps > 0, preview_width >= 16, jpeg_quality 1..100")
    _check(0 <= h.keypoint_threshold <= 1,
           f"{where} [http] keypoint_threshold must be in [0, 1], not {h.keypoint_threshold}")


def _validate_source(src: SourceSection, where: str) -> None:
    """One camera's source table (``where`` names it: ``config [source]``, ...)."""
    _check(bool(src.uri), f"{where} has no uri")
    _check(min(src.width, src.height, src.max_retries) >= 0 and src.fps >= 0,
           f"{where} width, height, fps and max_retries must be >= 0")
    _check(0 <= src.flip <= 7, f"{where} flip must be 0..7 (nvvidconv flip-method)")
    _check(src.timeout_s > 0 and 0 < src.reconnect_min_s <= src.reconnect_max_s,
           f"{where} needs timeout_s > 0 and 0 < reconnect_min_s <= reconnect_max_s")
    _check(src.rtsp_transport in ("tcp", "udp"), f"{where} rtsp_transport must be "
                                                 f"'tcp' or 'udp', not {src.rtsp_transport!r}")
    _check(not (src.password_file and src.password_env),
           f"{where} give password_file or password_env, not both")
    _check(not (src.username or src.password_file or src.password_env)
           or src.uri.startswith(NETWORK_SCHEMES),
           f"{where} username / password_file / password_env need an rtsp:// or "
           "http(s):// uri")


def build_config(tables: Mapping[str, Mapping[str, Any]], where: str = "config"
                 ) -> ServiceConfig:
    """A validated :class:`ServiceConfig` from merged tables (:func:`merge`: defaults -> TOML ->
    ``--set`` -> flags, every layer a table); ``[pipeline]`` through
    :meth:`PipelineConfig.from_table`, the other sections through their dataclasses."""
    pipeline = PipelineConfig.from_table(tables.get("pipeline", {}), where=where)
    sections: Dict[str, Any] = {}
    listed = tables.get("source")
    if isinstance(listed, list):
        if len(listed) == 1 and not listed[0].get("camera"):
            tables = dict(tables, source=listed[0])  # one camera without a name: [source]
        else:
            sections["sources"] = tuple(
                section_from_dict(SourceSection, t, f"{where} [[source]] {t.get('camera', i)}")
                for i, t in enumerate(listed))
            tables = {k: v for k, v in tables.items() if k != "source"}
    for name, table in tables.items():
        if name == "pipeline":
            continue
        if name not in SECTIONS:
            raise unknown_key(where, f"[{name}]", ["[pipeline]"] + [f"[{n}]" for n in SECTIONS])
        sections[name] = section_from_dict(SECTIONS[name], table, f"{where} [{name}]")
    cfg = ServiceConfig(pipeline=pipeline, **sections)
    validate(cfg, where)
    return cfg


def mqtt_password(m: MqttSection) -> Optional[str]:
    """The password, read from ``password_file`` when given (kept out of the unit file)."""
    if m.password_file:
        return read_secret(m.password_file, "[mqtt] password_file")
    return m.password or None


def read_secret(path: str, what: str) -> str:
    """The first line of a secret file (a password, a token); :class:`ConfigError` if unreadable
    or empty. The value is never logged."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"{what}: {path} is empty")
    return text.splitlines()[0].strip()


def source_uri(src: SourceSection) -> str:
    """The URI the capture opens: a source table's ``uri`` with username and the password from
    ``password_file`` / ``password_env`` joined in (the only place the secret meets the URI)."""
    password = None
    if src.password_file:
        password = read_secret(src.password_file, "[source] password_file")
    elif src.password_env:
        password = os.environ.get(src.password_env)
        if not password:
            raise ConfigError(f"[source] password_env: environment variable "
                              f"{src.password_env} is not set")
    if password is not None and not src.username and not has_credentials(src.uri):
        raise ConfigError("[source] a password needs a user name: set [source] username or "
                          "write it in the uri (rtsp://USER@host/...)")
    return with_credentials(src.uri, src.username, password)
