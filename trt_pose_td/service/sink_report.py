"""The sinks' state in words and in Prometheus samples: what the status line, ``/healthz``
(``warnings``) and ``/metrics`` say about the JSONL file, the MQTT client and its spool.

Inputs are the JSON-ready dicts of :class:`~..io.mqtt.MqttStats` and
:class:`~..io.rotate.JsonlStats` (``snapshot()["sinks"]``)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

MB = float(1 << 20)

#: (stats key, metric name, type, help) of the MQTT client and its spool.
MQTT_METRICS = (
    ("published", "mqtt_published_total", "counter",
     "Messages the broker acknowledged (QoS 0: sent)"),
    ("dropped", "mqtt_dropped_total", "counter",
     "Messages that will never be sent (memory queue full without a spool, spool cap / age / "
     "free-space floor, MQTT 5 expiry)"),
    ("reconnects", "mqtt_reconnects_total", "counter", "Reconnections to the broker"),
    ("queued", "mqtt_queued", "gauge", "Messages waiting in memory for the broker"),
    ("connect_failures", "mqtt_connect_failures_total", "counter",
     "Connection attempts that failed (broker unreachable, TLS, refused)"),
    ("in_flight", "mqtt_in_flight", "gauge", "Messages sent, not yet acknowledged"),
    ("resent", "mqtt_resent_total", "counter",
     "Messages in flight when a connection dropped, sent again"),
    ("spooled", "mqtt_spool_messages", "gauge", "Messages waiting in the on-disk spool"),
    ("spool_disk_bytes", "mqtt_spool_disk_bytes", "gauge",
     "Disk used by the spool (database, WAL and shared-memory files)"),
    ("spool_written", "mqtt_spool_written_total", "counter", "Messages written to the spool"),
    ("replayed", "mqtt_spool_replayed_total", "counter",
     "Spooled messages the broker acknowledged"),
    ("spool_paused", "mqtt_spool_paused", "gauge",
     "1 while the spool's file system is below spool_min_free_mb"),
)
SPOOL_DROPS = (("spool_dropped_cap", "cap"), ("spool_dropped_age", "age"),
               ("spool_dropped_floor", "floor"), ("expired", "expiry"))
JSONL_METRICS = (
    ("lines", "jsonl_lines_total", "counter", "Lines written to the JSONL file"),
    ("skipped", "jsonl_skipped_total", "counter",
     "Lines not written: free space below [jsonl] min_free_mb"),
    ("paused", "jsonl_paused", "gauge", "1 while the JSONL file system is below min_free_mb"),
    ("rotations", "jsonl_rotations_total", "counter", "JSONL file rotations"),
    ("disk_bytes", "jsonl_disk_bytes", "gauge", "The JSONL file and the closed files kept"),
    ("free_mb", "jsonl_free_megabytes", "gauge", "Free space where the JSONL file is"),
)


def add_sink_metrics(m: Any, sinks: Dict[str, Dict[str, Any]], labels: Dict[str, str]) -> None:
    """The MQTT and JSONL samples of ``sinks`` (a snapshot's ``"sinks"``) into ``m``."""
    mqtt, jsonl = sinks.get("mqtt"), sinks.get("jsonl")
    if mqtt:
        m.add("mqtt_connected", "gauge", "1 while connected to the broker",
              [(labels, int(mqtt["connected"]))])
        for key, name, kind, help_ in MQTT_METRICS:
            if key in mqtt:
                m.add(name, kind, help_, [(labels, int(mqtt[key]))])
        m.add("mqtt_spool_dropped_total", "counter",
              "Messages lost by reason: spool cap, age, free-space floor, MQTT 5 expiry",
              [({**labels, "reason": reason}, int(mqtt.get(key, 0)))
               for key, reason in SPOOL_DROPS])
    if jsonl:
        for key, name, kind, help_ in JSONL_METRICS:
            m.add(name, kind, help_, [(labels, jsonl[key] if key == "free_mb"
                                       else int(jsonl[key]))])


def sink_warnings(sinks: Dict[str, Dict[str, Any]], camera: Optional[str] = None) -> List[str]:
    """What an operator should know now: JSONL paused, messages waiting or lost."""
    out = []
    jsonl, mqtt = sinks.get("jsonl"), sinks.get("mqtt")
    who = f"{camera}: " if camera else ""
    if jsonl and jsonl["paused"]:
        out.append(f"jsonl paused: {jsonl['free_mb']:.1f} MB free on the disk of "
                   f"{jsonl['path']}, below the {jsonl['floor_mb']:.0f} MB floor "
                   f"({jsonl['skipped']} line(s) not written)")
    if mqtt and mqtt.get("spooled"):
        out.append(f"{who}mqtt spool: {mqtt['spooled']} message(s) waiting, "
                   f"{mqtt['spool_disk_bytes'] / MB:.1f} MB on disk")
    if mqtt and mqtt.get("spool_paused"):
        out.append(f"{who}mqtt spool paused: its disk is below spool_min_free_mb")
    if mqtt and mqtt.get("dropped"):
        why = ", ".join(f"{reason} {mqtt[key]}" for key, reason in SPOOL_DROPS if mqtt.get(key))
        out.append(f"{who}mqtt dropped {mqtt['dropped']} message(s)"
                   + (f" ({why})" if why else " (memory queue full)"))
    return out
