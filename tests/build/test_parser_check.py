"""The ONNX parser check, rule by rule, on tiny generated graphs (tests/models/parser_fixtures.py):
every rule fires on its graph and stays quiet on the graph (or the TensorRT version) the docs
allow; plus the operator table itself and its rendering in docs/engines.md."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")

from tests.models.parser_fixtures import CASES, case_model, op_model
from trt_pose_td.build import parser_table
from trt_pose_td.build.parser_check import check_model
from trt_pose_td.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_fires(name, tmp_path):
    case = CASES[name]
    report = check_model(case_model(tmp_path, name), [case.version], input_size=case.size)
    hits = [f for f in report.findings
            if f.node == case.node and f.level == case.level and case.text in f.message]
    assert hits, f"{name}: expected a {case.level} with {case.text!r}, got {report.findings}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_stays_quiet(name, tmp_path):
    case = CASES[name]
    version = case.quiet_version or case.version
    report = check_model(case_model(tmp_path, name, quiet=True), [version],
                         input_size=case.size)
    loud = [f for f in report.findings
            if f.node == case.node and f.level in ("error", "warning", case.level)]
    assert not loud, f"{name} on {version}: {loud}"
    assert sum(report.checked.values()) >= 1


def test_subgraph_nodes_are_walked(tmp_path):
    from tests.models.parser_fixtures import _if

    report = check_model(op_model(tmp_path / "if.onnx", **_if("Hardmax")), ["8.5", "10.8"])
    refused = [f for f in report.findings if f.level == "error"]
    assert [(f.node, f.version) for f in refused] == [("n/then_branch/then_op", "8.5")]
    assert report.accepted_by("n/then_branch/then_op") == ["10.8"]
    assert report.checked["Hardmax"] == 1 and report.checked["If"] == 1


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ConfigError, match="not a readable ONNX file"):
        check_model(bad)


def test_tables_name_their_sources_and_check_kinds_exist():
    from trt_pose_td.build.parser_rules import CHECKS

    tables = parser_table.load_tables()
    assert list(tables) == ["8.5", "10.8"]
    for table in tables.values():
        src = table.source
        assert src["repository"] == "onnx/onnx-tensorrt" and src["file"] == "docs/operators.md"
        assert len(src["commit"]) == 40 and src["commit"] in src["url"]
        assert table.qdq["source"] and table.qdq["zero_point_types"]
        for op in table.ops.values():
            assert op.supported in "YN?"
            assert op.supported != "N" or not op.checks
            assert all(check[0] in CHECKS for check in op.checks), op
    assert tables["8.5"].opset == (None, 17) and tables["10.8"].opset == (9, 22)
    topk = tables["8.5"].ops["TopK"]
    assert topk.checks == (("const", 1, "K", "error"),) and "initializer" in topk.restrictions
    assert tables["10.8"].ops["TopK"].checks[-1] == ("const_below", 1, "K", 3840)


@pytest.mark.parametrize("version, table", [
    ("8.5", "8.5"), ("8.5.2.2", "8.5"), ("8.6.1", "8.5"), ("10.3.0", "10.8"),
    ("10.16", "10.8"), ("11.0", "10.8")])
def test_table_for_a_tensorrt_version(version, table):
    assert parser_table.table_for(version).version == table


def test_table_for_refuses_old_and_malformed_versions():
    with pytest.raises(ConfigError, match="older than every parser table"):
        parser_table.table_for("7.1")
    with pytest.raises(ConfigError, match="not a TensorRT version"):
        parser_table.table_for("ten")


def test_docs_show_the_table_as_rendered_from_the_data():
    docs = (REPO / "docs" / "engines.md").read_text()
    rendered = parser_table.render_markdown()
    assert rendered in docs, "docs/engines.md is stale: paste parser_table.render_markdown()"
    assert "| `TopK` | Y (FP32, FP16) | Y (FP32, FP16, BF16, INT32, INT64) |" in rendered
