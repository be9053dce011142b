"""What decoding an image from a stranger may cost; shared by the app and the server.

Only common web formats are opened (Pillow's other plugins include TIFF, whose decoders can take
far more memory than the file suggests, and EPS, which runs Ghostscript). The pixel count is
checked from the header, before any pixel is decoded. A decode holds up to about 4 bytes a pixel
(RGBA), and only MAX_DECODES run at once in a process, so a flood of large images queues instead
of multiplying memory.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import IO, Iterator

from PIL import Image

FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
MAX_DECODES = 2
_decodes = threading.BoundedSemaphore(MAX_DECODES)

# Pillow allocates pixels in 16 MB blocks, which glibc serves from per-thread heaps once its mmap
# threshold has adapted, and keeps after they are freed: big decodes on many threads ratchet the
# process up (six 64 MP images at once: +909 MB instead of +600). Blocks of 64 MB are over glibc's
# 32 MB threshold cap, so they are always mapped and go back to the system when freed.
Image.core.set_block_size(64 * 1024 * 1024)


class TooManyPixels(ValueError):
    """The header declares more pixels than the budget; nothing was decoded."""

    def __init__(self, width: int, height: int):
        super().__init__(f"{width}×{height} pixels")
        self.width = width
        self.height = height


def open_image(source: str | IO[bytes], *, max_pixels: int) -> Image.Image:
    """Open (not decode) an image in one of FORMATS within `max_pixels`.

    Raises PIL.UnidentifiedImageError for other formats, TooManyPixels over the budget.
    """
    image = Image.open(source, formats=FORMATS)
    if image.width * image.height > max_pixels:
        image.close()
        raise TooManyPixels(image.width, image.height)
    return image


@contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process's MAX_DECODES decode slots (waiting for one if needed)."""
    with _decodes:
        yield
