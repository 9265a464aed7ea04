"""Image files as the dataset stage sees them: what they really are, and their bytes ready for a TFRecord.

What is checked and why:

* The format comes from the file's content, not its extension (a PNG named ``.jpg`` is reported and converted).
* Sizes are given **after EXIF orientation**: labelImg and photo viewers show the image rotated by its EXIF
  ``Orientation`` tag, and the boxes in the xml refer to that view. TensorFlow's ``decode_jpeg`` ignores EXIF, so
  such images are rotated once here and re-encoded; their stored pixels then match the boxes.
* Baseline and progressive RGB JPEGs without rotation are stored as they are (no re-encoding, no quality loss;
  ``tf.io.decode_jpeg`` reads both). Everything else (PNG, greyscale, CMYK, RGBA, palette, 16-bit, rotated) is
  converted once to an RGB JPEG at quality 95 (:data:`JPEG_QUALITY`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from spaghettinet.data.problems import ProblemError

JPEG_QUALITY = 95
"""Quality of the JPEGs written for converted images: visually lossless, 3-4x smaller than PNG."""

_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 swap width and height (EXIF 2.32, tag 274).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


@dataclass(frozen=True)
class ImageInfo:
    """What an image file really is.

    Args:
        path: the file.
        format: Pillow's format name from the content (``"JPEG"``, ``"PNG"``, ...).
        mode: Pillow's mode (``"RGB"``, ``"L"``, ``"RGBA"``, ``"CMYK"``, ``"I;16"``, ...).
        width, height: size in pixels after EXIF orientation (what labelImg showed).
        orientation: the EXIF orientation tag, 1 when absent.
        stored_as_is: True when the bytes go into the TFRecord unchanged (RGB JPEG, no rotation).
    """

    path: Path
    format: str
    mode: str
    width: int
    height: int
    orientation: int
    stored_as_is: bool

    @property
    def raw_size(self) -> tuple[int, int]:
        """(width, height) of the stored pixels, before EXIF orientation."""
        if self.orientation in _TRANSPOSING_ORIENTATIONS:
            return self.height, self.width
        return self.width, self.height

    def conversion_notes(self) -> list[str]:
        """Why this image will be converted (empty when it is stored as is)."""
        notes = []
        extension = self.path.suffix.lower()
        if self.format == "PNG" and extension in (".jpg", ".jpeg"):
            notes.append("is a PNG file named .jpg")
        elif self.format == "JPEG" and extension == ".png":
            notes.append("is a JPEG file named .png")
        elif self.format not in ("JPEG", "PNG"):
            notes.append(f"is a {self.format} file")
        if self.mode in ("L", "LA", "1"):
            notes.append("is greyscale")
        elif self.mode in ("RGBA", "PA") or (self.mode == "P" and self.format == "PNG"):
            notes.append(f"has mode {self.mode} (alpha or palette)")
        elif self.mode == "CMYK":
            notes.append("is CMYK")
        elif self.mode.startswith("I") or self.mode == "F":
            notes.append(f"has 16/32-bit samples (mode {self.mode})")
        if self.orientation != 1:
            notes.append(f"has EXIF orientation {self.orientation} (rotated once, as labelImg shows it)")
        return notes


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise ProblemError("image-does-not-decode", "file not found", path) from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        reason = "the file is empty (0 bytes)" if size == 0 else "not an image Pillow can identify"
        raise ProblemError("image-does-not-decode", f"image does not decode: {reason}", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ProblemError("image-does-not-decode", f"image does not decode: {exc}", path) from None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block does not make the pixels unusable
        return 1
    return value if value in range(1, 9) else 1


def inspect_image(path: str | Path, full_decode: bool = True) -> ImageInfo:
    """Identify an image file and check that it decodes.

    Args:
        path: the image file.
        full_decode: decode every pixel (catches any corruption; what ``validate`` does). When False only the
            header is read, plus a full decode for JPEGs that do not end with the end-of-image marker (the cheap
            check the TFRecord writer uses to catch truncated files).

    Returns:
        An :class:`ImageInfo`.

    Raises:
        ProblemError (a DataError): empty, truncated, or not an image.

    Example:
        >>> info = inspect_image("IMG_1.jpg")
        >>> (info.width, info.height, info.stored_as_is)
        (800, 600, True)
    """
    path = Path(path)
    with _open(path) as image:
        image_format = image.format or "unknown"
        mode = image.mode
        orientation = _orientation(image)
        width, height = image.size
        needs_decode = full_decode or image_format != "JPEG" or not _ends_with_jpeg_eoi(path)
        if needs_decode:
            try:
                image.load()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                raise ProblemError(
                    "image-does-not-decode", f"image does not decode (truncated or corrupt): {exc}", path
                ) from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    stored_as_is = image_format == "JPEG" and mode == "RGB" and orientation == 1
    return ImageInfo(path, image_format, mode, width, height, orientation, stored_as_is)


def _ends_with_jpeg_eoi(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 2))
        return handle.read(2) == b"\xff\xd9"


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode.startswith("I") or image.mode == "F":
        # 16-bit (I;16) and 32-bit (I, F) samples: scale the full range of the type to 0..255.
        samples = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or samples.max(initial=0) > 255 else 255.0
        samples = np.clip(samples / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(samples, "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, as most viewers (and labelImg) show them on a light background.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encoded_rgb_jpeg(path: str | Path, info: ImageInfo | None = None) -> bytes:
    """Return the bytes to store for an image: the file itself when it is an upright RGB JPEG, else a conversion.

    Args:
        path: the image file.
        info: its :class:`ImageInfo`, when already known (saves a second header read).

    Returns:
        JPEG bytes whose decoded size is ``(info.height, info.width)`` and whose pixels are RGB, upright.

    Raises:
        ProblemError (a DataError): the image does not decode.
    """
    path = Path(path)
    info = info or inspect_image(path, full_decode=False)
    if info.stored_as_is:
        return path.read_bytes()
    with _open(path) as image:
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ProblemError(
                "image-does-not-decode", f"image does not decode (truncated or corrupt): {exc}", path
            ) from None
        buffer = io.BytesIO()
        rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
