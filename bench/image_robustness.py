"""How well image matching survives the edits people make to re-post known content.

Base photos: Meta's PDQ test images (when ../shared/data/pdq is present) and the real
photographs shipped inside scikit-image's wheel (`skimage.data`). Every base photo is put in a
bank; every edited copy (re-encoded as a JPEG, as an upload would be) is screened against it.
Distractors: each edited copy of one base photo screened against every *other* base photo's
bank item, so `distractor_pairs = n_base * (n_base - 1) * (edits + 1)`.

Three methods, one threshold:
* plain_pdq: `pdqhash` on the full-resolution RGB pixels, one hash each side, as
  python-threatexchange and so HMA run it; match when Hamming distance <= 31.
* phash: `imagehash.phash` (64-bit DCT hash); match when distance <= 10, the cut-off most
  imagehash users quote (about 16% of the bits, a little looser than PDQ's 31/256 = 12%).
* prescreen: `query_variants` of the upload against `bank_variants` of the bank item, any pair
  within 31. Ablations switch each kind of variant off to show what it buys and what it costs.

    python bench/image_robustness.py --quick          # 10 base photos, under a minute
    python bench/image_robustness.py                  # every base photo
    python bench/image_robustness.py --quick --json   # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imagehash
import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from prescreen.matching.service import variant_allowed
from prescreen.signals.image import bits_to_hex, decode_image, pdq_distance
from prescreen.signals.image_variants import (
    DEFAULT_MIN_QUALITY,
    TRIMMINGS,
    bank_variants,
    query_variants,
)

ROOT = Path(__file__).resolve().parent.parent
PDQ_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "pdq"
THRESHOLD = 31
PHASH_THRESHOLD = 10
MAX_SIDE = 1024  # base photos larger than this are scaled down first (keeps the run short)
UPLOAD_QUALITY = 90  # every edited copy is re-encoded as a JPEG of this quality

# Transforms whose recall is reported but not held to the 0.95 bar.
HARD = ("crop20", "crop7", "crop10_offcentre")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- base photos

PDQ_BASES = [
    "python-threatexchange/threatexchange/tests/hashing/resources/sample-b.jpg",
    "pdq/data/misc-images/c.png",
    "pdq/data/reg-test-input/pen-and-coaster.png",
    "pdq/data/reg-test-input/exif-rotn/exif-rotn-1.jpg",
    "pdq/data/reg-test-input/exif-rotn/exif-rotn-3.jpg",
    "pdq/data/reg-test-input/exif-rotn/exif-rotn-6.jpg",
    "pdq/data/reg-test-input/exif-rotn/exif-rotn-8.jpg",
    "pdq/data/reg-test-input/labelme-subset/q0003.jpg",
    "pdq/data/reg-test-input/labelme-subset/q0004.jpg",
    "pdq/data/reg-test-input/labelme-subset/q0122.jpg",
    "pdq/data/reg-test-input/labelme-subset/q0291.jpg",
    "pdq/data/reg-test-input/labelme-subset/q0746.jpg",
    "pdq/data/reg-test-input/labelme-subset/q1050.jpg",
    "pdq/data/reg-test-input/labelme-subset/q2821.jpg",
]
# Real photographs in skimage.data (textures, drawings, binary masks and tiny images left out).
SKIMAGE_BASES = [
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "motorcycle_left",
    "retina",
    "rocket",
    "clock",
    "page",
]
QUICK_BASES = [
    "sample-b",
    "q0122",
    "exif-rotn-1",
    "pen-and-coaster",
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "motorcycle_left",
]


def _fit(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return image


def load_bases(quick: bool) -> dict[str, Image.Image]:
    import skimage.data

    bases: dict[str, Image.Image] = {}
    if PDQ_DATA.is_dir():
        for rel in PDQ_BASES:
            path = PDQ_DATA / rel
            if path.is_file():
                bases[path.stem] = _fit(ImageOps.exif_transpose(Image.open(path)))
    else:
        log(f"PDQ test images not found at {PDQ_DATA}: using skimage photos only")
    for name in SKIMAGE_BASES:
        if name == "motorcycle_left":
            pixels = skimage.data.stereo_motorcycle()[0]
        else:
            pixels = getattr(skimage.data, name)()
        bases[name] = _fit(Image.fromarray(np.asarray(pixels)))
    if quick:
        bases = {k: v for k, v in bases.items() if k in QUICK_BASES} or dict(
            list(bases.items())[:10]
        )
    return bases


# ----------------------------------------------------------------------------- edits


def jpeg_bytes(image: Image.Image, quality: int = UPLOAD_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(8, size))
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def _blurred_fill(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The image scaled to cover `size` and heavily blurred: the 'blurred fill' of reels."""
    fill = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
    return fill.filter(ImageFilter.GaussianBlur(max(size) / 25))


def bars(image: Image.Image, share: float, fill: str, horizontal: bool) -> Image.Image:
    """Letterbox (bars above and below, `horizontal`) or pillarbox; bars take `share` of the
    new side."""
    width, height = image.size
    if horizontal:
        size = (width, round(height / (1 - share)))
        offset = (0, (size[1] - height) // 2)
    else:
        size = (round(width / (1 - share)), height)
        offset = ((size[0] - width) // 2, 0)
    if fill == "blurred":
        canvas = _blurred_fill(image, size)
    else:
        canvas = Image.new("RGB", size, {"black": (0, 0, 0), "white": (255, 255, 255)}[fill])
    canvas.paste(image, offset)
    return canvas


def crop(image: Image.Image, share: float, centred: bool = True) -> Image.Image:
    """Cut `share` of the width and of the height: evenly from both sides (a zoom, or a change
    of aspect ratio), or unevenly (2/3 on one side, 1/3 on the other) as a hand crop would."""
    width, height = image.size
    cut_w, cut_h = width * share, height * share
    first = 0.5 if centred else 2 / 3
    return image.crop(
        (
            round(cut_w * first),
            round(cut_h * (1 - first)),
            round(width - cut_w * (1 - first)),
            round(height - cut_h * first),
        )
    )


def caption(image: Image.Image) -> Image.Image:
    """A meme-style white caption bar with black text added above the image."""
    width, height = image.size
    bar = round(height * 0.18)
    canvas = Image.new("RGB", (width, height + bar), "white")
    canvas.paste(image, (0, bar))
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (width * 0.05, bar * 0.25),
        "WHEN THEY SAY IT CAN'T BE DONE",
        fill="black",
        font=_font(bar // 3),
    )
    return canvas


def logo(image: Image.Image) -> Image.Image:
    """An opaque made-up channel badge in the bottom-right corner (12% of the width)."""
    out = image.copy()
    width, height = out.size
    side = round(width * 0.12)
    x0, y0 = width - side - round(width * 0.03), height - side - round(height * 0.03)
    draw = ImageDraw.Draw(out)
    draw.ellipse((x0, y0, x0 + side, y0 + side), fill=(200, 30, 40), outline="white", width=3)
    cx, cy, r = x0 + side / 2, y0 + side / 2, side * 0.35
    star = [
        (cx + r * (1 if k % 2 == 0 else 0.45) * np.sin(k * np.pi / 5),
         cy - r * (1 if k % 2 == 0 else 0.45) * np.cos(k * np.pi / 5))
        for k in range(10)
    ]  # fmt: skip
    draw.polygon(star, fill="white")
    return out


def watermark(image: Image.Image) -> Image.Image:
    """Semi-transparent text tiled across the image, as stock-photo and channel watermarks are."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width, height = base.size
    font = _font(max(10, width // 14))
    for row in range(4):
        y = height * (0.12 + row * 0.24)
        draw.text((width * 0.08, y), "@channel_xyz", fill=(255, 255, 255, 110), font=font)
    return Image.alpha_composite(base, layer).convert("RGB")


def screenshot(image: Image.Image) -> Image.Image:
    """The image inside a made-up social-app screenshot: status bar, header with avatar and
    name, action icons and caption lines below, white margins."""
    width, height = image.size
    margin = round(width * 0.04)
    header, footer = round(width * 0.2), round(width * 0.22)
    canvas = Image.new("RGB", (width + 2 * margin, height + header + footer), "white")
    canvas.paste(image, (margin, header))
    draw = ImageDraw.Draw(canvas)
    small = _font(max(8, width // 30))
    draw.text((margin, header * 0.08), "9:41", fill="black", font=small)
    draw.rectangle(
        (canvas.width - margin - width * 0.08, header * 0.1, canvas.width - margin, header * 0.2),
        outline="black",
        width=2,
    )
    avatar = header * 0.45
    draw.ellipse(
        (margin, header * 0.4, margin + avatar, header * 0.4 + avatar), fill=(90, 120, 200)
    )
    draw.text((margin + avatar * 1.3, header * 0.5), "some_account", fill="black", font=small)
    y = header + height + footer * 0.1
    for k in range(3):
        x = margin + k * width * 0.1
        draw.ellipse((x, y, x + width * 0.06, y + width * 0.06), outline="black", width=2)
    draw.text((margin, y + footer * 0.35), "1,024 likes", fill="black", font=small)
    draw.text(
        (margin, y + footer * 0.6), "some_account look at this", fill=(60, 60, 60), font=small
    )
    return canvas


def _share(seed: int) -> float:
    """A bar share between 10% and 25%, different for every base photo."""
    return 0.10 + 0.15 * ((seed * 7919) % 100) / 99


Edit = Callable[[Image.Image, int], Image.Image]
RESAMPLE = Image.Resampling.LANCZOS


def _scale(image: Image.Image, factor: float) -> Image.Image:
    size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
    return image.resize(size, RESAMPLE)


SINGLE: dict[str, Edit] = {
    "jpeg_q20": lambda im, s: im,  # encoded at quality 20 below
    "jpeg_q50": lambda im, s: im,
    "resize_x0.25": lambda im, s: _scale(im, 0.25),
    "resize_x0.5": lambda im, s: _scale(im, 0.5),
    "resize_x2": lambda im, s: _scale(im, 2.0),
    "blur": lambda im, s: im.filter(ImageFilter.GaussianBlur(max(1.0, max(im.size) / 300))),
    "brightness": lambda im, s: ImageEnhance.Brightness(im).enhance(1.35),
    "contrast": lambda im, s: ImageEnhance.Contrast(im).enhance(1.5),
    "greyscale": lambda im, s: im.convert("L").convert("RGB"),
    "mirror": lambda im, s: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rot90": lambda im, s: im.transpose(Image.Transpose.ROTATE_90),
    "rot180": lambda im, s: im.transpose(Image.Transpose.ROTATE_180),
    "rot270": lambda im, s: im.transpose(Image.Transpose.ROTATE_270),
    "crop5": lambda im, s: crop(im, 0.05),
    "crop10": lambda im, s: crop(im, 0.10),
    "crop20": lambda im, s: crop(im, 0.20),
    "crop7": lambda im, s: crop(im, 0.075),  # between two bank crops
    "crop10_offcentre": lambda im, s: crop(im, 0.10, centred=False),
    "letterbox_black": lambda im, s: bars(im, _share(s), "black", True),
    "letterbox_white": lambda im, s: bars(im, _share(s), "white", True),
    "letterbox_blurred": lambda im, s: bars(im, _share(s), "blurred", True),
    "pillarbox_black": lambda im, s: bars(im, _share(s + 1), "black", False),
    "pillarbox_white": lambda im, s: bars(im, _share(s + 1), "white", False),
    "pillarbox_blurred": lambda im, s: bars(im, _share(s + 1), "blurred", False),
    "caption_bar": lambda im, s: caption(im),
    "logo": lambda im, s: logo(im),
    "watermark": lambda im, s: watermark(im),
    "screenshot": lambda im, s: screenshot(im),
}
JPEG_QUALITY = {"jpeg_q20": 20, "jpeg_q50": 50}
COMBOS = [
    ("mirror", "jpeg_q50"),
    ("crop10", "jpeg_q50"),
    ("letterbox_black", "mirror"),
    ("pillarbox_blurred", "greyscale"),
    ("rot90", "resize_x0.5"),
    ("caption_bar", "crop5"),
    ("watermark", "resize_x0.5"),
    ("screenshot", "brightness"),
    ("logo", "crop10"),
    ("blur", "letterbox_white"),
]


def edited_uploads(image: Image.Image, seed: int) -> dict[str, bytes]:
    uploads: dict[str, bytes] = {"none": jpeg_bytes(image)}
    for name, edit in SINGLE.items():
        uploads[name] = jpeg_bytes(edit(image, seed), JPEG_QUALITY.get(name, UPLOAD_QUALITY))
    for first, second in COMBOS:
        edited = SINGLE[second](SINGLE[first](image, seed), seed)
        quality = JPEG_QUALITY.get(second, JPEG_QUALITY.get(first, UPLOAD_QUALITY))
        uploads[f"{first}+{second}"] = jpeg_bytes(edited, quality)
    return uploads


# ----------------------------------------------------------------------------- methods


def plain_pdq(data: bytes) -> str:
    """python-threatexchange's path: full decode, full-resolution RGB, one hash."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    bits, _ = pdqhash.compute(pixels)
    return bits_to_hex(bits)


def phash(data: bytes) -> imagehash.ImageHash:
    return imagehash.phash(Image.open(io.BytesIO(data)))


Variants = dict[str, tuple[str, int]]

Allowed = Callable[[str, str], bool]  # (query variant, bank variant) -> compared


def _switched_off(*options: str) -> Allowed:
    """The pairs a bank with these evasion options switched off compares, by the matcher's own
    rule (`variant_allowed`)."""
    names = ("match_dihedral", "match_trimmed", "match_crops", "match_overlays")
    bank = SimpleNamespace(**{name: name not in options for name in names})
    return lambda q, b: variant_allowed(bank, q, b)


# Which (query variant, bank variant) pairs each configuration compares.
CONFIGS: dict[str, Allowed] = {
    "prescreen": _switched_off(),
    "no_dihedral": _switched_off("match_dihedral"),
    "no_trim": _switched_off("match_trimmed"),
    "no_crops": _switched_off("match_crops"),
    "no_corners": _switched_off("match_overlays"),
    "no_retrim": lambda q, b: not q.startswith("retrimmed") and b != "retrimmed",
    "crops_90_80": lambda q, b: (
        b in ("original", *TRIMMINGS, "crop90", "crop80") or b.startswith("corner")
    ),
    "original_only": lambda q, b: q == b == "original",
}


def _best(query: Variants, bank: Variants, allowed: Allowed) -> tuple[int, int, str, str]:
    best = (257, 0, "", "")
    for qname, (qhash, qquality) in query.items():
        for bname, (bhash, bquality) in bank.items():
            if not allowed(qname, bname):
                continue
            distance = pdq_distance(qhash, bhash)
            if distance < best[0]:
                best = (distance, min(qquality, bquality), qname, bname)
    return best


# ----------------------------------------------------------------------------- run


def run(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    bases = load_bases(quick)
    names = list(bases)
    log(f"{len(names)} base photos: {', '.join(names)}")
    bank_bytes = {name: jpeg_bytes(image, 95) for name, image in bases.items()}
    bank_plain = {name: plain_pdq(data) for name, data in bank_bytes.items()}
    bank_phash = {name: phash(data) for name, data in bank_bytes.items()}
    bank_pres = {
        name: bank_variants(decode_image(data, 10**9, min_side=512))
        for name, data in bank_bytes.items()
    }
    uploads: dict[str, dict[str, bytes]] = {}
    for seed, (name, image) in enumerate(bases.items()):
        uploads[name] = edited_uploads(image, seed)
    transforms = list(uploads[names[0]])
    log(f"{len(transforms)} edits per photo (incl. 'none'); hashing...")
    q_plain = {n: {t: plain_pdq(d) for t, d in ups.items()} for n, ups in uploads.items()}
    q_phash = {n: {t: phash(d) for t, d in ups.items()} for n, ups in uploads.items()}
    q_pres = {
        n: {t: query_variants(decode_image(d, 10**9, min_side=512)) for t, d in ups.items()}
        for n, ups in uploads.items()
    }
    log(f"hashed in {time.perf_counter() - started:.1f} s; matching...")

    def tally(match: Callable[[str, str, str], tuple[bool, bool]]) -> dict[str, Any]:
        """match(query_base, transform, bank_base) -> (matched, would_block)."""
        recall, recall_blockable, misses = {}, {}, {}
        for t in transforms:
            missed = [n for n in names if not match(n, t, n)[0]]
            recall[t] = round(1 - len(missed) / len(names), 3)
            missed_ok = [n for n in missed if n in blockable]
            recall_blockable[t] = round(1 - len(missed_ok) / max(1, len(blockable)), 3)
            if missed:
                misses[t] = missed
        false_matches = false_blocks = 0
        examples = []
        for n in names:
            for t in transforms:
                for other in names:
                    if other == n:
                        continue
                    matched, blocks = match(n, t, other)
                    false_matches += matched
                    false_blocks += blocks
                    if matched and len(examples) < 5:
                        examples.append(f"{n}/{t} ~ {other}")
        singles = [t for t in SINGLE if t not in HARD]
        return {
            "recall": recall,
            "recall_blockable": recall_blockable,
            "min_single_recall_blockable": min(recall_blockable[t] for t in singles),
            "false_matches": false_matches,
            "false_blocks": false_blocks,
            "min_single_recall": min(recall[t] for t in singles),
            "mean_recall_singles": round(float(np.mean([recall[t] for t in SINGLE])), 3),
            "mean_recall_combos": round(
                float(np.mean([recall[t] for t in transforms if "+" in t])), 3
            ),
            "false_match_examples": examples,
            "misses": misses,
        }

    def plain_match(n: str, t: str, other: str) -> tuple[bool, bool]:
        hit = pdq_distance(q_plain[n][t], bank_plain[other]) <= THRESHOLD
        return hit, hit

    def phash_match(n: str, t: str, other: str) -> tuple[bool, bool]:
        hit = bool((q_phash[n][t] - bank_phash[other]) <= PHASH_THRESHOLD)
        return hit, hit

    quality = {n: bank_pres[n]["original"][1] for n in names}
    # Base photos whose PDQ quality clears the floor: matches on the others only ever hold.
    blockable = [n for n in names if quality[n] >= DEFAULT_MIN_QUALITY]
    results: dict[str, Any] = {
        "plain_pdq": tally(plain_match),
        "phash": tally(phash_match),
    }
    matched_by: dict[str, dict[str, int]] = {}
    closest = {"bits": 256, "pair": ""}  # prescreen's closest distractor, over all variants
    for config, allowed in CONFIGS.items():

        def pres_match(n: str, t: str, other: str, allowed=allowed, config=config):
            distance, quality, qname, bname = _best(q_pres[n][t], bank_pres[other], allowed)
            hit = distance <= THRESHOLD
            if hit and config == "prescreen" and other == n:
                key = f"{qname}~{bname}"
                matched_by.setdefault(t, {}).setdefault(key, 0)
                matched_by[t][key] += 1
            if config == "prescreen" and other != n and distance < closest["bits"]:
                closest.update(bits=distance, pair=f"{n}/{t}:{qname} ~ {other}:{bname}")
            return hit, hit and quality >= DEFAULT_MIN_QUALITY

        results[config] = tally(pres_match)
    results["prescreen"]["matched_by"] = matched_by
    results["prescreen"]["closest_distractor"] = closest
    ablations = {k: results.pop(k) for k in list(results) if k in CONFIGS and k != "prescreen"}
    q_count = np.mean([len(v) for ups in q_pres.values() for v in ups.values()])
    b_count = np.mean([len(v) for v in bank_pres.values()])
    return {
        "threshold": THRESHOLD,
        "phash_threshold": PHASH_THRESHOLD,
        "n_base": len(names),
        "n_transforms": len(transforms) - 1,
        "distractor_pairs": len(names) * (len(names) - 1) * len(transforms),
        "results": results,
        "ablations": {
            k: {
                "min_single_recall": v["min_single_recall"],
                "min_single_recall_blockable": v["min_single_recall_blockable"],
                "mean_recall_singles": v["mean_recall_singles"],
                "mean_recall_combos": v["mean_recall_combos"],
                "false_matches": v["false_matches"],
                "false_blocks": v["false_blocks"],
                "recall": v["recall"],
            }
            for k, v in ablations.items()
        },
        "mean_query_variants": round(float(q_count), 2),
        "mean_bank_variants": round(float(b_count), 2),
        "bases": names,
        "base_quality": quality,
        "n_base_blockable": len(blockable),
        "seconds": round(time.perf_counter() - started, 1),
    }


def print_table(report: dict[str, Any]) -> None:
    res = report["results"]
    methods = ["plain_pdq", "phash", "prescreen"]
    print(
        f"threshold {report['threshold']} (pHash {report['phash_threshold']}/64), "
        f"{report['n_base']} base photos, {report['distractor_pairs']} distractor pairs"
    )
    print(f"{'edit':34}" + "".join(f"{m:>11}" for m in methods) + f"{'(q>=50)':>9}")
    for t in res["plain_pdq"]["recall"]:
        print(
            f"{t:34}"
            + "".join(f"{res[m]['recall'][t]:>11.2f}" for m in methods)
            + f"{res['prescreen']['recall_blockable'][t]:>9.2f}"
        )
    print(f"{'false matches':34}" + "".join(f"{res[m]['false_matches']:>11}" for m in methods))
    print(
        f"{'false blocks (quality guard)':34}"
        + "".join(f"{res[m]['false_blocks']:>11}" for m in methods)
    )
    closest = res["prescreen"]["closest_distractor"]
    print(f"closest distractor (prescreen): {closest['bits']} bits, {closest['pair']}")
    print("\nablations (prescreen with one kind of variant switched off):")
    for name, a in report["ablations"].items():
        print(
            f"  {name:14} min single recall {a['min_single_recall']:.2f}  mean singles "
            f"{a['mean_recall_singles']:.3f}  combos {a['mean_recall_combos']:.3f}  "
            f"false matches {a['false_matches']}"
        )
    print(
        f"\nvariants per upload {report['mean_query_variants']}, per bank item "
        f"{report['mean_bank_variants']}; {report['seconds']} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 base photos (under a minute)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    report = run(args.quick)
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
