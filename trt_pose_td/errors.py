"""The project's exception tree.

User errors (bad input, missing assets, mismatched engines) derive from :class:`TrtPoseError`; the
CLI prints them as one line and exits non-zero. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TrtPoseError(Exception):
    """Base of every error a user can cause and fix."""


class ConfigError(TrtPoseError):
    """Invalid option, unknown model name, malformed config file."""


class AssetError(TrtPoseError):
    """A model or sample could not be found, downloaded or verified."""


class SourceError(TrtPoseError):
    """A frame source cannot be opened or read (missing file, unreadable image, no camera)."""


class EngineError(TrtPoseError):
    """An inference engine cannot be loaded or run (corrupt file, wrong model, mismatch)."""


class CalibrationError(TrtPoseError):
    """INT8 calibration data is missing, empty or does not match the model."""


class DependencyError(TrtPoseError):
    """An optional dependency is not installed; the message names the install step."""


def require(module: str, extra: str, pip_name: str | None = None):
    """Import ``module`` or raise :class:`DependencyError` naming the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = pip_name or module.split(".")[0]
        raise DependencyError(
            f"{name} is not installed ({exc}); install it with: pip install 'trt-pose-td[{extra}]'"
        ) from exc
