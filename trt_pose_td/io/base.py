"""The :class:`Source` interface every frame source implements (files in :mod:`.sources`,
cameras and streams in :mod:`.capture`)."""

from __future__ import annotations

from typing import Iterator, List, Optional

from ..types import Frame


class Source:
    """Iterable of frames. ``total`` is the frame count when known; ``skipped`` lists the inputs
    that could not be read; ``fps`` is the nominal rate (video) or None; ``uri`` never carries
    credentials (see :func:`.uri.redact`)."""

    uri: str = ""
    total: Optional[int] = None
    fps: Optional[float] = None

    def __init__(self) -> None:
        self.skipped: List[str] = []

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
