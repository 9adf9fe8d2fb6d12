"""Consume the service's MQTT stream: subscribe, parse each message, draw its skeletons into
``<camera>_<frame>.jpg``. Needs paho-mqtt >= 2 (``pip install 'trt-pose-td[service]'``).

    python examples/mqtt_skeletons.py --topic 'trt-pose-td/+/poses' --count 10 -o skeletons/
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

import trt_pose_td as tpt


def render(payload: bytes, background: np.ndarray) -> Tuple[str, int, np.ndarray]:
    """File name, number of persons and drawn image of one message (a ``poses.jsonl`` line
    plus ``"camera"``; pixels of the camera's frame)."""
    doc = json.loads(payload)
    poses = tpt.Poses.from_list(doc["persons"])
    return f"{doc['camera']}_{doc['frame']:06d}.jpg", len(poses), tpt.draw(background, poses)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Draw the skeletons of MQTT pose messages.")
    for flag, default in (("--host", "127.0.0.1"), ("--topic", "trt-pose-td/+/poses")):
        parser.add_argument(flag, default=default)
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--background", help="image the frames' pixels refer to (else black "
                        "640x480)")
    parser.add_argument("--count", type=int, default=1, help="messages to draw, then exit")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per message")
    parser.add_argument("-o", "--output", default="skeletons", help="folder for the images")
    args = parser.parse_args(argv)
    background = cv2.imread(args.background) if args.background else np.zeros((480, 640, 3),
                                                                                np.uint8)
    if background is None:
        print(f"mqtt_skeletons: cannot read {args.background}", file=sys.stderr)
        return 2
    messages: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda c, userdata, flags, rc, props: c.subscribe(args.topic, qos=1)
    client.on_message = lambda c, userdata, message: messages.put(bytes(message.payload))
    client.connect(args.host, args.port)
    client.loop_start()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(args.count):
            name, people, image = render(messages.get(timeout=args.timeout), background)
            cv2.imwrite(str(out / name), image)
            print(f"{name}: {people} people", flush=True)
    except queue.Empty:
        print(f"mqtt_skeletons: no message on {args.topic} in {args.timeout} s", file=sys.stderr)
        return 1
    finally:
        client.disconnect()
        client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
