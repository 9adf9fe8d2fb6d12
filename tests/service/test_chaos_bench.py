"""``bench/chaos.py --short`` end to end: two looping cameras through two broker outages, a
SIGKILL and a full disk (real serve processes, a real mosquitto, a loop-mounted ext4 image). A
smoke test of the bench and of the guarantees it counts, not a measurement (the full run's
numbers are in docs/service.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("onnxruntime")
pytest.importorskip("paho.mqtt.client")
pytest.importorskip("matplotlib")


@pytest.mark.slow
def test_the_short_chaos_run_loses_nothing_it_should_not(tmp_path):
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        pytest.skip("mosquitto is not installed")
    root = os.geteuid() == 0  # the full-disk phase mounts a file system
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--short", "--json",
         str(tmp_path / "chaos.json"), "--png", str(tmp_path / "chaos.png"), "--workdir",
         str(tmp_path / "work")] + ([] if root else ["--no-floor"]),
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((tmp_path / "chaos.json").read_text())
    o = doc["outages"]
    assert o["goal_met"] and o["lost_in_outages"] == 0 and o["jsonl_gaps"] == 0
    assert o["received_not_written"] == 0 and max(o["lost_at_sigkill"].values()) <= 3
    assert {r["segment"] for r in o["rows"] if r["published"] == 0} <= {"after B"}
    assert (tmp_path / "chaos.png").stat().st_size > 20_000
    if root:
        f = doc["floor"]
        assert f["held"] and f["paused_while_full"] == {"jsonl": True, "spool": True}
        assert f["frames_while_full"] > 0 and f["min_free_mb"] > 0
