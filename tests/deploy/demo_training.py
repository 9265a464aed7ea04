"""What the export tests share (imported by them, not a test module): a short real training run on demo photos."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path


def train_on_demo_photos(
    root: Path,
    images: int,
    seed: int,
    steps: int,
    input_size: int,
    quantize: bool,
    moving_average: bool = False,
) -> tuple:
    """Demo photos → split → label map → TFRecords → config → ``train`` for ``steps`` steps, all under ``root``.

    Args:
        root: an empty folder.
        images: demo photos to make.
        seed: demo seed.
        steps: training steps (batch 4).
        input_size: model input size.
        quantize: with a ``graph_rewriter`` quantization block, QAT from the first step on (so that the short run
            trains the fake-quant ranges; the generated config would start it for the last 15 % only).
        moving_average: keep weight averages and export them (the generated config's default).

    Returns:
        ``(config, label_map)``; the checkpoints are in ``root / "model"``.
    """
    from spaghettinet.data.demo import make_demo
    from spaghettinet.data.labelmap import labelmap
    from spaghettinet.data.split import split
    from spaghettinet.data.tfrecord import tfrecord
    from spaghettinet.pipeline_config import read_config, write_config
    from spaghettinet.pipeline_config.generate import config
    from spaghettinet.training.loop import train

    make_demo(root / "photos", images=images, seed=seed)
    split(root / "photos", root / "split", seed=0)
    label_map = labelmap(root / "split", root / "label_map.pbtxt")
    for name in ("train", "test"):
        tfrecord(root / f"{name}.record", root / "label_map.pbtxt", split_dir=root / "split" / name)
    cfg = config(
        "s",
        root / "label_map.pbtxt",
        root / "train.record",
        root / "test.record",
        root / "pipeline.config",
        steps=steps,
        batch_size=4,
        input_size=input_size,
        quantize=quantize,
    )
    # The rate the size rules pick for so few images barely moves the scores off the prior in so few steps,
    # leaving ties that make detection comparisons arbitrary; momentum SGD at this rate separates them. Weight
    # averages over a dozen steps would lag the weights into the same ties, so they are the caller's choice.
    faster = replace(
        cfg.train,
        optimizer="momentum",
        learning_rate_base=0.05,
        warmup_learning_rate=0.01,
        use_moving_average=moving_average,
    )
    cfg = replace(cfg, train=faster, eval=replace(cfg.eval, use_moving_averages=moving_average))
    if quantize:
        cfg = replace(cfg, quantization=replace(cfg.quantization, delay=1))
    cfg = read_config(write_config(cfg, cfg.path))
    train(cfg, root / "model", steps=steps, evaluate_at_end=False, show_progress=False)
    return cfg, label_map
