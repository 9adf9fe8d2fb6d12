"""What a pipeline accepts, turned into frames: a :class:`~..types.Frame`, an (H, W, 3) uint8
BGR array, or an image path for one frame; for a stream also anything :func:`.sources.open_source`
opens (path, folder, glob, video; camera URIs through :mod:`.capture`) or an iterable of frames /
arrays."""

from __future__ import annotations

import os
from typing import Iterable, Iterator, Union

import numpy as np

from ..types import Frame

#: One frame: a Frame, an (H, W, 3) uint8 BGR array or an image path.
ImageLike = Union[Frame, np.ndarray, str, "os.PathLike[str]"]
#: A sequence of frames: a path or URI (image, folder, glob, video, camera), a
#: :class:`~.base.Source`, or an iterable of frames / arrays / image paths (one frame also does).
FramesLike = Union[str, "os.PathLike[str]", Frame, np.ndarray, Iterable[ImageLike]]


def as_frame(image: ImageLike, index: int = 0) -> Frame:
    """One frame from a Frame, a BGR uint8 array or an image path (:class:`SourceError` if the
    path is not a readable image; ValueError for an array of the wrong shape or dtype)."""
    if isinstance(image, Frame):
        return image
    if isinstance(image, np.ndarray):
        return Frame(image, index)
    if isinstance(image, (str, os.PathLike)):
        from .sources import read_image

        path = os.fspath(image)
        return Frame(read_image(path), index, source=path)
    raise TypeError(f"expected a Frame, an (H, W, 3) uint8 BGR array or an image path, not "
                    f"{type(image).__name__}")


def as_frames(source: FramesLike) -> Iterator[Frame]:
    """Frames of ``source``: a path / URI string (image, folder, glob, video, camera), or an
    iterable of frames, arrays or image paths (numbered in order)."""
    if isinstance(source, (str, os.PathLike)):
        uri = os.fspath(source)
        from .capture import is_live_uri

        if is_live_uri(uri):
            from .capture import open_capture

            capture = open_capture(uri)
            try:
                yield from capture
            finally:
                capture.close()
            return
        from .sources import open_source

        with open_source(uri) as frames:
            yield from frames
        return
    if isinstance(source, (np.ndarray, Frame)):
        yield as_frame(source)
        return
    items: Iterable[ImageLike] = source
    for i, item in enumerate(items):
        yield as_frame(item, i)
