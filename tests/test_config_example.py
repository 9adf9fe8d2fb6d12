"""docker/config.example.toml shows the real defaults: every ``key = value`` line, commented out
or not, equals the config dataclasses' default unless its comment says "(not a default)"."""

from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from trt_pose_td.config import PipelineConfig
from trt_pose_td.models import get_spec
from trt_pose_td.service.config import SECTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

EXAMPLE = Path(__file__).resolve().parents[1] / "docker" / "config.example.toml"
KEY_LINE = re.compile(r"^#?\s*([a-z_]+)\s*=")


def example_values(with_examples: bool = False):
    """(section, key, value, line) of every key line, commented out or not (and those marked
    "(not a default)" when ``with_examples``)."""
    section, out = None, []
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^\[(\w+)\]", line)
        if header:
            section = header.group(1)
            continue
        if section is None or not KEY_LINE.match(line):
            continue
        if "(not a default" in line and not with_examples:
            continue
        doc = tomllib.loads(line.lstrip("#").strip())
        (key, value), = doc.items()
        out.append((section, key, value, line))
    return out


def default_of(section: str, key: str):
    if section == "pipeline":
        cfg = PipelineConfig()
        value = getattr(cfg, key)  # [pipeline] key = PipelineConfig field = run flag
        if key == "det_size" and value is None:  # the default detector's own input
            value = get_spec(cfg.detector).preprocess.input_size[0]
        return value
    names = {f.name: f for f in fields(SECTIONS[section])}
    assert key in names, f"[{section}] {key} is not a config key"
    return getattr(SECTIONS[section](), key)


def test_every_value_shown_is_the_default():
    values = example_values()
    assert len(values) > 40  # the parser really read the file
    wrong = [f"[{s}] {k} = {v!r}, default {default_of(s, k)!r}" for s, k, v, _ in values
             if default_of(s, k) != v]
    assert not wrong, wrong


def test_every_section_and_pipeline_default_is_shown():
    shown = {(s, k) for s, k, _, _ in example_values(with_examples=True)}
    for name in ("score_threshold", "iou_threshold", "max_persons", "det_size", "max_batch",
                 "box_padding", "refine", "backend", "detector", "pose"):
        assert ("pipeline", name) in shown, name
    for section, cls in SECTIONS.items():
        missing = [f.name for f in fields(cls) if (section, f.name) not in shown
                   and f.name != "password"]  # the example shows password_file
        assert not missing, (section, missing)
