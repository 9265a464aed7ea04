"""Deployment: SavedModel and TFLite export, metadata, Edge TPU checks, prediction with .tflite files."""
