"""OpenCV as screening uses it: every call on the calling thread."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def opencv() -> Any:
    """The `cv2` module with OpenCV's own thread pool turned off (a process-wide setting).

    A server already runs one upload per core. OpenCV splitting each call over its pool as
    well only adds contention: on 2 cores, the OCR step's text detection took 5.4 ms of CPU
    per 2 MP photo with the default pool, against 3.5 ms on the calling thread alone."""
    import cv2

    cv2.setNumThreads(1)
    return cv2
