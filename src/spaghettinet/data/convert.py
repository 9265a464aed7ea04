"""``data convert``: write a dataset in Pascal VOC, COCO JSON or YOLO from any of the three.

The source is read and checked as ``validate`` reads it (format detected or forced); every valid image is written,
its boxes in the target format, and the images with errors are listed and left out. Layouts written, each the one
its tools read:

* ``voc``: ``DIR/<image>`` beside ``DIR/<stem>.xml`` (labelImg's layout; ``spaghettinet run DIR`` reads it).
* ``coco``: ``DIR/images/<image>`` and ``DIR/labels.json`` (MediaPipe Model Maker's ``Dataset.from_coco_folder``
  layout), category ids 1..N in class-name order.
* ``yolo``: ``DIR/images/<image>``, ``DIR/labels/<stem>.txt`` and ``DIR/data.yaml`` (Ultralytics' layout; ``train``
  and ``val`` both name ``images``, since the split is yours to make).

Boxes are the validated ones: as written in the source, except that a box overshooting its image by at most 1 % is
clipped to it (``validate`` warns of each). Converting back gives the same boxes: integer pixel corners exactly,
any corner to :data:`~spaghettinet.data.formats.PIXEL_DECIMALS` decimals of a pixel. ``difficult`` and
``truncated`` flags exist only in VOC and are dropped by the other formats.

Images are hard-linked where possible (else copied), never changed. ``--out`` must not exist or be an empty folder:
nothing of yours is overwritten or deleted; the output is written in a temporary folder beside it and renamed into
place when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spaghettinet.data.formats import FORMATS, check_format
from spaghettinet.data.problems import ERROR, Problem
from spaghettinet.data.split import link_or_copy
from spaghettinet.data.validate import validate
from spaghettinet.data.voc import voc_xml_text
from spaghettinet.errors import UsageError
from spaghettinet.io_utils import atomic_path


@dataclass(frozen=True)
class ConvertResult:
    """What :func:`convert` wrote.

    Args:
        out: the folder written.
        source_format, target_format: what was read and written.
        images: images written; ``objects`` boxes in them.
        class_names: the classes, sorted (COCO ids and YOLO indices follow this order).
        problems: everything validation found in the source (errors: left out).
    """

    out: Path
    source_format: str
    target_format: str
    images: int
    objects: int
    class_names: list[str]
    problems: list[Problem]

    @property
    def excluded(self) -> list[Problem]:
        """The errors: their images were not written."""
        return [p for p in self.problems if p.severity == ERROR]


def _check_out(source: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise UsageError("--out exists and is not a folder; give a new folder", out)
        if any(out.iterdir()):
            raise UsageError(
                "--out is a folder that is not empty; convert writes only into a new or empty folder, so that "
                "nothing there is overwritten",
                out,
            )
    source_resolved, out_resolved = source.resolve(), out.resolve()
    if out_resolved == source_resolved or source_resolved in out_resolved.parents:
        raise UsageError(
            f"--out {out} lies inside the source folder {source}; a later scan of the source would find the "
            "converted images too. Choose a folder outside it."
        )


def convert(
    source: str | Path,
    to: str,
    out: str | Path,
    format: str | None = None,
    annotations: str | Path | None = None,
) -> ConvertResult:
    """Write the dataset in ``source`` as a ``to`` dataset in ``out`` (see the module docstring for the layouts).

    Args:
        source: the dataset folder (VOC, COCO or YOLO).
        to: ``voc``, ``coco`` or ``yolo``.
        out: a folder that does not exist yet, or is empty.
        format: the source's format; None detects it.
        annotations: VOC's separate xml folder, if any.

    Returns:
        A :class:`ConvertResult`; its ``excluded`` lists the images left out for errors.

    Raises:
        UsageError: an unknown format, ``out`` not empty or inside ``source``, or no valid image in ``source``.

    Example:
        >>> result = convert("photos", "coco", "photos-coco")
        >>> result.images, result.class_names
        (149, ['Arduino_Nano', 'ESP8266'])
    """
    source, out = Path(source), Path(out)
    target = check_format(to, "--to")
    if target is None:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}")
    if not source.is_dir():
        raise UsageError("is not a folder (expected a folder of labelled images)", source)
    _check_out(source, out)
    report = validate(source, annotations, format=format)
    if not report.pairs:
        raise UsageError(
            f"no valid labelled image to convert ({len(report.errors)} error(s); run `spaghettinet validate`)",
            source,
        )
    class_names = sorted({obj.name for pair in report.pairs for obj in pair.annotation.objects})
    empty_out = out.is_dir()
    with atomic_path(out) as folder:
        folder.mkdir()
        _WRITERS[target](report.pairs, class_names, folder)
        if empty_out:
            # Only an empty folder is replaced, and rmdir refuses one that something was written into meanwhile.
            try:
                out.rmdir()
            except OSError as exc:
                raise UsageError(
                    f"--out is no longer empty ({exc.strerror}); nothing was written", out
                ) from None
    return ConvertResult(
        out=out,
        source_format=report.format,
        target_format=target,
        images=len(report.pairs),
        objects=sum(len(pair.annotation.objects) for pair in report.pairs),
        class_names=class_names,
        problems=report.problems,
    )


def _write_voc(pairs, class_names: list[str], folder: Path) -> None:
    for pair in pairs:
        annotation = pair.annotation
        link_or_copy(pair.image_path, folder / pair.image_path.name)
        text = voc_xml_text(pair.image_path.name, annotation.width, annotation.height, annotation.objects)
        (folder / f"{pair.stem}.xml").write_text(text, encoding="utf-8")


def _write_coco(pairs, class_names: list[str], folder: Path) -> None:
    from spaghettinet.data.coco_format import coco_document

    (folder / "images").mkdir()
    for pair in pairs:
        link_or_copy(pair.image_path, folder / "images" / pair.image_path.name)
    document = coco_document([(pair.image_path.name, pair.annotation) for pair in pairs], class_names)
    (folder / "labels.json").write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_yolo(pairs, class_names: list[str], folder: Path) -> None:
    from spaghettinet.data.yolo_format import data_yaml_text, yolo_label_text

    index = {name: position for position, name in enumerate(class_names)}
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    for pair in pairs:
        link_or_copy(pair.image_path, folder / "images" / pair.image_path.name)
        # Negatives get an empty file: no file would mean the same to Ultralytics, but looks like a lost label.
        (folder / "labels" / f"{pair.stem}.txt").write_text(
            yolo_label_text(pair.annotation, index), encoding="utf-8"
        )
    (folder / "data.yaml").write_text(data_yaml_text(class_names), encoding="utf-8")


_WRITERS = {"voc": _write_voc, "coco": _write_coco, "yolo": _write_yolo}

__all__ = ["ConvertResult", "convert"]
