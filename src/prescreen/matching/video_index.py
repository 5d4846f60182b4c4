"""Video matching with Meta's vPDQ semantics, on top of a PDQ index of every bank video's frames.

For a query video Q and a bank video B (frames of quality >= 50, unique hashes on each side):
the query share is the percentage of Q's frames within `frame_distance` bits of some frame of
B; the bank share is the percentage of B's frames within that distance of some frame of Q.
A bank accepts the match when both shares reach its thresholds (80% and 0% by default).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prescreen.matching.index import make_pdq_index
from prescreen.signals.video import VideoFrameHash, parse_vpdq_text

FRAME_DISTANCE = 31
FRAME_QUALITY = 50
MAX_FRAMES = 1 << 16  # frame keys are signal_id << 16 | k


@dataclass(frozen=True)
class VideoScore:
    query_match_pct: float
    bank_match_pct: float
    min_frame_distance: int


def usable_hashes(frames: Sequence[VideoFrameHash], quality: int = FRAME_QUALITY) -> list[str]:
    """Unique frame hashes of at least `quality`, in first-seen order (capped at 65,536)."""
    return list(dict.fromkeys(f.pdq for f in frames if f.quality >= quality))[:MAX_FRAMES]


def as_frames(value: Any) -> list[VideoFrameHash]:
    if isinstance(value, str):
        return parse_vpdq_text(value)
    return [f if isinstance(f, VideoFrameHash) else VideoFrameHash(**f) for f in value]


class VideoIndex:
    """Bank videos by signal id; their usable frames live in one PDQ index."""

    def __init__(self, frame_distance: int = FRAME_DISTANCE, quality: int = FRAME_QUALITY) -> None:
        self.frame_distance, self.quality = frame_distance, quality
        self._frames = make_pdq_index()
        self._frame_count: dict[int, int] = {}

    def add(self, ids: Sequence[int], values: Sequence[Any]) -> None:
        for signal_id, value in zip(ids, values, strict=True):
            self.remove([signal_id])
            hashes = usable_hashes(as_frames(value), self.quality)
            if not hashes:
                continue
            keys = [(signal_id << 16) | k for k in range(len(hashes))]
            self._frames.add(keys, hashes)
            self._frame_count[signal_id] = len(hashes)

    def remove(self, ids: Sequence[int]) -> None:
        for signal_id in ids:
            count = self._frame_count.pop(signal_id, 0)
            if count:
                self._frames.remove([(signal_id << 16) | k for k in range(count)])

    def search(self, value: Any, radius: int) -> list[tuple[int, VideoScore]]:
        query = usable_hashes(as_frames(value), self.quality)
        if not query:
            return []
        matched_query: dict[int, set[int]] = defaultdict(set)
        matched_bank: dict[int, set[int]] = defaultdict(set)
        closest: dict[int, int] = {}
        for position, frame in enumerate(query):
            for key, distance in self._frames.search(frame, self.frame_distance):
                signal_id = key >> 16
                matched_query[signal_id].add(position)
                matched_bank[signal_id].add(key & 0xFFFF)
                closest[signal_id] = min(distance, closest.get(signal_id, distance))
        return [
            (
                signal_id,
                VideoScore(
                    query_match_pct=100.0 * len(positions) / len(query),
                    bank_match_pct=100.0
                    * len(matched_bank[signal_id])
                    / self._frame_count[signal_id],
                    min_frame_distance=closest[signal_id],
                ),
            )
            for signal_id, positions in matched_query.items()
        ]

    def __len__(self) -> int:
        return len(self._frame_count)
