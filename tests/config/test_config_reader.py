"""Reading pipeline.config files: the zoo's SpaghettiNet config, unused fields, bad values, paths, round trips."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spaghettinet.errors import DataError
from spaghettinet.pipeline_config import (
    ModelSettings,
    PipelineConfig,
    QuantizationSettings,
    TrainSettings,
    describe_warnings,
    format_config,
    parse_config_text,
    read_config,
    write_config,
)

ZOO_CONFIG = Path(__file__).with_name("zoo_spaghettinet_edgetpu_320x320.config")

MINIMAL = """
model { ssd {
  num_classes: 3
  feature_extractor { type: 'ssd_spaghettinet' spaghettinet_arch_name: 'spaghettinet_edgetpu_s' }
  image_resizer { fixed_shape_resizer { height: 256 width: 256 } }
  %s
} }
%s
"""


def test_zoo_config_reads_into_the_reference_settings():
    cfg = read_config(ZOO_CONFIG)
    # Spec §3: everything but the class count and the variant is the settings' defaults.
    assert cfg.model == ModelSettings(num_classes=90, variant="m")
    assert cfg.model.arch_name == "spaghettinet_edgetpu_m"
    assert cfg.train == TrainSettings()
    assert cfg.train.learning_rate_base == 0.8 and cfg.train.warmup_steps == 2000
    assert cfg.model.score_threshold == 1e-8
    assert cfg.quantization == QuantizationSettings(delay=40000, weight_bits=8, activation_bits=8)
    assert cfg.train_input.input_paths == ["PATH_TO_BE_CONFIGURED/train2017-?????-of-00256.tfrecord"]
    assert (cfg.eval_input.shuffle, cfg.eval_input.num_epochs) == (False, 1)
    assert cfg.eval.metrics_set == "coco_detection_metrics"
    assert cfg.path == ZOO_CONFIG.resolve()


def test_zoo_config_names_only_its_tf1_distribution_fields_as_unused():
    cfg = read_config(ZOO_CONFIG)
    assert [w.split(" ")[0] for w in cfg.warnings] == [
        "train_config.sync_replicas",
        "train_config.startup_delay_steps",
        "train_config.replicas_to_aggregate",
    ]
    sentence = describe_warnings(cfg)
    assert sentence is not None and "(line 146)" in sentence and str(ZOO_CONFIG.resolve()) in sentence


def test_unknown_fields_and_unimplemented_values_are_warnings_not_errors():
    text = MINIMAL % (
        "post_processing { score_converter: SIGMOID logit_scale: 2.0 }  future_option { x: 1 }",
        "train_config { batch_size: 4 data_augmentation_options { random_adjust_brightness { } } }",
    )
    cfg = parse_config_text(text, source="p.config")
    joined = "\n".join(cfg.warnings)
    assert "model.ssd.future_option (line 6)" in joined
    assert "train_config.data_augmentation_options.random_adjust_brightness" in joined
    assert "model.ssd.post_processing.logit_scale = 2.0" in joined
    # Listing augmentations switches off the ones not listed (left/right classes can turn off the flip).
    assert cfg.train.random_horizontal_flip is False and cfg.train.ssd_random_crop is False
    assert cfg.train.batch_size == 4


@pytest.mark.parametrize(
    ("extra_model", "extra_top", "fragment"),
    [
        ("num_classes: 0", "", "p.config:6:16: model.ssd.num_classes must be at least 1, got 0"),
        (
            "matcher { argmax_matcher { matched_threshold: 1.5 } }",
            "",
            "p.config:6:49: model.ssd.matcher.argmax_matcher.matched_threshold must be in (0, 1]",
        ),
        (
            "post_processing { batch_non_max_suppression { iou_threshold: 0 } score_converter: SIGMOID }",
            "",
            "iou_threshold must be in (0, 1]",
        ),
        ("post_processing { score_converter: SOFTMAX }", "", "score_converter must be SIGMOID"),
        (
            "",
            "graph_rewriter { quantization { delay: 10 weight_bits: 4 } }",
            "p.config:8:56: graph_rewriter.quantization.weight_bits must be 8",
        ),
        ("", "graph_rewriter { quantization { activation_bits: 16 } }", "activation_bits must be 8"),
        (
            "anchor_generator { multiscale_anchor_generator { } }",
            "",
            "multiscale_anchor_generator is not supported",
        ),
        ("loss { classification_loss { weighted_softmax { } } }", "", "weighted_softmax is not supported"),
        (
            "",
            "train_config { optimizer { adam_optimizer { } } }",
            "train_config.optimizer.adam_optimizer is not supported",
        ),
        ("", "train_config { batch_size: 2.5 }", "train_config.batch_size expects a whole number, got '2.5'"),
        ("", "train_config { batch_size: 0 }", "train_config.batch_size must be at least 1"),
        ("", "eval_input_reader { shuffle: 'yes' }", "eval_input_reader.shuffle expects true or false"),
    ],
)
def test_invalid_values_name_the_field_and_line(extra_model, extra_top, fragment):
    with pytest.raises(DataError) as caught:
        parse_config_text(MINIMAL % (extra_model, extra_top), source="p.config")
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        (
            "feature_extractor { type: 'ssd_mobilenet_v2' }",
            "p.config:1:50: model.ssd.feature_extractor.type must be 'ssd_spaghettinet'",
        ),
        (
            "feature_extractor { type: 'ssd_spaghettinet' spaghettinet_arch_name: 'spaghettinet_edgetpu_xl' }",
            "spaghettinet_arch_name must be one of 'spaghettinet_edgetpu_s'",
        ),
        (
            "feature_extractor { type: 'ssd_spaghettinet' spaghettinet_arch_name: 'spaghettinet_edgetpu_s' } "
            "image_resizer { keep_aspect_ratio_resizer { } }",
            "keep_aspect_ratio_resizer is not supported here; use fixed_shape_resizer",
        ),
        ("", "model.ssd.feature_extractor is missing"),
    ],
)
def test_model_that_is_not_spaghettinet_is_refused(block, fragment):
    text = "model { ssd { num_classes: 2 " + block + " } }"
    with pytest.raises(DataError) as caught:
        parse_config_text(text, source="p.config")
    assert fragment in str(caught.value)


def test_read_config_reports_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="config file not found"):
        read_config(tmp_path / "nope.config")
    binary = tmp_path / "pipeline.config"
    binary.write_bytes(b"\xff\xfe\x00model")
    with pytest.raises(DataError, match="not a text file"):
        read_config(binary)


def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    text = MINIMAL % (
        "",
        "train_input_reader { tf_record_input_reader { input_path: 'data/train-*.record' } }",
    )
    (folder).mkdir()
    (folder / "pipeline.config").write_text(text)
    monkeypatch.chdir(tmp_path)
    cfg = read_config("run/pipeline.config")
    assert cfg.resolve_path(cfg.train_input.input_paths[0]) == folder.resolve() / "data/train-*.record"
    assert cfg.resolve_path("/abs/label_map.pbtxt") == Path("/abs/label_map.pbtxt")


def test_written_zoo_config_reads_back_equal(tmp_path):
    cfg = read_config(ZOO_CONFIG)
    written = write_config(cfg, tmp_path / "out" / "pipeline.config")
    again = read_config(written)
    assert again.warnings == []
    assert dataclasses.replace(again, path=None) == dataclasses.replace(cfg, path=None, warnings=[])


def test_write_refuses_an_invalid_config_and_leaves_nothing(tmp_path):
    target = tmp_path / "pipeline.config"
    with pytest.raises(DataError, match="num_classes must be at least 1"):
        write_config(PipelineConfig(model=ModelSettings(num_classes=0)), target)
    assert list(tmp_path.iterdir()) == []


_fractions = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    num_classes=st.integers(1, 500),
    variant=st.sampled_from(["s", "m", "l"]),
    height=st.integers(32, 1024),
    width=st.integers(32, 1024),
    threshold=_fractions,
    score=st.floats(0.0, 1.0),
    batch=st.integers(1, 1024),
    steps=st.integers(1, 10**7),
    flip=st.booleans(),
    crop_coef=st.floats(0.0, 1.0),
    checkpoint=st.one_of(st.none(), st.text(min_size=1, max_size=30)),
    delay=st.one_of(st.none(), st.integers(0, 10**6)),
    interval=st.one_of(st.none(), st.integers(1, 10**5)),
    paths=st.lists(st.text(max_size=20), max_size=3),
)
def test_any_valid_settings_survive_write_then_read(
    num_classes,
    variant,
    height,
    width,
    threshold,
    score,
    batch,
    steps,
    flip,
    crop_coef,
    checkpoint,
    delay,
    interval,
    paths,
):
    cfg = PipelineConfig(
        model=ModelSettings(
            num_classes=num_classes,
            variant=variant,
            input_size=(height, width),
            matched_threshold=threshold,
            unmatched_threshold=threshold,
            score_threshold=score,
        ),
        train=TrainSettings(
            batch_size=batch,
            num_steps=steps,
            total_steps=steps,
            warmup_steps=steps // 20,
            random_horizontal_flip=flip,
            random_crop_coef=crop_coef,
            fine_tune_checkpoint=checkpoint,
        ),
        quantization=None if delay is None else QuantizationSettings(delay=delay),
    )
    cfg.train_input.input_paths = paths
    cfg.eval.eval_interval_steps = interval
    assert parse_config_text(format_config(cfg)) == cfg


def test_config_errors_reach_the_user_as_one_line_through_a_command_that_reads_configs(tmp_path, capsys):
    from spaghettinet.cli import main

    bad = tmp_path / "pipeline.config"
    bad.write_text(MINIMAL % ("", "graph_rewriter { quantization { delay: 10 weight_bits: 4 } }"))
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "export",
                "--config",
                str(bad),
                "--checkpoint",
                str(tmp_path / "ckpt"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.replace("\n", "")  # rich wraps long lines at the terminal width
    assert f"{bad}:8:56: graph_rewriter.quantization.weight_bits must be 8" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
