"""Constant-velocity motion models of a person's centre (pixels, original frame).

Both models answer ``predict(t)`` (where the centre will be at ``t`` s, without changing state)
and take ``update(centre, t, scale)``; ``scale`` is the person's height in pixels, so the noise
levels hold for near and far people. Which one the tracker uses is
:attr:`TrackerConfig.motion` (measured on vtest.avi: docs/tracking.md).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: Motion models by name (``none``: a track stays where it was last seen).
MOTIONS = ("kalman", "ema", "none")


class StaticMotion:
    """No motion: the prediction is the last measurement."""

    def __init__(self, centre: np.ndarray, t: float) -> None:
        self.centre = np.asarray(centre, np.float64).copy()
        self.velocity = np.zeros(2)
        self.t = t

    def predict(self, t: float) -> np.ndarray:
        """(2,) float64 centre at ``t``."""
        return self.centre + self.velocity * max(t - self.t, 0.0)

    def update(self, centre: np.ndarray, t: float, scale: float) -> None:
        self.centre, self.t = np.asarray(centre, np.float64).copy(), t


class EmaMotion(StaticMotion):
    """Velocity as an exponential moving average of frame-to-frame displacement / dt."""

    def __init__(self, centre: np.ndarray, t: float, gain: float = 0.5) -> None:
        super().__init__(centre, t)
        self.gain = gain
        self._seen = False

    def update(self, centre: np.ndarray, t: float, scale: float) -> None:
        centre = np.asarray(centre, np.float64)
        dt = t - self.t
        if dt > 0:
            v = (centre - self.centre) / dt
            self.velocity = v if not self._seen else self.velocity + self.gain * (v - self.velocity)
            self._seen = True
        self.centre, self.t = centre.copy(), t


class KalmanMotion:
    """Kalman filter on (cx, cy, vx, vy), white-noise acceleration, position measured.

    pos_std: measurement noise in person heights; accel_std: process noise in heights / s^2.
    """

    def __init__(self, centre: np.ndarray, t: float, pos_std: float = 0.03,
                 accel_std: float = 2.0, scale: float = 100.0) -> None:
        self.pos_std, self.accel_std = pos_std, accel_std
        self.x = np.concatenate([np.asarray(centre, np.float64), np.zeros(2)])
        # unknown velocity: about one person height per second
        self.p = np.diag([(pos_std * scale) ** 2] * 2 + [scale ** 2] * 2)
        self.t = t
        self._scale = scale

    @property
    def velocity(self) -> np.ndarray:
        return self.x[2:]

    def _propagate(self, dt: float, scale: float) -> tuple:
        f = np.eye(4)
        f[0, 2] = f[1, 3] = dt
        q1 = (self.accel_std * scale) ** 2
        g = np.array([0.5 * dt * dt, dt])
        qb = q1 * np.outer(g, g)
        q = np.zeros((4, 4))
        for axis in (0, 1):
            idx = np.ix_([axis, axis + 2], [axis, axis + 2])
            q[idx] = qb
        return f @ self.x, f @ self.p @ f.T + q

    def predict(self, t: float) -> np.ndarray:
        """(2,) float64 centre at ``t``."""
        return self.x[:2] + self.x[2:] * max(t - self.t, 0.0)

    def update(self, centre: np.ndarray, t: float, scale: Optional[float] = None) -> None:
        scale = float(scale or self._scale)
        self._scale = scale
        x, p = self._propagate(max(t - self.t, 0.0), scale)
        r = (self.pos_std * scale) ** 2
        s = p[:2, :2] + np.eye(2) * r
        k = p[:, :2] @ np.linalg.inv(s)
        self.x = x + k @ (np.asarray(centre, np.float64) - x[:2])
        self.p = p - k @ p[:2, :]
        self.t = t


def make_motion(name: str, centre: np.ndarray, t: float, scale: float):
    """A motion model by name (:data:`MOTIONS`) starting at ``centre`` (2,) pixels, time ``t``."""
    if name == "kalman":
        return KalmanMotion(centre, t, scale=scale)
    if name == "ema":
        return EmaMotion(centre, t)
    if name == "none":
        return StaticMotion(centre, t)
    raise ValueError(f"unknown motion model {name!r}; expected one of {MOTIONS}")
