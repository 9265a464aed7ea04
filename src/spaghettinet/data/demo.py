"""The embedded demo dataset: synthetic photos of four toy objects, JPEG + VOC xml side by side (the seed's layout).

Made offline from a seed with numpy and Pillow, byte for byte the same for the same seed and image count. It is
meant to be learnt by SpaghettiNet-S at about 160x160 input in minutes on two CPU cores, without being trivial:

* classes differ in shape **and** colour: ``ball`` (red-orange disc with a highlight), ``block`` (blue rectangle),
  ``star`` (yellow five-pointed star), ``triangle`` (green triangle); hue, brightness and size vary;
* objects are mostly medium to large (15-60 % of the image side; one in five is small, 8-15 %), rotated up to
  ±30°, with a soft shadow, shading and an outline;
* backgrounds look like a photo of a table or a wall: low-frequency colour blotches in muted colours, lighting
  gradient, sensor noise, a few desaturated distractors (sticks, pebbles) that are none of the classes;
* 1-4 objects per image; about 8 % of the images have none (negatives); objects may overlap (each keeps at least
  about two thirds visible), may be cut by the image border (``truncated``) or crossed by a stick (occlusion).

Images are 320x320 (:data:`IMAGE_SIZE`), small enough to decode fast. The default of 300 images
(:data:`DEFAULT_IMAGES`) gives 240 training images after an 80/20 split: enough for the demo to reach a good AP50
in its time budget.
"""

from __future__ import annotations

import functools
import io
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from spaghettinet.data.voc import VocObject, voc_xml_text
from spaghettinet.errors import UsageError
from spaghettinet.io_utils import atomic_path

IMAGE_SIZE = (320, 320)
"""(width, height) of every demo image."""

DEFAULT_IMAGES = 300
"""Images made when no count is given."""

DEMO_CLASSES = ("ball", "block", "star", "triangle")
"""The class names, in label map order."""

JPEG_QUALITY = 90

_MARKER = ".spaghettinet-demo"
"""Written in the output folder so a later run may replace it (and never a folder of the user's photos)."""

# Base colours (RGB) per class: far apart in hue so colour alone is a cue, as shape is.
_BASE_COLOURS = {
    "ball": (220, 60, 40),
    "block": (40, 90, 210),
    "star": (240, 200, 40),
    "triangle": (50, 170, 70),
}


@dataclass(frozen=True)
class DemoResult:
    """What :func:`make_demo` wrote.

    Args:
        out_dir: the folder with ``demo_00000.jpg`` / ``demo_00000.xml``...
        images: images written; ``negatives`` of them have no object.
        objects_per_class: class name -> objects.
        seconds: time taken.
    """

    out_dir: Path
    images: int
    negatives: int
    objects_per_class: dict[str, int]
    seconds: float


def _polygon(name: str, rng: np.random.Generator, size: float) -> np.ndarray:
    """Vertices (x, y) around the origin of a shape whose longer side is about ``size`` pixels."""
    if name == "ball":
        angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * size / 2
    if name == "block":
        aspect = rng.uniform(0.65, 1.0)
        half_w, half_h = size / 2, size * aspect / 2
        if rng.random() < 0.5:
            half_w, half_h = half_h, half_w
        points = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    elif name == "star":
        angles = np.linspace(-math.pi / 2, 1.5 * math.pi, 10, endpoint=False)
        radii = np.where(np.arange(10) % 2 == 0, size / 2, size / 2 * rng.uniform(0.38, 0.5))
        points = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    else:  # triangle: isosceles to equilateral
        half_base = size / 2 * rng.uniform(0.8, 1.0)
        points = np.array([[0.0, -size / 2], [half_base, size / 2], [-half_base, size / 2]])
    angle = math.radians(rng.uniform(-30, 30))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return points @ rotation.T


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Photo-like surface: muted colour blotches, a lighting gradient and a fine texture.

    Built at 1/8 resolution and enlarged once (bilinear), which keeps it smooth and fast.
    """
    small_w, small_h = width // 8, height // 8
    base = rng.uniform(70, 190, size=3).astype(np.float32)
    # Muted: small deviations around one base colour.
    tint = rng.normal(0, 10, size=(4, 4, 3)).astype(np.float32)
    blotches = np.stack(
        [
            np.asarray(Image.fromarray(tint[..., c], "F").resize((small_w, small_h), Image.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    light = 1 + rng.uniform(0.1, 0.3) * (
        (xs / small_w - 0.5) * math.cos(angle) + (ys / small_h - 0.5) * math.sin(angle)
    )
    texture = rng.standard_normal((small_h, small_w, 1), dtype=np.float32) * 8
    small = (base + blotches) * light[..., None] + texture
    return Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)


def _distractor(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    """A desaturated stick or pebble: clutter that is none of the classes."""
    grey = int(rng.uniform(40, 200))
    colour = tuple(int(np.clip(grey + rng.normal(0, 12), 0, 255)) for _ in range(3))
    if rng.random() < 0.5:
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        length, angle = rng.uniform(0.2, 0.6) * width, rng.uniform(0, 2 * math.pi)
        end = (x0 + length * math.cos(angle), y0 + length * math.sin(angle))
        draw.line([(x0, y0), end], fill=colour, width=int(rng.integers(3, 9)))
    else:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(5, 25), rng.uniform(5, 25)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)


def _object_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    colour = np.asarray(_BASE_COLOURS[name], np.float32)
    colour = colour + rng.normal(0, 12, size=3)  # hue / tone jitter that stays within the class's colour
    return np.clip(colour * rng.uniform(0.8, 1.15), 0, 255)


def _mask(points: np.ndarray, width: int, height: int) -> Image.Image:
    # Drawn at 2x and reduced: anti-aliased edges, like a photo's.
    big = Image.new("L", (width * 2, height * 2), 0)
    ImageDraw.Draw(big).polygon([(2 * x, 2 * y) for x, y in points], fill=255)
    return big.resize((width, height), Image.BILINEAR)


def _paint_object(
    canvas: Image.Image, rng: np.random.Generator, name: str, points: np.ndarray, centre, size: float
) -> Image.Image:
    """Draw one object (shadow, shaded fill, outline) on ``canvas``, working only on its neighbourhood."""
    offset = max(2, int(size * 0.05))
    margin = 3 * offset + 4
    left = max(0, int(points[:, 0].min()) - margin)
    top = max(0, int(points[:, 1].min()) - margin)
    right = min(canvas.width, int(points[:, 0].max()) + margin + 1)
    bottom = min(canvas.height, int(points[:, 1].max()) + margin + 1)
    width, height = right - left, bottom - top
    local = points - np.asarray([left, top])
    patch = canvas.crop((left, top, right, bottom))
    mask = _mask(local, width, height)
    # Soft shadow below and to the right, as under a lamp.
    shadow = Image.new("L", (width, height), 0)
    shadow.paste(mask, (offset, offset))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(2, offset))).point(_SHADOW_TABLE)
    patch = Image.composite(Image.new("RGB", (width, height), (20, 20, 20)), patch, shadow)
    colour = _object_colour(name, rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = centre[0] - left, centre[1] - top
    if name == "ball":  # highlight towards the top left
        distance = np.hypot(xs - (cx - size * 0.2), ys - (cy - size * 0.2)) / size
        shade = 1.25 - 0.6 * np.clip(distance, 0, 1)
    else:
        angle = rng.uniform(0, 2 * math.pi)
        shade = 1 + 0.35 * ((xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)) / size
    layer = Image.fromarray(np.clip(colour * shade[..., None], 0, 255).astype(np.uint8))
    patch = Image.composite(layer, patch, mask)
    outline = tuple(int(c * 0.55) for c in colour)
    ImageDraw.Draw(patch).line(
        [tuple(p) for p in local] + [tuple(local[0])], fill=outline, width=2, joint="curve"
    )
    canvas.paste(patch, (left, top))
    return canvas


def _place(
    rng: np.random.Generator,
    size: float,
    width: int,
    height: int,
    boxes: list[tuple[float, float, float, float]],
) -> tuple[float, float] | None:
    for _ in range(30):
        # Centres may lie a little outside the image's inner area: some objects are cut by the border.
        cx = rng.uniform(size * 0.3, width - size * 0.3)
        cy = rng.uniform(size * 0.3, height - size * 0.3)
        box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        area = size * size
        if all(_overlap(box, other) < 0.3 * min(area, _area(other)) for other in boxes):
            return cx, cy
    return None


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


_NOISE_OFFSET = 16
# Brightness scale of the shadow mask: a shadow darkens by at most 45 %.
_SHADOW_TABLE = [int(v * 0.45) for v in range(256)]


@functools.cache
def _noise_field() -> Image.Image:
    """Gaussian noise (sigma 4 grey levels, stored + 16) for windows of the images; fixed, so output is
    deterministic."""
    size = 2 * max(IMAGE_SIZE)
    noise = np.random.default_rng(12345).normal(0, 4, size=(size, size, 3))
    return Image.fromarray(np.clip(np.round(noise) + _NOISE_OFFSET, 0, 2 * _NOISE_OFFSET).astype(np.uint8))


def render_demo_image(seed: int, index: int) -> tuple[bytes, list[VocObject]]:
    """Render one demo image.

    Args:
        seed: dataset seed.
        index: image number; image ``index`` of a seed is the same whatever the image count.

    Returns:
        ``(jpeg_bytes, objects)`` with boxes in pixels of the :data:`IMAGE_SIZE` image.
    """
    rng = np.random.default_rng([seed, index])
    width, height = IMAGE_SIZE
    canvas = _background(rng, width, height)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 4))):
        _distractor(draw, rng, width, height)
    count = 0 if rng.random() < 0.08 else int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
    objects: list[VocObject] = []
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(count):
        name = DEMO_CLASSES[int(rng.integers(len(DEMO_CLASSES)))]
        side = rng.uniform(0.08, 0.15) if rng.random() < 0.2 else rng.uniform(0.15, 0.6)
        size = side * min(width, height)
        centre = _place(rng, size, width, height, boxes)
        if centre is None:
            continue
        points = _polygon(name, rng, size) + np.asarray(centre)
        canvas = _paint_object(canvas, rng, name, points, centre, size)
        draw = ImageDraw.Draw(canvas)
        xmin, ymin = points.min(axis=0)
        xmax, ymax = points.max(axis=0)
        clipped = (max(0.0, xmin), max(0.0, ymin), min(float(width), xmax), min(float(height), ymax))
        truncated = clipped != (xmin, ymin, xmax, ymax)
        boxes.append(clipped)
        objects.append(
            VocObject(
                name,
                round(clipped[0]),
                round(clipped[1]),
                round(clipped[2]),
                round(clipped[3]),
                truncated=truncated,
            )
        )
    if objects and rng.random() < 0.15:
        # A stick across one object: partial occlusion the detector has to see through.
        target = boxes[int(rng.integers(len(boxes)))]
        cx, cy = (target[0] + target[2]) / 2, (target[1] + target[3]) / 2
        angle, length = rng.uniform(0, math.pi), max(target[2] - target[0], target[3] - target[1])
        dx, dy = math.cos(angle) * length * 0.7, math.sin(angle) * length * 0.7
        grey = int(rng.uniform(60, 160))
        draw.line(
            [(cx - dx, cy - dy), (cx + dx, cy + dy)],
            fill=(grey, grey - 10, grey - 25),
            width=int(rng.integers(4, 9)),
        )
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 4  # sensor noise
    pixels = np.asarray(canvas, np.float32) + noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    return buffer.getvalue(), objects


def _write_demo_pair(folder: Path, index: int, jpeg: bytes, objects: list[VocObject]) -> None:
    stem = f"demo_{index:05d}"
    (folder / f"{stem}.jpg").write_bytes(jpeg)
    (folder / f"{stem}.xml").write_text(voc_xml_text(f"{stem}.jpg", *IMAGE_SIZE, objects), encoding="utf-8")


def make_demo(out_dir: str | Path, images: int = DEFAULT_IMAGES, seed: int = 0) -> DemoResult:
    """Write the demo dataset: ``demo_NNNNN.jpg`` and ``demo_NNNNN.xml`` side by side in ``out_dir``.

    Args:
        out_dir: the folder to create. An existing folder is replaced only if it was made by this function
            (it holds a ``.spaghettinet-demo`` marker); any other non-empty folder is refused.
        images: number of images (default :data:`DEFAULT_IMAGES`).
        seed: dataset seed; the same seed and count give the same bytes.

    Returns:
        A :class:`DemoResult`.

    Raises:
        UsageError: ``images < 1``, or ``out_dir`` is a non-empty folder not made by this function.

    Example:
        >>> result = make_demo("demo-data", images=300, seed=0)
        >>> result.images, sorted(result.objects_per_class)
        (300, ['ball', 'block', 'star', 'triangle'])
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if images < 1:
        raise UsageError(f"--images must be at least 1, got {images}")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise UsageError("exists and is not a folder", out_dir)
        if any(out_dir.iterdir()) and not (out_dir / _MARKER).exists():
            raise UsageError(
                "is a non-empty folder not made by `data make-demo`; choose a new folder", out_dir
            )
    counts: Counter[str] = Counter()
    negatives = 0
    with atomic_path(out_dir) as folder:
        folder.mkdir()
        (folder / _MARKER).write_text(f"seed={seed} images={images}\n")
        with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            rendered = pool.map(lambda index: render_demo_image(seed, index), range(images))
            for index, (jpeg, objects) in enumerate(rendered):
                _write_demo_pair(folder, index, jpeg, objects)
                counts.update(obj.name for obj in objects)
                negatives += not objects
    return DemoResult(
        out_dir=out_dir,
        images=images,
        negatives=negatives,
        objects_per_class={name: counts[name] for name in DEMO_CLASSES},
        seconds=time.perf_counter() - started,
    )
