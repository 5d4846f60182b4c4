"""Screening steps that look inside the pixels: logos and watermarks of known outlets, and the
text of captions (OCR), each with a time budget.

Both help hold *new* material from known sources before anyone has banked it. Text read from an
image goes through exactly what posted text goes through (normalisation, text banks, the
classifiers); logo banks are matched by local features (see `prescreen.signals.logo`). A step
that runs over its budget, or fails, adds nothing: the upload is decided on its other signals,
and the overrun is logged and counted (`prescreen_media_step_overruns_total`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Histogram
from sqlalchemy.orm import Session

from prescreen.core.config import Settings
from prescreen.matching.service import Match, Matcher
from prescreen.signals.base import ContentKind, Upload
from prescreen.signals.registry import all_types, compute_signals

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)
OVERRUNS = Counter(
    "prescreen_media_step_overruns_total",
    "OCR or logo steps that ran over their time budget (the upload was decided without them)",
    ["step"],
)
STEP_SECONDS = Histogram(
    "prescreen_media_step_seconds",
    "Time spent in the OCR and logo steps",
    ["step"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)
OCR_EXCERPT_CHARS = 500
VIDEO_FRAMES = 3  # frames of a video read and searched for logos
MIN_CLASSIFIED_WORDS = 3  # text read from an image is scored when it has this many words
_unavailable_logged = False


@dataclass
class MediaFindings:
    """What the steps add to a decision: matches, classifier reasons, informational reasons
    (the text read), and per-step status for the stored signals."""

    matches: list[Match] = field(default_factory=list)
    classifier_reasons: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)


class OverBudget(Exception):
    pass


def run_media_steps(
    session: Session,
    matcher: Matcher,
    settings: Settings,
    kind: ContentKind,
    data: bytes,
    preview: Image.Image | None = None,
) -> MediaFindings:
    """`preview`: the image as hashing decoded it, if at hand. Full-size pixels are decoded
    only for a step that needs them: a photo whose preview shows no line of text, screened
    with no logo bank to search, is never decoded again."""
    found = MediaFindings()
    if not (settings.ocr_enabled or settings.logo_enabled):
        return found
    frames = Frames(kind, data, settings)
    # A video is screened asynchronously: its sampled frames get a budget each.
    scale = len(frames.get()) if kind is ContentKind.video else 1
    if not scale:
        return found
    if settings.logo_enabled:
        _step(
            found,
            "logo",
            settings.logo_budget_ms * scale,
            lambda d: _logos(session, matcher, kind, frames, d),
        )
    if settings.ocr_enabled:
        _step(
            found, "ocr", settings.ocr_budget_ms * scale,
            lambda d: _ocr(session, matcher, settings, kind, frames, preview, d),
        )  # fmt: skip
    if frames.decode_ms is not None:
        found.steps["decode"] = {"ms": frames.decode_ms}
    return found


class Frames:
    """The greyscale frames the steps read, decoded on first use and then kept. A frame that
    cannot be decoded (hashing decoded it already, so this is rare) leaves the steps nothing to
    read rather than failing screening."""

    def __init__(self, kind: ContentKind, data: bytes, settings: Settings) -> None:
        self.kind, self.data, self.settings = kind, data, settings
        self.frames: list[np.ndarray] | None = None
        self.decode_ms: float | None = None

    def get(self) -> list[np.ndarray]:
        if self.frames is None:
            start = time.perf_counter()
            try:
                self.frames = _greyscale_frames(self.kind, self.data, self.settings)
            except Exception as exc:
                log.warning(
                    "could not decode the upload for OCR and logos", extra={"error": str(exc)}
                )
                self.frames = []
            self.decode_ms = round((time.perf_counter() - start) * 1000, 1)
        return self.frames


def _step(found: MediaFindings, name: str, budget_ms: float, run: Any) -> None:
    """Run one step against its deadline; keep its findings only if it finished in time."""
    start = time.perf_counter()
    deadline = start + budget_ms / 1000
    try:
        status, partial = run(deadline)
        if time.perf_counter() > deadline:
            raise OverBudget
    except (OverBudget, TimeoutError):
        status, partial = "over_budget", None
        OVERRUNS.labels(name).inc()
    except Exception:
        log.exception("media step failed; deciding without it", extra={"step": name})
        status, partial = "error", None
    elapsed = time.perf_counter() - start
    STEP_SECONDS.labels(name).observe(elapsed)
    found.steps[name] = {"status": status, "ms": round(elapsed * 1000, 1), "budget_ms": budget_ms}
    if status == "over_budget":
        log.warning(
            "media step over budget; deciding on the other signals",
            extra={"step": name, "ms": round(elapsed * 1000, 1), "budget_ms": budget_ms},
        )
    if partial is not None:
        found.matches += partial.matches
        found.classifier_reasons += partial.classifier_reasons
        found.notes += partial.notes


def _greyscale_frames(kind: ContentKind, data: bytes, settings: Settings) -> list[np.ndarray]:
    if kind is ContentKind.photo:
        from PIL import Image

        from prescreen.signals.image import decode_image

        # Hashing has already checked the image against the limits. An upright JPEG decodes
        # only its luma, at full size: much faster than a full decode.
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format == "JPEG" and not _has_orientation(probe):
                probe.draft("L", probe.size)
                return [np.asarray(probe.convert("L"))]
        return [np.asarray(decode_image(data, settings.max_image_pixels).convert("L"))]
    return sample_video_frames(data, VIDEO_FRAMES)


def shows_no_text(preview: Image.Image) -> bool:
    """Whether the copy hashing decoded (a 2 MP JPEG at half size) shows no line of lettering
    (`ocr.shows_lettering`). On generated captions it skipped none that full-size reading reads
    at 2 % of the image height or more (docs/ocr-logo.md has the figures)."""
    from prescreen.signals import ocr

    try:
        grey = np.asarray(preview.convert("L"))
    except (ValueError, OSError):  # a mode Pillow cannot turn grey: read the full image
        return False
    return not ocr.shows_lettering(grey)


def _has_orientation(image: Any) -> bool:
    return image.getexif().get(0x0112, 1) not in (1, None)


def sample_video_frames(data: bytes, count: int, max_frames: int = 300) -> list[np.ndarray]:
    """Up to `count` frames spread over the video, as greyscale arrays: key frames when there
    are enough (cheap to decode), else frames from the first `max_frames`."""
    import av

    def decode(key_only: bool) -> list[np.ndarray]:
        frames: list[np.ndarray] = []
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            if key_only:
                stream.codec_context.skip_frame = "NONKEY"
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="gray"))
                if len(frames) >= max_frames:
                    break
        return frames

    frames = decode(key_only=True)
    if len(frames) < count:
        frames = decode(key_only=False)
    if len(frames) <= count:
        return frames
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[i] for i in sorted(set(picks.tolist()))]


def _logos(
    session: Session,
    matcher: Matcher,
    kind: ContentKind,
    frames: Frames,
    deadline: float,
) -> tuple[str, MediaFindings | None]:
    from prescreen.signals.logo import query_features

    if not matcher.size().get("logo"):
        return "no_logo_banks", None
    best: dict[int, Match] = {}
    for number, grey in enumerate(frames.get()):
        query = query_features(grey)
        if time.perf_counter() > deadline:
            raise OverBudget
        for match in matcher.lookup(session, {"logo": query}):
            if kind is ContentKind.video:  # which sampled frame (0 = first) showed it
                match = dataclasses.replace(match, detail={**match.detail, "frame": number})
            if match.entry not in best or match.distance < best[match.entry].distance:
                best[match.entry] = match
    return "ok", MediaFindings(matches=sorted(best.values(), key=lambda m: m.distance))


def _ocr(
    session: Session,
    matcher: Matcher,
    settings: Settings,
    kind: ContentKind,
    frames: Frames,
    preview: Image.Image | None,
    deadline: float,
) -> tuple[str, MediaFindings | None]:
    from prescreen.screening.service import classifier_reasons
    from prescreen.signals import ocr

    global _unavailable_logged
    if (why := ocr.availability()) is not None:
        if not _unavailable_logged:
            log.warning("OCR skipped: %s", why, extra={"step": "ocr"})
            _unavailable_logged = True
        return "unavailable", None
    if preview is not None and shows_no_text(preview):
        return "ok", MediaFindings()
    lines: list[dict[str, Any]] = []
    for number, grey in enumerate(frames.get()):
        result = ocr.read_text(grey, settings.ocr_languages, deadline)
        for line in result.lines:
            if all(line.text != seen["text"] for seen in lines):
                entry = {"text": line.text, "confidence": line.confidence, "box": list(line.box)}
                lines.append(entry | ({"frame": number} if kind is ContentKind.video else {}))
    text = "\n".join(line["text"] for line in lines)
    if not text:
        return "ok", MediaFindings()
    excerpt = text[:OCR_EXCERPT_CHARS]
    signals = compute_signals(Upload(ContentKind.text, text=text))
    matchable = {k: v for k, v in signals.items() if k in all_types()}
    tag = {"source": "ocr", "ocr_text": excerpt}
    matches = [
        dataclasses.replace(m, detail={**m.detail, **tag})
        for m in matcher.lookup(session, matchable)
    ]
    # The classifiers judge sentences; a word or two read from a picture is no evidence.
    scored = len(text.split()) >= MIN_CLASSIFIED_WORDS
    scores = [{**reason, **tag} for reason in classifier_reasons(text, settings)] if scored else []
    note = {"kind": "ocr_text", "text": excerpt, "lines": lines}
    return "ok", MediaFindings(matches=matches, classifier_reasons=scores, notes=[note])
