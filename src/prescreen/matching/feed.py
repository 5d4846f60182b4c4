"""A reader's position in an id-ordered feed whose rows may become visible out of order.

On PostgreSQL a row's id is drawn from a sequence when it is inserted, but the row is only seen
when its transaction commits: a long bank import holding ids 100-199 can commit after a single
entry with id 200. A reader that only asks for `id > last seen` would skip 100-199 for ever.
`FeedCursor` remembers such holes and asks for them again until they fill or grow old (a rolled
back transaction leaves a hole that never fills).
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, or_

GAP_MAX_AGE_SECONDS = 900.0  # longer than any bank import transaction
MAX_GAPS = 200


@dataclass
class FeedCursor:
    """Everything up to `position` was read, except the `gaps`: [first id, last id, first seen]."""

    position: int = 0
    gaps: list[list[float]] = field(default_factory=list)

    def pending(self, column: ColumnElement) -> ColumnElement[bool]:
        """Rows not read yet: after the position, or inside a gap."""
        return or_(column > self.position, *(column.between(lo, hi) for lo, hi, _ in self.gaps))

    def wants(self, row_id: int) -> bool:
        """Whether the row with this id has not been read yet."""
        return row_id > self.position or any(lo <= row_id <= hi for lo, hi, _ in self.gaps)

    def advance(self, ids: Iterable[int], now: float | None = None) -> None:
        """Record rows just read (ascending ids): holes before them become gaps, gaps that
        they fill shrink, and gaps older than GAP_MAX_AGE_SECONDS are given up."""
        now = time.time() if now is None else now
        filled: list[int] = []
        for row_id in ids:
            if row_id <= self.position:
                filled.append(row_id)
                continue
            if row_id > self.position + 1:
                self.gaps.append([self.position + 1, row_id - 1, now])
            self.position = row_id
        if filled:
            self.gaps = _subtract(self.gaps, filled)
        self.gaps = [gap for gap in self.gaps if now - gap[2] < GAP_MAX_AGE_SECONDS][-MAX_GAPS:]

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "gaps": self.gaps}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FeedCursor:
        data = data or {}
        return cls(int(data.get("position", 0)), [list(g) for g in data.get("gaps", [])])


def _subtract(gaps: list[list[float]], ids: list[int]) -> list[list[float]]:
    """The gaps without `ids` (each gap split around the ids it contains)."""
    ids = sorted(set(ids))
    result: list[list[float]] = []
    for lo, hi, seen in gaps:
        start = int(lo)
        for row_id in ids[bisect_left(ids, lo) : bisect_right(ids, hi)]:
            if row_id > start:
                result.append([start, row_id - 1, seen])
            start = row_id + 1
        if start <= hi:
            result.append([start, int(hi), seen])
    return result
