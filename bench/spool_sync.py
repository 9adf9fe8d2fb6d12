#!/usr/bin/env python3
"""What the MQTT spool's durability costs: ``Spool.put`` (one committed message) with
``spool_sync = "normal"`` and ``"full"`` on a folder's file system. Prints a table, writes JSON.

A kill -9 loses nothing committed in either mode (tests/io/test_spool.py kills a writer mid-put
five times); a power cut can lose what ``normal`` committed since the last checkpoint (the
forwarder checkpoints, with an fsync, every 5 s), nothing with ``full``. This measures the price.

    python bench/spool_sync.py --folder /var/lib/trt-pose-td --json spool_sync.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trt_pose_td.cli.common import format_table  # noqa: E402
from trt_pose_td.io.spool import Spool  # noqa: E402


def payload(persons: int) -> bytes:
    """A pose message of ``persons`` persons (random coordinates: realistic entropy)."""
    import numpy as np

    rng = np.random.default_rng(persons)
    doc = {"frame": 1, "source": "rtsp://***@cam/live", "run_id": "20250101T000000Z-abcd",
           "seq": 1, "timestamp": 1.0, "camera": "door", "persons": [
               {"box": [round(float(v), 2) for v in rng.uniform(0, 700, 4)],
                "score": round(float(rng.uniform()), 4),
                "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for x, y, s in rng.uniform(0, 700, (17, 3))]}
               for _ in range(persons)]}
    return json.dumps(doc, separators=(",", ":")).encode()


def measure(folder: Path, sync: str, data: bytes, n: int) -> dict:
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        spool = Spool(Path(tmp) / "c.sqlite", max_mb=4096, sync=sync)
        times = []
        for _ in range(n):
            t = time.perf_counter()
            spool.put("trt-pose-td/door/poses", data)
            times.append(time.perf_counter() - t)
        stats = spool.stats()
        spool.close()
    times.sort()
    return {"sync": sync, "messages": n, "payload_bytes": len(data),
            "stored_bytes": stats.bytes / n, "ms_median": statistics.median(times) * 1e3,
            "ms_p99": times[int(0.99 * (n - 1))] * 1e3, "per_s": n / sum(times)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--folder", action="append", default=None,
                   help="file system(s) to measure on (default: a temporary folder)")
    p.add_argument("--persons", type=int, default=10)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--json", default="spool_sync.json")
    args = p.parse_args()
    data = payload(args.persons)
    rows = []
    for folder in args.folder or [tempfile.gettempdir()]:
        for sync in ("normal", "full"):
            row = measure(Path(folder), sync, data, args.messages)
            rows.append(dict(row, folder=folder))
    cols = ("folder", "sync", "payload_bytes", "stored_bytes", "ms_median", "ms_p99", "per_s")
    print(format_table(cols, [[r[c] for c in cols] for r in rows],
                       f"Spool.put: {args.messages} messages of {args.persons} persons"))
    Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
