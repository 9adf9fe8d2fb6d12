"""``PipelineConfig.from_table``: the one place a ``[pipeline]`` table (TOML, ``--set``, the JSON of
``serve --print-config``, the flags ``serve`` was given) becomes a config, layer over layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from trt_pose_td.config import PipelineConfig
from trt_pose_td.errors import ConfigError


def test_layers_win_key_by_key_over_the_defaults():
    toml = {"det_size": 320, "max_batch": 4, "flip": True}
    set_ = {"det_size": [320, 256]}
    flags = {"max_batch": 16}
    cfg = PipelineConfig.from_table(toml, set_, flags)
    assert cfg == PipelineConfig(det_size=(320, 256), max_batch=16, flip=True)
    assert PipelineConfig.from_table() == PipelineConfig()


@pytest.mark.parametrize("value, size", [(320, (320, 320)), ("416x320", (416, 320)),
                                         ([640, 480], (640, 480)), ((640, 480), (640, 480))])
def test_det_size_forms(value, size):
    assert PipelineConfig.from_table({"det_size": value}).det_size == size


@pytest.mark.parametrize("table, message", [
    ({"detsize": 320}, "c.toml [pipeline]: unknown key 'detsize' (did you mean 'det_size'?)"),
    ({"det_size": "big"}, "c.toml [pipeline] det_size: size must be N or WxH, not 'big'"),
    ({"det_size": [320]}, "c.toml [pipeline] det_size: size must be N, \"WxH\" or [W, H]"),
    ({"det_size": 330}, "c.toml [pipeline]: --det-size must be multiples of 32, not 330x330"),
    ({"max_batch": "4"}, "c.toml [pipeline] max_batch must be an integer, not '4'"),
    ({"max_batch": 0}, "c.toml [pipeline]: --max-batch must be >= 1, not 0"),
    ({"flip": 1}, "c.toml [pipeline] flip must be true or false, not 1"),
    ({"score_threshold": "high"}, "c.toml [pipeline] score_threshold must be a number"),
    ({"backend": "cuda"}, "c.toml [pipeline]: --backend must be one of auto, onnxruntime, "),
])
def test_bad_tables_are_one_line_errors(table, message):
    with pytest.raises(ConfigError) as exc:
        PipelineConfig.from_table(table, where="config c.toml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_an_int_is_a_number_and_dashes_are_underscores():
    cfg = PipelineConfig.from_table({"score-threshold": 1, "box_padding": 2})
    assert cfg.score_threshold == 1.0 and isinstance(cfg.score_threshold, float)
    assert cfg.box_padding == 2.0


def test_the_cli_uses_no_argparse_internals():
    """serve lays its flags over the config as one more table (flags added with
    ``explicit_only``), not by editing argparse's private action list."""
    package = Path(__file__).resolve().parents[1] / "trt_pose_td"
    used = [str(p.relative_to(package)) for p in package.rglob("*.py")
            if "._actions" in p.read_text() or "._defaults" in p.read_text()]
    assert used == []
