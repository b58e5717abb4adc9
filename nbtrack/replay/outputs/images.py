"""Figures compared perceptually, with thumbnails and a difference image when they differ.

Identical bytes are equal without decoding (a seeded matplotlib figure renders byte for byte the
same). Otherwise each of the red, green and blue channels gets a perceptual hash (imagehash's
``phash``, 256 bits); the distance is the largest share of differing bits over the channels, so a
line that only changed colour is seen (a grey-scale hash alone would miss it). SVG is compared as
normalized text by the caller. PIL and imagehash are imported only when bytes differ.
"""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["DEFAULT_THRESHOLD", "HASH_SIZE", "compare_image"]

#: Share of the perceptual hash's bits that may differ (per colour channel) for two figures to be
#: the same: anti-aliasing or a font hinting change moves a few bits, a changed curve or colour many.
DEFAULT_THRESHOLD = 0.04
HASH_SIZE = 16
#: The colour share counts this much against the threshold: re-encoding a JPEG at another quality
#: moves ~6% of the drawn pixels across colour bins, a curve redrawn in another colour 20-100%.
COLOUR_WEIGHT = 0.4
THUMBNAIL = (320, 320)
# Differences of a few grey levels are invisible; the difference image scales them up.
AMPLIFY = 8


def _decode(data: str | list[str]) -> bytes:
    text = "".join(data) if isinstance(data, list) else data
    return base64.b64decode(text)


def _png(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _shape_distance(a: Any, b: Any) -> float:
    """Share of perceptual-hash bits that differ, the worst of the three colour channels."""
    import imagehash

    worst = 0.0
    for band_a, band_b in zip(a.split(), b.split(), strict=True):
        bits = imagehash.phash(band_a, hash_size=HASH_SIZE) - imagehash.phash(band_b, hash_size=HASH_SIZE)
        worst = max(worst, bits / HASH_SIZE**2)
    return worst


def _colour_distance(a: Any, b: Any) -> float:
    """How far apart the colours of the drawn pixels are (0 same palette, 1 all changed).

    A perceptual hash ignores contrast: a curve redrawn in another colour on the same background
    keeps its hash. Here the pixels that are not the background (the image's most common colour)
    are binned by colour (4 levels a channel) and the two histograms compared (half their L1
    distance); moving a few anti-aliased pixels barely changes them.
    """
    import numpy as np

    pixels_a = np.asarray(a, dtype=np.uint8).reshape(-1, 3)
    pixels_b = np.asarray(b, dtype=np.uint8).reshape(-1, 3)
    codes_a = (pixels_a.astype(np.int32) << np.array([16, 8, 0])).sum(axis=1)
    values, counts = np.unique(codes_a, return_counts=True)
    background = values[counts.argmax()]
    codes_b = (pixels_b.astype(np.int32) << np.array([16, 8, 0])).sum(axis=1)
    histograms = []
    for pixels, codes in ((pixels_a, codes_a), (pixels_b, codes_b)):
        ink = pixels[codes != background] // 64
        bins = np.bincount((ink[:, 0] * 16 + ink[:, 1] * 4 + ink[:, 2]).astype(np.int64), minlength=64)
        histograms.append(bins / max(int(bins.sum()), 1))
    return float(np.abs(histograms[0] - histograms[1]).sum() / 2)


def _distance(a: Any, b: Any) -> float:
    return max(_shape_distance(a, b), COLOUR_WEIGHT * _colour_distance(a, b))


def _thumbnails(a: Any, b: Any) -> dict[str, str]:
    from PIL import ImageChops, ImageOps

    same_size = b if b.size == a.size else b.resize(a.size)
    difference = ImageChops.difference(a, same_size).convert("L")
    amplified = ImageOps.invert(difference.point(lambda v: min(255, v * AMPLIFY)))
    shown = {}
    for key, image in (("original_png", a), ("replayed_png", b), ("difference_png", amplified)):
        small = image.copy()
        small.thumbnail(THUMBNAIL)
        shown[key] = _png(small)
    return shown


def compare_image(
    original: str | list[str], replayed: str | list[str], *, threshold: float = DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """Compare two base64 images (PNG or JPEG) as a notebook stores them.

    Returns ``{"ok", "distance", "threshold", "detail"}``, plus ``original_png``, ``replayed_png``
    and ``difference_png`` (base64 PNG thumbnails) when they differ.

    Example:
        >>> compare_image(png, png)  # doctest: +SKIP
        {'ok': True, 'distance': 0.0, 'threshold': 0.04, 'detail': ''}
    """
    bytes_a, bytes_b = _decode(original), _decode(replayed)
    if bytes_a == bytes_b:
        return {"ok": True, "distance": 0.0, "threshold": threshold, "detail": ""}
    from PIL import Image

    a = Image.open(io.BytesIO(bytes_a)).convert("RGB")
    b = Image.open(io.BytesIO(bytes_b)).convert("RGB")
    if a.size != b.size:
        distance, detail = 1.0, f"figure size {a.size[0]}x{a.size[1]} -> {b.size[0]}x{b.size[1]}"
    else:
        distance = _distance(a, b)
        detail = "" if distance <= threshold else f"figure differs (perceptual distance {distance:.3f})"
    row: dict[str, Any] = {"ok": not detail, "distance": round(distance, 4), "threshold": threshold}
    row["detail"] = detail
    if detail:
        row.update(_thumbnails(a, b))
    return row
