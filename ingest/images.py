"""The one place that turns untrusted image bytes into pixels, and pixels back into PNG.

Pillow sniffs the format from the bytes; the file name only chose this path. A file that does not
decode is a ``CorruptImage`` with Pillow's reason; one that would decode into more pixels than
``MAX_PIXELS`` is refused before its pixels are allocated.

HEIC/HEIF photos (iPhones save them) are decoded by ``pi_heif``, registered with Pillow here: the
decode-only build of ``pillow-heif`` (libheif and libde265, no encoder).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator

import pi_heif
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from ingest.errors import CorruptImage, DecompressionBomb

pi_heif.register_heif_opener()

#: larger than any real scan or photo (a 600 dpi A3 page is 70 MP), small enough to fit in memory
MAX_PIXELS = 150_000_000
#: a multi-page TIFF with more frames than this is treated as a hostile file
MAX_FRAMES = 2_000


def open_image(data: bytes, what: str = "image") -> Image.Image:
    """Decode the header and check the size; pixels load lazily. Raises a PermanentError."""
    try:
        with warnings.catch_warnings():
            # the size is checked below against our own limit, which is above Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise DecompressionBomb(f"{what} is too large to decode: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise CorruptImage(
            f"not a valid {what} (the bytes are not an image Pillow can read)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptImage(f"not a valid {what}: {exc}") from exc
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise DecompressionBomb(
            f"{what} is {width}x{height} pixels, over the limit of {MAX_PIXELS:,} pixels"
        )
    if width == 0 or height == 0:
        raise CorruptImage(f"not a valid {what}: it has no pixels ({width}x{height})")
    return img


def load_frames(data: bytes, what: str = "image") -> Iterator[Image.Image]:
    """Every frame (a multi-page TIFF is a scanned document), upright and fully decoded."""
    img = open_image(data, what)
    try:
        for number, frame in enumerate(ImageSequence.Iterator(img)):
            if number >= MAX_FRAMES:
                raise DecompressionBomb(f"{what} has more than {MAX_FRAMES} frames")
            yield _decoded(frame, what)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise CorruptImage(f"{what} is truncated or damaged: {exc}") from exc


def first_frame(data: bytes, what: str = "image") -> Image.Image:
    return next(load_frames(data, what))


def _decoded(frame: Image.Image, what: str) -> Image.Image:
    frame.load()
    upright = ImageOps.exif_transpose(frame)
    return flatten(upright if upright is not None else frame)


def flatten(img: Image.Image) -> Image.Image:
    """RGB or grey; transparency becomes white (black text on a transparent PNG stays legible)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("RGB", "L"):
        return img
    if img.mode in ("1", "I;16", "I;16B", "I", "F"):
        return img.convert("L")
    return img.convert("RGB")


def fit(img: Image.Image, max_side: int, max_pixels: int) -> Image.Image:
    """Scaled down (never up) so that neither limit is exceeded."""
    width, height = img.size
    scale = min(1.0, max_side / max(width, height), (max_pixels / (width * height)) ** 0.5)
    if scale >= 1.0:
        return img
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def probe_size(data: bytes) -> tuple[int, int, str] | None:
    """Width, height and Pillow format from the header alone; None for what Pillow cannot read."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size[0], img.size[1], str(img.format or "")
    except Exception:  # any undecodable header means "not a raster image we can use"
        return None


#: the parse stage's file types that are images (OCR'd, and captioned as a whole)
IMAGE_FILETYPES = frozenset({"png", "jpeg", "tiff", "bmp", "webp", "heic"})
