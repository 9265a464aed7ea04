"""Reading and writing TF Object Detection API pipeline.config files."""
