"""Dataset stage: VOC folders, validation, split, CSV, label maps, TFRecords, demo data."""
