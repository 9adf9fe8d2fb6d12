"""Progress bars (tqdm when installed, silent otherwise) for long work: downloads, frames,
calibration, evaluation."""

from __future__ import annotations

from typing import Any, Iterable, Optional


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: Optional[int], label: str = "", unit: str = "it", quiet: bool = False,
                 **kwargs: Any) -> Any:
    """A tqdm bar on stderr (``update``, ``set_postfix``, ``close``), or a silent stand-in when
    ``quiet`` or tqdm is missing."""
    if quiet:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=label or None, unit=unit, leave=False, dynamic_ncols=True,
                **kwargs)


def track(items: Iterable, label: str = "", unit: str = "it", quiet: bool = False,
          total: Optional[int] = None) -> Iterable:
    """Iterate ``items`` with a bar (see :func:`progress_bar`)."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    bar = progress_bar(total, label, unit, quiet)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()
