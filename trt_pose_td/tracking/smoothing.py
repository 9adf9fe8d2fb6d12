"""One-euro filter (Casiez et al., CHI 2012), vectorised over a person's keypoints.

Driven by timestamps, so a variable frame rate (dropped frames, a slow camera) changes the
filter's time constants, not its behaviour. Speeds are measured in person heights per second, so
the same ``beta`` fits a person near the camera and one far away.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def _alpha(cutoff: np.ndarray, dt: float) -> np.ndarray:
    """Smoothing factor of a first-order low-pass at ``cutoff`` Hz over ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Low-pass whose cutoff rises with speed: steady keypoints are smoothed hard, moving ones
    follow with little lag.

    min_cutoff: Hz at rest (lower = smoother, more lag); beta: cutoff gain per (person height / s)
    of keypoint speed (higher = less lag when moving); d_cutoff: Hz of the speed estimate.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t = 0.0

    def reset(self) -> None:
        self._x = self._dx = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered copy of ``x`` (K, 2) float32 pixels observed at ``t`` s; ``scale``: the
        person's height in pixels (speeds are divided by it). The first call returns ``x``."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._dx is None or t <= self._t:
            first = self._x is None
            self._x = x.copy() if first or self._x is None else self._x
            self._dx = np.zeros_like(x) if self._dx is None else self._dx
            self._t = t if first else self._t
            return self._x.astype(np.float32)
        dt = t - self._t
        dx = (x - self._x) / dt
        dx_hat = self._dx + _alpha(np.float64(self.d_cutoff), dt) * (dx - self._dx)
        speed = np.linalg.norm(dx_hat, axis=-1, keepdims=True) / max(scale, 1.0)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = self._x + a * (x - self._x)
        self._dx, self._t = dx_hat, t
        return self._x.astype(np.float32)
