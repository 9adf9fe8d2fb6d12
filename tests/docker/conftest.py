"""Fixtures of the container tests: the engine-builder tests' small real calibration set."""

from tests.build.conftest import calib_subset  # noqa: F401
