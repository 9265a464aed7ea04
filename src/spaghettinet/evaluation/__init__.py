"""Evaluation: COCO metrics, latency benchmark, visualization, reports."""
