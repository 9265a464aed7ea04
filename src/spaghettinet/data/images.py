"""Image files as the dataset stage sees them: what they really are, and their bytes ready for a TFRecord.

What is checked and why:

* The format comes from the file's content, not its extension (a PNG named ``.jpg`` is reported and converted).
* **One rule for all eight EXIF orientations: boxes and sizes refer to the image as displayed**, the stored pixels
  turned by the EXIF ``Orientation`` tag. That is the view photo viewers show and labelling tools draw on: labelImg
  reads images with Qt's ``QImageReader`` and ``setAutoTransform(True)`` and records the turned size in ``<size>``
  since HumanSignal/labelImg pull request #650 (2020), labelme since wkentaro/labelme pull request #305, and
  Ultralytics measures photos in that view (its ``exif_size`` swaps width and height for orientations 6 and 8). TensorFlow's ``decode_jpeg`` ignores EXIF, so such images are turned once
  here (:func:`PIL.ImageOps.exif_transpose`) and re-encoded: the TFRecord then holds the pixels the boxes were drawn
  on, evaluation reads those records, and ``predict`` must turn photos the same way. The model also learns objects
  upright, as a camera delivers its frames. A ``<size>`` that matches the stored pixels but not the displayed view
  (orientations 5-8 swap width and height) means a tool that ignores the tag (labelImg before that change) drew
  the boxes: an error whose message says how to drop the tag. For 2-4 the sizes agree and nothing in the xml tells
  the two apart, so the warning of such an image names the rule.
* Images over :func:`max_image_pixels` pixels are refused (a decompression bomb: a small file that decodes to
  gigabytes), with the limit in the message; ``SPAGHETTINET_MAX_IMAGE_PIXELS`` raises it for real gigapixel photos.
* Baseline and progressive RGB JPEGs without an orientation tag are stored as they are (no re-encoding, no quality
  loss; ``tf.io.decode_jpeg`` reads both). Everything else (PNG, greyscale, CMYK, RGBA, palette, 16-bit, turned by
  EXIF) is converted once to an upright RGB JPEG at quality 95 (:data:`JPEG_QUALITY`).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spaghettinet.data.problems import ProblemError
from spaghettinet.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

# Pillow and numpy are imported where they are used: the TFRecord writer's worker processes check most JPEGs
# without them (see _jpeg_header_info) and start faster for it.

JPEG_QUALITY = 95
"""Quality of the JPEGs written for converted images: visually lossless, 3-4x smaller than PNG."""

_EXIF_ORIENTATION = 0x0112
# Orientations 5-8 swap width and height (EXIF 2.32, tag 274).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
# What a viewer does to the stored pixels before showing them, per EXIF orientation value (EXIF 2.32, tag 274).
_ORIENTATION_WORDS = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "flipped over its top-left to bottom-right diagonal",
    6: "rotated 90° clockwise",
    7: "flipped over its top-right to bottom-left diagonal",
    8: "rotated 90° counter-clockwise",
}

MAX_IMAGE_PIXELS_VARIABLE = "SPAGHETTINET_MAX_IMAGE_PIXELS"
#: Pillow's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``, 1024 * 1024 * 1024 // 4 // 3 pixels: about 89.5
#: megapixels, a 268 MB RGB image), far above any camera photo a detector is trained on.
DEFAULT_MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3


@dataclass(frozen=True)
class ImageInfo:
    """What an image file really is.

    Args:
        path: the file.
        format: Pillow's format name from the content (``"JPEG"``, ``"PNG"``, ...).
        mode: Pillow's mode (``"RGB"``, ``"L"``, ``"RGBA"``, ``"CMYK"``, ``"I;16"``, ...).
        width, height: size in pixels after EXIF orientation (the displayed view, what labelImg shows).
        orientation: the EXIF orientation tag, 1 when absent.
        stored_as_is: True when the bytes go into the TFRecord unchanged (RGB JPEG, no orientation tag).
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

    @property
    def orientation_words(self) -> str | None:
        """What the EXIF tag does to the stored pixels for display (``"rotated 90° clockwise"``), None if nothing."""
        return _ORIENTATION_WORDS.get(self.orientation)

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
        if self.orientation_words:
            notes.append(
                f"has EXIF orientation {self.orientation} ({self.orientation_words} for display): stored turned "
                "that way, and its boxes are read in that view, as labelImg and photo viewers show it (if they "
                "were drawn on the unturned pixels by a tool that ignores the tag, remove the tag)"
            )
        return notes


def max_image_pixels() -> int | None:
    """The largest image accepted, in pixels: ``$SPAGHETTINET_MAX_IMAGE_PIXELS``, else Pillow's default limit.

    ``0`` (or ``none``) in the variable lifts the limit. The limit protects against decompression bombs: a PNG of a
    few kilobytes can claim 50 000 x 50 000 pixels and take 7.5 GB to decode.

    Returns:
        The limit, or None for no limit.

    Raises:
        UsageError: the variable is set to something that is not a whole number.

    Example:
        >>> max_image_pixels()
        89478485
    """
    text = os.environ.get(MAX_IMAGE_PIXELS_VARIABLE, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    if text.lower() in ("0", "none"):
        return None
    if not text.isdigit():
        raise UsageError(
            f"{MAX_IMAGE_PIXELS_VARIABLE} must be a whole number of pixels (0 for no limit), "
            f"got {os.environ[MAX_IMAGE_PIXELS_VARIABLE]!r}"
        )
    return int(text)


def _pixels_text(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def _too_large(path: Path, pixels: int, limit: int, size: str) -> ProblemError:
    suggestion = max(limit * 2, -(-pixels // 1_000_000) * 1_000_000)
    return ProblemError(
        "image-too-large",
        f"image is too large: {size}{_pixels_text(pixels)}, over the limit of {_pixels_text(limit)} (a guard "
        f"against decompression bombs, files that decode to gigabytes). If the photo is real, raise the limit: "
        f"{MAX_IMAGE_PIXELS_VARIABLE}={suggestion} (0 for none)",
        path,
    )


def _open(path: Path) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    limit = max_image_pixels()
    # Pillow refuses an image over twice its MAX_IMAGE_PIXELS while opening it and warns above it; ours is the
    # limit, so both cases end below in one named problem, and its warning would only repeat it.
    Image.MAX_IMAGE_PIXELS = limit
    _quiet_pillow_bomb_warning()
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(found.group(1)) if found else 2 * (limit or 0) + 1
        raise _too_large(path, pixels, limit or 0, "") from None
    except FileNotFoundError:
        raise ProblemError("image-does-not-decode", "file not found", path) from None
    except UnidentifiedImageError:
        size = path.stat().st_size if path.exists() else 0
        reason = "the file is empty (0 bytes)" if size == 0 else "not an image Pillow can identify"
        raise ProblemError("image-does-not-decode", f"image does not decode: {reason}", path) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ProblemError("image-does-not-decode", f"image does not decode: {exc}", path) from None
    width, height = image.size
    if limit is not None and width * height > limit:
        image.close()
        raise _too_large(path, width * height, limit, f"{width}x{height} = ")
    return image


def _quiet_pillow_bomb_warning() -> None:
    """Silence Pillow's DecompressionBombWarning: every image it concerns is refused here with a message.

    Installed at each open (a repeated filter replaces itself), so a caller resetting the filters (pytest does, per
    test) does not bring the warning back.
    """
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


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
        An :class:`ImageInfo` (sizes after EXIF orientation, see the module docstring).

    Raises:
        ProblemError (a DataError): empty, truncated, not an image, or over :func:`max_image_pixels`.

    Example:
        >>> info = inspect_image("IMG_1.jpg")
        >>> (info.width, info.height, info.stored_as_is)
        (800, 600, True)
    """
    from PIL import Image

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


def _jpeg_header_info(path: Path, data: bytes) -> ImageInfo | None:
    """The :class:`ImageInfo` of a plain RGB JPEG read from its bytes, or None when Pillow must look at it.

    Walks the markers from SOI to SOS without Pillow, for the common case only: a JFIF/plain JPEG that ends with
    the end-of-image marker, one 8-bit 3-component baseline or progressive frame, no APP1 (EXIF or XMP, which may
    carry an orientation) and no MPF block. Anything else (EXIF photos, greyscale, CMYK, a marker out of place, a
    bad segment length, a huge image) returns None and :func:`inspect_image` decides, so the answer and every
    error message stay Pillow's. For the files accepted here Pillow's header parse finds the same size and mode,
    and with the end marker present ``inspect_image(full_decode=False)`` decodes nothing either.
    """
    size = len(data)
    if size < 4 or data[:3] != b"\xff\xd8\xff" or data[-2:] != b"\xff\xd9":
        return None
    frame = None
    position = 2
    while True:
        if position + 4 > size or data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = (data[position + 2] << 8) | data[position + 3]
        end = position + 2 + length
        if length < 2 or end > size:
            return None
        if marker == 0xDA:  # start of scan: the header ends here
            break
        if marker in _FRAME_MARKERS:
            if frame is not None or length < 8:
                return None
            frame = data[position + 4 : position + 10]
        elif marker == 0xDB:
            if not _quantization_tables_fit(data, position + 4, end):
                return None
        elif marker in _APP_PREFIXES:
            # Segments Pillow parses: MPF makes it an MPO; a JFIF, Adobe or ICC block too short for Pillow's
            # reads makes it fail. Both are left to Pillow.
            payload = length - 2
            for prefix, shortest in _APP_PREFIXES[marker]:
                if data.startswith(prefix, position + 4) and payload < shortest:
                    return None
        elif marker not in _PLAIN_MARKERS:
            return None
        position = end
    if frame is None or frame[0] != 8 or frame[5] != 3:
        return None
    height = (frame[1] << 8) | frame[2]
    width = (frame[3] << 8) | frame[4]
    limit = max_image_pixels()
    if width == 0 or height == 0 or (limit is not None and width * height > limit):
        return None
    return ImageInfo(path, "JPEG", "RGB", width, height, 1, True)


# SOF0 (baseline), SOF1 (extended sequential), SOF2 (progressive): what tf.io.decode_jpeg reads.
_FRAME_MARKERS = frozenset((0xC0, 0xC1, 0xC2))
# Markers Pillow only skips or stores before SOS: DHT, DRI, COM, APP3-APP12, APP15. APP1 (EXIF, XMP) and APP13
# (Photoshop) are not here: Pillow reads orientation and resolution from them, so such files go to Pillow.
_PLAIN_MARKERS = frozenset((0xC4, 0xDD, 0xFE, *range(0xE3, 0xED), 0xEF))
# APP segments Pillow parses: (prefix, fewest payload bytes it reads without failing); MPF always goes to Pillow.
_APP_PREFIXES = {
    0xE0: ((b"JFIF", 7),),
    0xE2: ((b"MPF\0", 1 << 17), (b"ICC_PROFILE\0", 14)),
    0xEE: ((b"Adobe", 7),),
}


def _quantization_tables_fit(data: bytes, start: int, end: int) -> bool:
    """The DQT segment check Pillow makes: each table of 64 values (1 or 2 bytes each) lies inside the segment."""
    while start < end:
        start += 1 + (64 if data[start] < 16 else 128)
        if start > end:
            return False
    return True


def inspect_image_for_record(path: str | Path) -> tuple[ImageInfo, bytes | None]:
    """``inspect_image(path, full_decode=False)``, plus the file's bytes when they are what a TFRecord stores.

    The same checks and the same answer as :func:`inspect_image` without ``full_decode``, with one read of the
    file in the common case (an upright RGB JPEG that ends with its end marker, see :func:`_jpeg_header_info`):
    the bytes checked are then the bytes stored. Other images go through Pillow as before.

    Returns:
        ``(info, data)``: ``data`` is the file's content when ``info.stored_as_is`` (pass it to
        :func:`encoded_rgb_jpeg` to skip a second read), else None.

    Raises:
        ProblemError (a DataError): empty, truncated, or not an image.
    """
    path = path if isinstance(path, Path) else Path(path)
    try:
        with open(path, "rb") as handle:
            # Only a JPEG is read whole here (it is stored from these bytes); anything else goes to Pillow
            # unread, so a large file that is no image costs no more than before.
            data = handle.read() if handle.peek(3)[:3] == b"\xff\xd8\xff" else b""
    except OSError:
        data = b""  # Pillow reports it below, in its own words
    info = _jpeg_header_info(path, data) if data else None
    if info is None:
        info = inspect_image(path, full_decode=False)
    return info, (data if info.stored_as_is and data else None)


def _ends_with_jpeg_eoi(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 2))
        return handle.read(2) == b"\xff\xd9"


def _to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np
    from PIL import Image

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


def encoded_rgb_jpeg(path: str | Path, info: ImageInfo | None = None, data: bytes | None = None) -> bytes:
    """Return the bytes to store for an image: the file itself when it is an upright RGB JPEG, else a conversion.

    Args:
        path: the image file.
        info: its :class:`ImageInfo`, when already known (saves a second header read).
        data: the file's content, when already read (:func:`inspect_image_for_record`); used as is for an upright
            RGB JPEG.

    Returns:
        JPEG bytes whose decoded size is ``(info.height, info.width)`` and whose pixels are RGB, turned by the EXIF
        orientation as displayed (the written JPEG carries no tag).

    Raises:
        ProblemError (a DataError): the image does not decode.
    """
    path = path if isinstance(path, Path) else Path(path)
    info = info or inspect_image(path, full_decode=False)
    if info.stored_as_is:
        return data if data is not None else path.read_bytes()
    buffer = io.BytesIO()
    open_as_displayed(path).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def open_as_displayed(path: str | Path) -> Image.Image:
    """Decode an image as its boxes see it: turned by its EXIF orientation, RGB (the rule of the module docstring).

    What the TFRecords store for a converted image, and what ``predict`` must read photos as, so that the two agree.

    Args:
        path: the image file.

    Returns:
        An RGB :class:`PIL.Image.Image` of the displayed view, detached from the file.

    Raises:
        ProblemError (a DataError): not an image, truncated or corrupt, or over :func:`max_image_pixels`.

    Example:
        >>> open_as_displayed("IMG_1.jpg").size  # doctest: +SKIP
        (600, 800)
    """
    from PIL import ImageOps

    path = path if isinstance(path, Path) else Path(path)
    with _open(path) as image:
        try:
            image.load()
            # All eight orientations, mirrored ones included (EXIF 2.32 tag 274), as Pillow implements them; the
            # result is a new image whether or not the tag turns anything.
            return _to_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError) as exc:
            raise ProblemError(
                "image-does-not-decode", f"image does not decode (truncated or corrupt): {exc}", path
            ) from None
