"""Helpers of ``benchmarks/bench_peer.py``, which measures ``spaghettinet run`` beside Ultralytics YOLOv8n.

Two kinds of module live here, and they never import each other:

* run in this project's environment: :mod:`peer.environment` (creates the peer's own virtual environment outside
  the repository) and :mod:`peer.yolo_dataset` (our train/test split written in YOLO's layout);
* run with the peer environment's Python, as scripts: ``train_yolo.py`` (YOLOv8n from scratch for a wall-clock
  budget) and ``evaluate_yolo.py`` (its detections on the test images, from its PyTorch weights and its int8
  ``.tflite``). They import no ``spaghettinet`` code; the scoring happens back in our environment.
"""
