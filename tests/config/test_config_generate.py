"""`spaghettinet config`: a complete pipeline.config sized for the data set, and its CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from spaghettinet.cli import main
from spaghettinet.data.tfrecord import count_records
from spaghettinet.errors import DataError, UsageError
from spaghettinet.pipeline_config import read_config
from spaghettinet.pipeline_config.generate import config, size_training
from spaghettinet.tf_runtime import import_tensorflow

LABEL_MAP = 'item { id: 1 name: "arduino" }\nitem { id: 2 name: "esp8266" }\nitem { id: 3 name: "pico" }\n'


def _write_framed_records(path: Path, payloads: list[bytes]) -> Path:
    """Real TFRecord files (length, CRC, data, CRC), as the config stage counts them with their checksums."""
    tf = import_tensorflow()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for payload in payloads:
            writer.write(payload)
    return path


@pytest.fixture
def dataset(tmp_path):
    data = tmp_path / "training"
    data.mkdir()
    (data / "label_map.pbtxt").write_text(LABEL_MAP)
    _write_framed_records(data / "train.record-00000-of-00002", [b"x" * 10] * 150)
    _write_framed_records(data / "train.record-00001-of-00002", [b"y" * 3] * 50)
    _write_framed_records(data / "test.record", [b"z"] * 40)
    return data


def test_count_records_counts_and_detects_truncation(tmp_path):
    path = _write_framed_records(tmp_path / "a.record", [b"", b"abc", b"0123456789"])
    assert count_records(path) == 3
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated TFRecord file"):
        count_records(path)


def test_plan_sizes_the_schedule_to_the_data_and_starts_qat_late():
    plan = size_training(400, batch_size=8)
    assert plan.num_steps == 2500  # 50 epochs of 400 images at batch 8
    assert plan.optimizer == "adam" and plan.learning_rate_base == pytest.approx(2e-3)
    assert plan.warmup_learning_rate == pytest.approx(2e-4)
    assert plan.warmup_steps == 125
    assert plan.quantization_delay == 2125  # QAT for the last 15 % only: it fine-tunes a float model
    assert plan.use_moving_average
    # bfloat16 convolutions before QAT where the machine training has them (model/precision.py decides there).
    assert plan.use_bfloat16 and any(reason.startswith("use_bfloat16:") for reason in plan.reasons)
    assert size_training(400, batch_size=32).learning_rate_base == pytest.approx(4e-3)  # sqrt(32 / 8) x 2e-3
    small = size_training(20)
    assert (small.batch_size, small.num_steps) == (8, 1000)
    assert size_training(20, gpu=True).batch_size == 16
    assert size_training(5).batch_size == 5
    fixed = size_training(100, steps=300, batch_size=2)
    assert (fixed.num_steps, fixed.batch_size, fixed.quantization_delay) == (300, 2, 255)


def test_config_writes_a_complete_config_for_the_data(dataset, monkeypatch):
    monkeypatch.chdir(dataset.parent)
    cfg = config(
        "l",
        "training/label_map.pbtxt",
        "training/train.record",
        "training/test.record*",
        "training/pipeline.config",
        batch_size=16,
        input_size=384,
    )
    again = read_config(dataset / "pipeline.config")
    assert again.warnings == []
    assert (again.model.num_classes, again.model.variant, again.model.input_size) == (3, "l", (384, 384))
    assert again.train.batch_size == 16 and again.train.num_steps == 1000  # 50 epochs = 625 < 1000
    assert again.train.total_steps == again.train.num_steps
    assert again.train.use_bfloat16 and "use_bfloat16: true" in (dataset / "pipeline.config").read_text()
    assert again.quantization is not None and again.quantization.delay == 850
    assert (
        again.train.optimizer == "adam" and again.train.use_moving_average and again.eval.use_moving_averages
    )
    names = [option.proto_name for option in again.train.data_augmentation_options]
    assert names == ["random_horizontal_flip", "random_self_concat_image", "ssd_random_crop"]
    # Every choice is explained in a comment block the reader skips.
    text = (dataset / "pipeline.config").read_text()
    assert "# - quantization-aware training from step 850, the last 15 % of the steps" in text.replace(
        "\n#   ", " "
    )
    assert "# - optimizer Adam" in text
    # Paths inside the config folder are written relative to it, so the folder can move.
    assert again.train_input.input_paths == ["train.record"]
    assert again.eval_input.input_paths == ["test.record*"]
    assert again.train_input.label_map_path == "label_map.pbtxt"
    assert again.resolve_path(again.train_input.label_map_path) == (dataset / "label_map.pbtxt").resolve()
    assert cfg.model == again.model and cfg.train == again.train


def test_config_without_quantization_and_with_fine_tune_checkpoint(dataset, tmp_path):
    ckpt = tmp_path / "zoo" / "model.ckpt-400000"
    ckpt.parent.mkdir()
    Path(f"{ckpt}.index").write_bytes(b"")
    out = tmp_path / "elsewhere" / "pipeline.config"
    config(
        "s",
        dataset / "label_map.pbtxt",
        dataset / "train.record",
        dataset / "test.record",
        out,
        steps=50,
        batch_size=4,
        quantize=False,
        fine_tune_checkpoint=ckpt,
    )
    cfg = read_config(out)
    assert cfg.quantization is None
    assert cfg.train.fine_tune_checkpoint == str(ckpt.resolve())
    assert cfg.train.num_steps == 50


def test_config_refuses_bad_requests(dataset, tmp_path):
    args = (dataset / "label_map.pbtxt", dataset / "train.record", dataset / "test.record")
    out = tmp_path / "p.config"
    with pytest.raises(UsageError, match="--variant"):
        config("xl", *args, out, batch_size=2)
    with pytest.raises(UsageError, match="--input-size"):
        config("s", *args, out, batch_size=2, input_size=16)
    with pytest.raises(DataError, match="no TFRecord file matches"):
        config("s", args[0], tmp_path / "missing.record", args[2], out, batch_size=2)
    with pytest.raises(DataError, match="fine-tune checkpoint not found"):
        config("s", *args, out, batch_size=2, fine_tune_checkpoint=tmp_path / "nope")
    assert not out.exists()


def test_cli_config_prints_its_choices(dataset, capsys, monkeypatch):
    monkeypatch.setattr("spaghettinet.cli.config._print_anchor_coverage", lambda cfg: None)
    out = dataset / "pipeline.config"
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "config",
                "--variant",
                "m",
                "--label-map",
                str(dataset / "label_map.pbtxt"),
                "--train",
                str(dataset / "train.record"),
                "--test",
                str(dataset / "test.record"),
                "--batch-size",
                "8",
                "--out",
                str(out),
            ]
        )
    assert exit_info.value.code in (0, None)
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps at 80 columns outside a terminal
    assert "200 training / 40 test images" in printed
    assert "steps 1250: 50 epochs of 200 images" in printed
    assert "quantization-aware training from step 1062" in printed
    assert read_config(out).model.num_classes == 3


def test_cli_config_bad_label_map_is_one_line_exit_1(dataset, capsys):
    (dataset / "label_map.pbtxt").write_text("item { id: 1 name: }")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "config",
                "--variant",
                "s",
                "--label-map",
                str(dataset / "label_map.pbtxt"),
                "--train",
                str(dataset / "train.record"),
                "--test",
                str(dataset / "test.record"),
                "--batch-size",
                "8",
                "--out",
                str(dataset / "p.config"),
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.replace("\n", "")  # rich wraps long paths at the terminal width
    assert "label_map.pbtxt: line 1" in err and "Traceback" not in err


def test_notes_are_comments_that_never_change_the_settings(tmp_path):
    from spaghettinet.pipeline_config import PipelineConfig, write_config

    path = tmp_path / "pipeline.config"
    note = "a long reason " * 20 + "model { ssd { num_classes: 7 } }"
    write_config(PipelineConfig(), path, notes=["why:", note])
    text = path.read_text()
    assert all(len(line) <= 110 for line in text.splitlines()[:10])
    assert read_config(path).model.num_classes == PipelineConfig().model.num_classes
