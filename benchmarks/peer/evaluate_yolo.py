"""The peer's detections on the test images, for our COCO evaluation: the second half of the peer's side of
``benchmarks/bench_peer.py``. Runs with the peer environment's Python (it imports ultralytics, not spaghettinet).

For the trained PyTorch weights, and for the int8 ``.tflite`` that Ultralytics' own export makes of them
(``format="litert", quantize=8``, calibrated on the train split) when that export works here, it predicts every image
of ``--images`` the way Ultralytics validates: confidence ≥ ``--conf`` (0.001), at most ``--max-det`` (100) boxes,
Ultralytics' default NMS IoU, per-class NMS. The detections are written in COCO's result format, which our evaluator
scores in our own environment: ``bbox`` ``[x, y, width, height]`` in pixels of the original image, ``category_id`` the
1-based position of the class *name* in ``--names`` (our label map's order), ``score``; with each image's size as
Ultralytics read it, so the scorer can check that it matches the ground truth's.

A failed int8 export is recorded (its exception, one line) and the PyTorch detections are still written.

Usage: ``PEER_PYTHON evaluate_yolo.py --weights last.pt --images DIR --data data.yaml --imgsz 320
--names '["a","b"]' --out detections.json [--int8]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def predict_coco(
    model, images: list[Path], class_names: list[str], imgsz: int, conf: float, max_det: int, iou
):
    """Detections of ``model`` on ``images`` as COCO result dicts keyed by file name, and each image's size.

    Returns:
        ``(detections, sizes)``: ``detections`` a list of ``{"file_name", "category_id", "bbox", "score"}``,
        ``sizes`` ``{file_name: [height, width]}`` of the image as Ultralytics decoded it.
    """
    category_ids = {name: index + 1 for index, name in enumerate(class_names)}
    detections, sizes = [], {}
    results = model.predict(
        source=[str(p) for p in images],
        imgsz=imgsz,
        conf=conf,
        iou=iou,
        max_det=max_det,
        device="cpu",
        stream=True,
        verbose=False,
    )
    for path, result in zip(images, results, strict=True):
        sizes[path.name] = [int(v) for v in result.orig_shape]
        boxes = result.boxes
        for (x1, y1, x2, y2), score, cls in zip(
            boxes.xyxy.tolist(), boxes.conf.tolist(), boxes.cls.tolist(), strict=True
        ):
            name = result.names[int(cls)]
            detections.append(
                {
                    "file_name": path.name,
                    "category_id": category_ids[name],
                    "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
                    "score": round(float(score), 6),
                }
            )
    return detections, sizes


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="the trained .pt")
    parser.add_argument("--images", type=Path, required=True, help="folder of test images")
    parser.add_argument("--data", type=Path, required=True, help="the YOLO data.yaml (int8 calibration)")
    parser.add_argument("--names", required=True, help="JSON list of class names, label-map order")
    parser.add_argument("--imgsz", type=int, required=True)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--max-det", type=int, default=100)
    parser.add_argument("--iou", type=float, default=None, help="NMS IoU (default: Ultralytics' default)")
    parser.add_argument("--int8", action="store_true", help="also export and evaluate the int8 .tflite")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    import torch
    import ultralytics.data.utils
    import ultralytics.utils.torch_utils
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg

    ultralytics.utils.torch_utils.NUM_THREADS = args.threads
    torch.set_num_threads(args.threads)
    ultralytics.data.utils.check_font = lambda *a, **k: None  # as in train_yolo.py: no font download

    iou = args.iou if args.iou is not None else float(get_cfg().iou)
    class_names = json.loads(args.names)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    report: dict = {
        "settings": {
            "conf": args.conf,
            "max_det": args.max_det,
            "iou": iou,
            "imgsz": args.imgsz,
            "agnostic": False,
        },
        "images": len(images),
        "models": {},
    }

    started = time.time()
    detections, sizes = predict_coco(
        YOLO(str(args.weights)), images, class_names, args.imgsz, args.conf, args.max_det, iou
    )
    report["sizes"] = sizes
    report["models"]["pytorch"] = {
        "file": args.weights.name,
        "seconds": round(time.time() - started, 1),
        "detections": detections,
    }

    if args.int8:
        entry: dict = {"export": "format='litert', quantize=8, split='train' (calibration), batch=1"}
        started = time.time()
        try:
            exported = YOLO(str(args.weights)).export(
                format="litert",
                quantize=8,
                data=str(args.data),
                split="train",
                imgsz=args.imgsz,
                device="cpu",
            )
            entry["export_seconds"] = round(time.time() - started, 1)
            if not exported or not Path(exported).is_file():
                raise RuntimeError(f"the export returned {exported!r}, not a .tflite file")
            entry["file"] = Path(exported).name
            entry["size_bytes"] = Path(exported).stat().st_size
            started = time.time()
            entry["detections"], _ = predict_coco(
                YOLO(str(exported), task="detect"),
                images,
                class_names,
                args.imgsz,
                args.conf,
                args.max_det,
                iou,
            )
            entry["seconds"] = round(time.time() - started, 1)
        except Exception as exc:  # any failure of the optional export: recorded, the PyTorch figures stand
            entry["error"] = _one_line(exc)
            entry["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
            entry.setdefault("export_seconds", round(time.time() - started, 1))
        report["models"]["int8_tflite"] = entry

    args.out.write_text(json.dumps(report) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
