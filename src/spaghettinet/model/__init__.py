"""SpaghettiNet-EdgeTPU and its SSD head: architecture tables, blocks, anchors, box coder, TF1 checkpoints."""
