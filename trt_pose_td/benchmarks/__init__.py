"""Measuring the pipelines (internal; the tools behind ``trt-pose-td bench`` and ``eval``).

- :mod:`.crowd`: the batched pipeline against one person at a time, per stage and crowd size
  (CPU), and the helpers the GPU bench shares (machine facts, boxes tiled to a crowd size);
- :mod:`.gpu`: the GPU pipeline's CUDA-event stage times, FPS per crowd size, crop throughput;
- :mod:`.tracking`: skip-frame detection's speed and agreement, identity, jitter, lag;
- :mod:`.evaluate`: COCO keypoint and box AP with pycocotools.

Numbers are measured and printed (tables, JSON), never asserted in tests. Not to be confused
with the repository's top-level ``bench/`` folder of scripts, which are not part of the package.
"""
