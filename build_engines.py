#!/usr/bin/env python3
"""Build the TensorRT engines on this device: ``python build_engines.py --precision fp16``.

Same options as ``trt-pose-td build`` (``--help`` lists them; docs/engines.md explains them).
"""

import sys

from trt_pose_td.cli.build import main

if __name__ == "__main__":
    sys.exit(main())
