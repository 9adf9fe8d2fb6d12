"""Service config: TOML + --set + flags through the real `serve` parser, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trt_pose_td.cli import build_parser
from trt_pose_td.cli.serve import resolve
from trt_pose_td.errors import ConfigError
from trt_pose_td.models import DEFAULT_DETECTOR, DEFAULT_POSE
from trt_pose_td.service.config import ServiceConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docker" / "config.example.toml"


def config(*argv: str) -> ServiceConfig:
    return resolve(build_parser().parse_args(["serve", *argv]))


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_the_shipped_example_is_valid():
    cfg = config("--config", str(EXAMPLE))
    assert cfg.source.uri == "csi://0" and cfg.mqtt.host == "localhost"
    assert cfg.pipeline.detector == DEFAULT_DETECTOR  # the example shows the defaults
    assert cfg.pipeline.pose == DEFAULT_POSE
    assert cfg.http.port == 8080 and cfg.jsonl.path == "auto"


def test_defaults_then_file_then_set_then_flags(tmp_path):
    path = write(tmp_path, """
[service]
camera = "door"
[source]
uri = "rtsp://cam/stream"
reconnect_max_s = 10
[pipeline]
pose = "pp_tinypose_128x96"
det_size = 416
max-batch = 4
score_threshold = 0.5
[mqtt]
host = "broker"
qos = 1
""")
    cfg = config("--config", path)
    assert cfg.service.camera == "door" and cfg.source.reconnect_max_s == 10.0
    assert cfg.pipeline.pose == "pp_tinypose_128x96"
    assert cfg.pipeline.det_size == (416, 416) and cfg.pipeline.max_batch == 4
    assert cfg.pipeline.score_threshold == 0.5
    assert cfg.service.stale_after_s == 10.0  # untouched default
    cfg = config("--config", path, "--set", "mqtt.qos=2", "--set", "pipeline.det_size=[320, 256]",
                 "--set", "service.camera=\"gate\"")
    assert cfg.mqtt.qos == 2 and cfg.pipeline.det_size == (320, 256)
    assert cfg.service.camera == "gate"
    cfg = config("--config", path, "--set", "mqtt.qos=2", "/dev/video1", "--mqtt-qos", "0",
                 "--mqtt", "10.0.0.5:1884", "--camera", "yard", "--det-size", "640",
                 "--max-batch", "16", "--http", "127.0.0.1:9000", "--loop")
    assert cfg.source.uri == "/dev/video1" and cfg.source.loop
    assert cfg.mqtt.qos == 0 and (cfg.mqtt.host, cfg.mqtt.port) == ("10.0.0.5", 1884)
    assert cfg.service.camera == "yard" and cfg.pipeline.det_size == (640, 640)
    assert cfg.pipeline.max_batch == 16 and cfg.pipeline.pose == "pp_tinypose_128x96"
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 9000)


def test_a_flag_equal_to_its_default_still_beats_the_file(tmp_path):
    path = write(tmp_path, '[source]\nuri = "x.mp4"\n[pipeline]\nmax_batch = 4\n')
    assert config("--config", path, "--max-batch", "8").pipeline.max_batch == 8
    assert config("--config", path).pipeline.max_batch == 4


def test_password_is_masked_in_the_logged_config(tmp_path):
    path = write(tmp_path, '[source]\nuri = "x.mp4"\n[mqtt]\nhost = "b"\npassword = "hunter2"\n')
    cfg = config("--config", path)
    assert cfg.as_dict()["mqtt"]["password"] == "***"
    assert cfg.as_dict(mask_secrets=False)["mqtt"]["password"] == "hunter2"


@pytest.mark.parametrize("text, message", [
    ('[source]\nuri = "x"\n[mqtt]\nhots = 1', "[mqtt]: unknown key 'hots' (did you mean 'host'?)"),
    ('[source]\nuri = "x"\n[mqtt]\nqos = 3', "[mqtt] qos must be 0, 1 or 2, not 3"),
    ('[source]\nuri = "x"\n[mqtt]\nport = "1883"', "[mqtt] port must be an integer"),
    ('[source]\nuri = "x"\n[http]\nenabled = 1', "[http] enabled must be true or false"),
    ('[source]\nuri = "x"\n[camera]\nname = "x"', "unknown key '[camera]'"),
    ('[source]\nuri = "x"\n[pipeline]\nbackend = "cuda"', "backend must be one of auto, "),
    ('[source]\nuri = "x"\n[pipeline]\ndetsize = 320', "unknown key 'detsize' (did you mean"),
    ('[source]\nuri = "x"\n[pipeline]\ndet_size = "big"', "det_size: size must be N or WxH"),
    ('[source]\nuri = "x"\n[pipeline]\nmax_batch = 0', "--max-batch must be >= 1"),
    ('[source]\nuri = "x"\n[source]\nflip = 9', "Cannot declare"),  # TOML: table twice
    ('[source]\nuri = "x"\nflip = 9', "[source] flip must be 0..7"),
    ('[service]\ncamera = "a/b"\n[source]\nuri = "x"', "camera must be a non-empty name"),
    ('[service]\ncamera = "a"', "no source"),
    ('uri = "x"', "top-level key 'uri' must be a [table]"),
    ('[source]\nuri = "x"\n[mqtt]\nclient_id = "a-{cam}"', "client_id may use {host} and"),
    ('[source]\nuri = "x"\n[mqtt]\nkey_file = "k"', "[mqtt] key_file needs cert_file"),
    ('[source]\nuri = "clip.mp4"\nusername = "u"', "need an rtsp:// or http(s):// uri"),
    ('[source]\nuri = "rtsp://c/x"\npassword_file = "a"\npassword_env = "B"',
     "password_file or password_env, not both"),
    ('[source]\nuri = "x"\n[http]\nmax_connections = 0', "max_connections >= 1"),
    ('[source\nuri = "x"', "cannot parse config"),
    ('[source]\nuri = "x"\n[jsonl]\nkeep = -1', "[jsonl] rotate_mb, rotate_s, keep and"),
    ('[source]\nuri = "x"\n[jsonl]\nrotate_mb = "64M"', "[jsonl] rotate_mb must be a number"),
    ('[source]\nuri = "x"\n[jsonl]\ngzip = "yes"', "[jsonl] gzip must be true or false"),
    ('[source]\nuri = "x"\n[mqtt]\nspool_max_mb = 0', "needs spool_max_mb > 0"),
    ('[source]\nuri = "x"\n[mqtt]\nspool_sync = "always"', "spool_sync must be \"normal\" or"),
    ('[source]\nuri = "x"\n[mqtt]\nprotocol = "5.0"', "protocol must be \"3.1.1\" or \"5\""),
    ('[source]\nuri = "x"\n[mqtt]\nmessage_expiry_s = 60',
     "message_expiry_s needs protocol = \"5\""),
    ('[source]\nuri = "x"\n[mqtt]\nspool_dirr = "/x"', "did you mean 'spool_dir'?"),
])
def test_mistakes_are_one_line_errors_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        config("--config", path)
    assert message in str(err.value) and "\n" not in str(err.value)
    if "cannot parse" in message or "unknown key" in message:
        assert path in str(err.value)


def test_missing_file_and_bad_set_syntax(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config("--config", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="SECTION.KEY=VALUE"):
        config("x.mp4", "--set", "qos=1")


def test_cli_prints_the_resolved_config_and_fails_in_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = [sys.executable, "-m", "trt_pose_td", "serve"]
    ok = subprocess.run(run + ["--config", str(EXAMPLE), "--print-config"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert '"uri": "csi://0"' in ok.stdout
    secret = write(tmp_path, '[source]\nuri = "rtsp://admin:s3cret@cam/x"\n'
                             '[mqtt]\npassword = "s3cret"')
    ok = subprocess.run(run + ["--config", secret, "--print-config"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert '"uri": "rtsp://***@cam/x"' in ok.stdout and "s3cret" not in ok.stdout
    argv = subprocess.run(run + ["x.mp4", "--print-config", "--set", "mqtt.password=s3cret"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert argv.returncode == 2 and len(argv.stderr.strip().splitlines()) == 1
    assert "mqtt.password_file" in argv.stderr
    bad = subprocess.run(run + ["--config", write(tmp_path, '[mqtt]\nqos = 5')],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"trt-pose-td serve: error: config {tmp_path / 'config.toml'}: no source: give one "
        "(trt-pose-td serve SOURCE) or set [source] uri"]


def test_source_credentials_come_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from trt_pose_td.service.config import SourceSection, source_uri

    (tmp_path / "pw").write_text("p@ss\n")
    assert source_uri(SourceSection(uri="rtsp://cam/x", username="admin",
                                    password_file=str(tmp_path / "pw"))) == \
        "rtsp://admin:p%40ss@cam/x"
    monkeypatch.setenv("CAM_PW", "env-pw")
    assert source_uri(SourceSection(uri="rtsp://admin@cam/x", password_env="CAM_PW")) == \
        "rtsp://admin:env-pw@cam/x"
    with pytest.raises(ConfigError, match="needs a user name"):
        source_uri(SourceSection(uri="rtsp://cam/x", password_env="CAM_PW"))
    with pytest.raises(ConfigError, match="CAM_NOPE is not set"):
        source_uri(SourceSection(uri="rtsp://u@cam/x", password_env="CAM_NOPE"))
    with pytest.raises(ConfigError, match="cannot read"):
        source_uri(SourceSection(uri="rtsp://u@cam/x", password_file=str(tmp_path / "no")))


def test_the_spool_folder_defaults_to_the_state_folder(monkeypatch, tmp_path):
    from trt_pose_td.service.config import MqttSection

    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/trt-pose-td:/var/lib/other")
    assert MqttSection().spool_folder() == Path("/var/lib/trt-pose-td/spool")  # systemd
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert MqttSection().spool_folder() == tmp_path / "trt-pose-td" / "spool"
    assert MqttSection(spool_dir="").spool_folder() is None
    assert MqttSection(spool_dir="/data/spool").spool_folder() == Path("/data/spool")


def test_an_unusable_spool_folder_is_refused_before_the_engines_load(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", "trt_pose_td", "serve", "x.mp4", "--mqtt", "127.0.0.1:1",
         "--no-http", "--set", f"mqtt.spool_dir=\"{tmp_path / 'file' / 'spool'}\""],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"trt-pose-td serve: error: [mqtt] spool_dir {tmp_path / 'file' / 'spool'} cannot be a "
        f"folder ({tmp_path / 'file'} is a file)"]
