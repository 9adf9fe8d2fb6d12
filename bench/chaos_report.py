"""Counting, tables and the plot of ``bench/chaos.py``: what the service wrote (its JSONL file,
read back with the package's own rotation-following reader) against what the consumer got."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Tuple

from trt_pose_td.cli.common import format_table
from trt_pose_td.io.follow import follow
from trt_pose_td.io.rotate import rotated_files

#: at most this many messages per camera may be lost across the SIGKILL: what was only in
#: memory (the message being spooled, the one being written)
IN_FLIGHT_MAX = 3


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    """Every line of the rotating JSONL file, closed files (gzipped or not) first."""
    return [json.loads(line) for line in follow(str(path), from_start=True, wait=False)]


def _segments(events: List[Dict[str, Any]]) -> List[Tuple[str, str, str, int, int]]:
    """(name, run_id, camera, first seq, end seq) of every stretch between two events."""
    ev = {e["event"]: e for e in events}
    run1, run2 = ev["ready"]["run_id"], ev["restarted"]["run_id"]
    out = []
    for cam in ev["ready"]["frames"]:
        f = {name: e["frames"].get(cam, 0) for name, e in ev.items()}
        big = 1 << 40
        out += [("live before A", run1, cam, 0, f["broker stop A"]),
                ("outage A", run1, cam, f["broker stop A"], f["broker start A"]),
                ("live between", run1, cam, f["broker start A"], f["broker stop B"]),
                ("outage B until SIGKILL", run1, cam, f["broker stop B"], big),
                ("outage B after restart", run2, cam, 0, f["broker start B"]),
                ("after B", run2, cam, f["broker start B"], big)]
    return out


def count_outages(run: Dict[str, Any]) -> Dict[str, Any]:
    docs = read_jsonl(Path(run["jsonl"]))
    written: Dict[Tuple[str, str], set] = defaultdict(set)
    for d in docs:
        written[(d["run_id"], d["camera"])].add(d["seq"])
    got: Dict[Tuple[str, str], Counter] = defaultdict(Counter)
    for _, run_id, cam, seq, _ in run["received"]:
        got[(run_id, cam)][seq] += 1
    rows: List[Dict[str, Any]] = []
    for name, run_id, cam, lo, hi in _segments(run["events"]):
        w = {q for q in written[(run_id, cam)] if lo <= q < hi}
        r = got[(run_id, cam)]
        lost = sorted(w - set(r))
        rows.append({"segment": name, "camera": cam, "run_id": run_id,
                     "seq": [lo, min(hi, max(w) + 1) if w else lo], "published": len(w),
                     "received": len(w & set(r)), "duplicates": sum(r[q] - 1 for q in w if q in r),
                     "lost": len(lost), "lost_seq": lost[:20]})
    jsonl_gaps = sum(max(s) + 1 - len(s) for s in written.values() if s)
    invented = sum(len(set(r) - written[k]) for k, r in got.items())
    killed = [x for x in rows if x["segment"] == "outage B until SIGKILL"]
    others = [x for x in rows if x["segment"] != "outage B until SIGKILL"]
    tail_only = all(not x["lost_seq"] or min(x["lost_seq"]) > max(
        got[(x["run_id"], x["camera"])] or [-1]) for x in killed)
    ev = {e["event"]: e for e in run["events"]}
    return {
        "rows": rows, "events": run["events"], "exit_code": run["exit_code"],
        "jsonl_gaps": jsonl_gaps, "received_not_written": invented,
        "lost_in_outages": sum(x["lost"] for x in others),
        "lost_at_sigkill": {x["camera"]: x["lost"] for x in killed},
        "replay_s": {"A": ev["broker start A"].get("replay_s"),
                     "B": ev["broker start B"].get("replay_s")},
        "goal_met": bool(jsonl_gaps == 0 and invented == 0 and
                         all(x["lost"] == 0 for x in others) and tail_only and
                         all(x["lost"] <= IN_FLIGHT_MAX for x in killed)),
        "rss_mib_max": max((s.get("rss_mib", 0) for s in run["samples"]), default=0),
        "spool_dir_bytes_max": max((s["spool_dir_bytes"] for s in run["samples"]), default=0),
        "spooled_max": max((sum(c["spooled"] for c in s.get("cameras", {}).values())
                            for s in run["samples"]), default=0),
    }


def disk_numbers(jsonl: Path, samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Bytes per JSONL line against persons (least squares), gzip's ratio on the closed files,
    the spool's compressed bytes per message."""
    import numpy as np

    docs = read_jsonl(jsonl)
    sizes = np.array([len(json.dumps(d, separators=(",", ":"))) + 1 for d in docs], float)
    persons = np.array([len(d["persons"]) for d in docs], float)
    slope, base = np.polyfit(persons, sizes, 1) if len(set(persons)) > 1 else (0.0, sizes.mean())
    raw = packed = 0
    for _, f in rotated_files(jsonl):
        if f.suffix == ".gz":
            with gzip.open(f, "rb") as src:
                raw += len(src.read())
            packed += f.stat().st_size
    spool = [(c["spool_bytes"], c["spooled"]) for s in samples
             for c in s.get("cameras", {}).values() if c.get("spooled")]
    return {"lines": len(docs), "bytes_per_line": float(sizes.mean()),
            "persons_per_line": float(persons.mean()), "bytes_base": float(base),
            "bytes_per_person": float(slope), "gzip_ratio": raw / packed if packed else None,
            "spool_bytes_per_message": (sum(b for b, _ in spool) / sum(n for _, n in spool)
                                        if spool else None)}


def count_floor(flo: Dict[str, Any]) -> Dict[str, Any]:
    end = flo["health_end"]
    full = flo["health_while_full"]
    lines = Counter(cam for _, cam, _ in flo["jsonl_lines"])
    got: Dict[str, set] = defaultdict(set)
    for _, _, cam, seq, _ in flo["received"]:
        got[cam].add(seq)
    rows = []
    for cam, c in end["cameras"].items():
        seen = [q for _, k, q in flo["jsonl_lines"] if k == cam] + list(got[cam])
        published = max([c["frames"]] + [q + 1 for q in seen])
        m = c["sinks"]["mqtt"]
        rows.append({"camera": cam, "published": published, "jsonl_written": lines[cam],
                     "jsonl_not_written": published - lines[cam], "mqtt_received": len(got[cam]),
                     "mqtt_lost": published - len(got[cam]),
                     "spool_floor_drops_counted": m["spool_dropped_floor"]})
    after = [s for s in flo["samples"] if s["t"] >= flo["filled_at_s"]]
    frames = [sum(c["frames"] for c in s["cameras"].values()) for s in after
              if s["t"] <= flo["freed_at_s"] and "cameras" in s]
    j_skipped = end["sinks"]["jsonl"]["skipped"]
    return {
        "fs": flo["fs"], "fs_mb": flo["fs_mb"], "floor_mb": flo["floor_mb"], "rows": rows,
        "min_free_mb": min((s["free_mb"] for s in flo["samples"]), default=None),
        "free_mb_after_fill": after[0]["free_mb"] if after else None,
        "jsonl_skipped_counted": j_skipped,
        "paused_while_full": {"jsonl": full["sinks"]["jsonl"]["paused"],
                              "spool": all(c["sinks"]["mqtt"]["spool_paused"]
                                           for c in full["cameras"].values())},
        "warnings_while_full": full["warnings"],
        "frames_while_full": (frames[-1] - frames[0]) if frames else 0,
        "resumed": not end["sinks"]["jsonl"]["paused"], "replay_s": flo["replay_s"],
        "held": bool(min((s["free_mb"] for s in flo["samples"]), default=0) > 0
                     and sum(r["jsonl_not_written"] for r in rows) == j_skipped
                     and all(r["mqtt_lost"] == r["spool_floor_drops_counted"] for r in rows)
                     and full["sinks"]["jsonl"]["paused"] and not end["sinks"]["jsonl"]["paused"]),
        "exit_code": flo["exit_code"],
    }


def print_tables(doc: Dict[str, Any]) -> None:
    o = doc["outages"]
    cols = ("segment", "camera", "seq", "published", "received", "duplicates", "lost")
    rows = [[r["segment"], r["camera"], f"{r['seq'][0]}-{r['seq'][1]}", r["published"],
             r["received"], r["duplicates"], r["lost"]] for r in o["rows"]]
    print(format_table(cols, rows, f"outages ({doc['args']['outage_a']:g} s, "
                                    f"{doc['args']['outage_b']:g} s with a SIGKILL halfway): "
                                    f"goal {'met' if o['goal_met'] else 'NOT met'}"))
    print(f"JSONL gaps {o['jsonl_gaps']}, received but never written {o['received_not_written']}, "
          f"lost at the SIGKILL {o['lost_at_sigkill']}, replay {o['replay_s']} s, RSS max "
          f"{o['rss_mib_max']:.0f} MiB, spool on disk max {o['spool_dir_bytes_max'] / 2**20:.2f} "
          f"MiB ({o['spooled_max']} messages)")
    d = doc["disk"]
    print(f"JSONL: {d['bytes_per_line']:.0f} B a line at {d['persons_per_line']:.1f} persons "
          f"(~{d['bytes_base']:.0f} + {d['bytes_per_person']:.0f} per person), gzip "
          f"{d['gzip_ratio'] or 0:.1f}x; spool {d['spool_bytes_per_message'] or 0:.0f} B a message")
    f = doc["floor"]
    if f:
        cols = ("camera", "published", "jsonl_written", "jsonl_not_written", "mqtt_received",
                "mqtt_lost", "spool_floor_drops_counted")
        print(format_table(cols, [[r[c] for c in cols] for r in f["rows"]],
                           f"full disk ({f['fs']}, floor {f['floor_mb']} MB): left "
                           f"{f['free_mb_after_fill']} MB free by the filler, min "
                           f"{f['min_free_mb']} MB, {f['frames_while_full']} frames while "
                           f"full, held: {f['held']}"))


def plot(run: Dict[str, Any], doc: Dict[str, Any], png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    t0, events = run["t0"], run["events"]
    end = max(e["t"] for e in events) + 5
    fig, (top, low) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    bins = np.arange(0, end + 1, 1.0)
    for cam in sorted({r[2] for r in run["received"]}):
        t = np.array([r[0] - t0 for r in run["received"] if r[2] == cam])
        hist, _ = np.histogram(t, bins)
        top.plot(bins[:-1], hist, lw=0.8, label=f"{cam}: received / s")
    s = [x for x in run["samples"] if "cameras" in x]
    for cam in sorted({c for x in s for c in x["cameras"]}):
        pts = [(x["t"], x["cameras"][cam]["frames"]) for x in s if cam in x["cameras"]]
        # no line across a restart (the counter starts again) or while no service answered
        rate = [(t1, (f1 - f0) / (t1 - t0_) if f1 >= f0 and t1 - t0_ < 5 else np.nan)
                for (t0_, f0), (t1, f1) in zip(pts, pts[1:])]
        top.plot([t for t, _ in rate], [r for _, r in rate], ls=":", lw=1.0,
                 label=f"{cam}: processed / s")
    ev = {e["event"]: e["t"] for e in events}
    for name in ("A", "B"):
        for ax in (top, low):
            ax.axvspan(ev[f"broker stop {name}"], ev[f"broker start {name}"], color="grey",
                       alpha=0.15, label=f"broker away ({name})" if ax is top else None)
    for ax in (top, low):
        ax.axvline(ev["SIGKILL"], color="red", ls="--", label="SIGKILL" if ax is top else None)
    top.set_ylabel("messages per second")
    top.set_yscale("symlog", linthresh=10)
    top.set_ylim(bottom=0)
    top.legend(loc="upper left", fontsize=8)
    o = doc["outages"]
    top.set_title(f"chaos bench: lost in outages {o['lost_in_outages']}, at the SIGKILL "
                  f"{o['lost_at_sigkill']}, replay {o['replay_s']} s")
    for cam in sorted({c for x in s for c in x["cameras"]}):
        low.plot([x["t"] for x in s], [x["cameras"].get(cam, {}).get("spooled", np.nan)
                                       for x in s], label=f"{cam}: spooled")
    low.set_ylabel("messages in the spool")
    low.set_xlabel("seconds")
    rss = low.twinx()
    rss.plot([x["t"] for x in s], [x.get("rss_mib", np.nan) for x in s], color="black",
             lw=0.8, label="RSS MiB")
    rss.set_ylabel("service RSS (MiB)")
    low.legend(loc="upper left", fontsize=8)
    rss.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
