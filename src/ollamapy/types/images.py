"""What an image is before any model sees it: its format and size, read from its header.

Both the server (to refuse a bad image with a 400 before a runner is touched) and the
runner (which must never hand its decoder something that could take it down) ask
`probe_image`. Pillow reads only the header here; the pixels are decoded later by
llama.cpp's own loader (stb_image, through mtmd) or, for the formats that loader lacks
(WebP), by Pillow in the runner.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from ollamapy.errors import BadRequestError

FORMATS = ("PNG", "JPEG", "GIF", "WEBP")
"""The image formats served, as Pillow names them (Ollama's: PNG, JPEG, WebP; GIF's first
frame too)."""

NATIVE_FORMATS = ("PNG", "JPEG", "GIF")
"""The formats llama.cpp's own loader (stb_image) decodes."""

MAX_PIXELS = 50_000_000
"""The largest image accepted (width x height): a 20,000 x 20,000 "decompression bomb"
would need 1.2 GB of RGB before the projector resizes it to a few hundred pixels."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    width: int
    height: int


def probe_image(data: bytes) -> ImageInfo:
    """The image's format and size, or Ollama-style 400s for what cannot be served: not an
    image, an unsupported format (SVG, BMP, ...), a truncated or corrupt file, or one
    too large to decode safely."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=None) as image:
                info = ImageInfo(str(image.format), *image.size)
                if info.format not in FORMATS:
                    raise BadRequestError(
                        f"unsupported image format {info.format}: send PNG, JPEG, WebP or GIF"
                    )
                if info.width * info.height > MAX_PIXELS:
                    raise BadRequestError(
                        f"image too large: {info.width}x{info.height} pixels "
                        f"(at most {MAX_PIXELS} pixels)"
                    )
                image.verify()  # chunk checksums and structure, without decoding pixels
    except Image.DecompressionBombError:
        raise BadRequestError(f"image too large (at most {MAX_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise BadRequestError("invalid image data: not a PNG, JPEG, WebP or GIF image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadRequestError(f"invalid image data: {exc}") from None
    return info
