"""The signal-type plug-in interface: one class per type, registered by name.

A signal type knows how to compute its value from an upload, how to validate a value someone
hands us (a bank import, a lookup), and how far apart two values are. Matching picks the index
by `index_kind`, so a new type needs no change anywhere else.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal

from PIL import Image


class ContentKind(StrEnum):
    photo = "photo"
    video = "video"
    text = "text"
    url = "url"


@dataclass
class Upload:
    """One piece of content to hash. Decoded forms are cached so each is produced once."""

    kind: ContentKind
    data: bytes | None = None
    text: str | None = None
    max_image_pixels: int = 100_000_000
    for_bank: bool = False  # hashing a bank item (store variants) rather than an upload
    _image: Image.Image | None = field(default=None, repr=False)
    # The image as PDQ hashing decoded it (a large JPEG at 1/2 to 1/8 scale): enough for later
    # steps to see whether full-size pixels are worth decoding at all.
    preview: Image.Image | None = field(default=None, repr=False)

    def image(self) -> Image.Image:
        """The decoded, orientation-corrected image (photos only)."""
        if self._image is None:
            from prescreen.signals.image import decode_image

            self._image = decode_image(self.data or b"", self.max_image_pixels)
        return self._image

    def stream(self) -> io.BytesIO:
        return io.BytesIO(self.data or b"")


class SignalType(ABC):
    """A kind of signal: `pdq`, `md5`, `text`, `url`, ..."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[ContentKind]]
    index_kind: ClassVar[Literal["exact", "hamming", "vpdq", "minhash"]] = "exact"
    default_threshold: ClassVar[int] = 0

    @abstractmethod
    def compute(self, upload: Upload) -> dict[str, Any]:
        """Return `{name: value}` plus any companion fields (e.g. `pdq_quality`)."""

    @abstractmethod
    def normalize(self, value: str) -> str:
        """Validate a value given from outside; return its canonical form or raise InvalidInput."""

    def distance(self, a: str, b: str) -> int:
        return 0 if a == b else 1

    # How an index's score for this type is judged against a bank (duck-typed: any object with
    # the bank's threshold attributes). Exact types score 0 for a hit; a type with a distance
    # reads the bank's `<name>_threshold` (e.g. `pdq_threshold`).
    def threshold(self, bank: Any) -> int:
        return getattr(bank, f"{self.name}_threshold", 0)

    def accepts(self, score: Any, bank: Any) -> bool:
        return score <= self.threshold(bank)

    def score_distance(self, score: Any) -> int:
        return int(score)

    def score_detail(self, score: Any) -> dict[str, Any]:
        """Extra, type-specific facts about a match for its reasons (e.g. shares of frames)."""
        return {}
