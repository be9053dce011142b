"""Image preparation: a big photo becomes the small JPEG data URI the app sends.

Generates a photo-like 4000×3000 JPEG (quality 90) and a 6000×4000 PNG, then times the
preparation `minigpt4_ui.app.images.to_input(path)` does the first time it sees a file
(`encode(load(path))`; it remembers the result for follow-up questions), pinned to one CPU core (median of several runs). The baseline
is what the app would send without preparing the image (the file as base64) and a naive
preparation (full decode, no JPEG drafting, then the same resize and encode).

    python bench/images.py [--quick]
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _common import header, table, targets  # noqa: E402

from PIL import Image  # noqa: E402

from minigpt4_ui.app import images  # noqa: E402

TARGET_RATIO = 30
TARGET_JPEG_MS = 150


def prepare(path: str) -> str:
    """What `images.to_input` does for a file it has not seen yet."""
    return images.encode(images.load(path))


def naive(path: str) -> str:
    """The baseline preparation: decode every pixel, then resize and encode as the app does."""
    with Image.open(path) as img:
        img.load()
        img = img.convert("RGB")
        img.thumbnail((images.MAX_SIDE, images.MAX_SIDE), Image.Resampling.BICUBIC)
        return images.encode(img)


def timed(fn, path: str, runs: int) -> tuple[float, str]:
    fn(path)  # warm the page cache and Pillow's plugins
    times, result = [], ""
    for _ in range(runs):
        start = time.perf_counter()
        result = fn(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    quick = _common.quick_flag(__doc__)
    header("Image preparation: file → data URI (one CPU core)", quick)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        core = "1 core"
    except (AttributeError, OSError):
        core = "all cores (affinity unavailable)"
    runs = 3 if quick else 9
    cases = [("JPEG q90", 4000, 3000, "jpg"), ("PNG", 6000, 4000, "png")]
    if quick:  # smaller files: the same code paths, in a few seconds
        cases = [("JPEG q90", 2000, 1500, "jpg"), ("PNG", 1500, 1000, "png")]
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        for label, width, height, ext in cases:
            path = str(Path(tmp) / f"photo.{ext}")
            picture = _common.photo(width, height)
            if ext == "jpg":
                picture.save(path, format="JPEG", quality=90)
            else:
                picture.save(path, format="PNG", compress_level=1 if quick else 6)
            del picture
            raw = os.path.getsize(path)
            b64 = len(base64.b64encode(Path(path).read_bytes()))
            prep_s, uri = timed(prepare, path, runs)
            naive_s, _ = timed(naive, path, max(1, runs // 3))
            rows.append((f"{label} {width}×{height}", f"{raw / 1e6:.2f} MB", f"{b64 / 1e6:.2f} MB",
                         f"{len(uri) / 1e3:.1f} KB", f"{b64 / len(uri):.0f}×",
                         f"{prep_s * 1e3:.0f}", f"{naive_s * 1e3:.0f}", f"{naive_s / prep_s:.1f}×"))
            results[ext] = (b64 / len(uri), prep_s, len(uri))
    print(f"\nmedian of {runs} runs on {core}; baseline = base64 of the file / full decode without drafting")
    table(rows, ["Image", "File", "base64 of file", "Data URI sent", "Fewer bytes",
                 "to_input ms", "naive ms", "Speed-up"])
    jpeg_ratio, jpeg_s, jpeg_len = results["jpg"]
    png_ratio, png_s, png_len = results["png"]
    targets([
        ("data URI < 256 KB (both)", f"{jpeg_len / 1e3:.0f} KB, {png_len / 1e3:.0f} KB",
         max(jpeg_len, png_len) < images.MAX_DATA_URI_BYTES),
        (f"≥ {TARGET_RATIO}× fewer bytes than base64 (both)", f"{jpeg_ratio:.0f}×, {png_ratio:.0f}×",
         min(jpeg_ratio, png_ratio) >= TARGET_RATIO),
        (f"JPEG 4000×3000 < {TARGET_JPEG_MS} ms on one core", f"{jpeg_s * 1e3:.0f} ms",
         None if quick else jpeg_s * 1e3 < TARGET_JPEG_MS),
    ])


if __name__ == "__main__":
    main()
