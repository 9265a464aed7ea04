"""Reading pipeline.config files: the zoo's SpaghettiNet config, unused fields, bad values, paths, round trips,
every data_augmentation_options step, and the optimizer's Adam and weight-averaging fields."""

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
from spaghettinet.pipeline_config.settings import (
    AUGMENTATION_OPTIONS,
    RandomAdjustBrightness,
    RandomAdjustContrast,
    RandomAdjustHue,
    RandomAdjustSaturation,
    RandomBlackPatches,
    RandomCropImage,
    RandomCropPadImage,
    RandomDistortColor,
    RandomHorizontalFlip,
    RandomImageScale,
    RandomJpegQuality,
    RandomPadImage,
    RandomRgbToGray,
    RandomRotation90,
    RandomScaleCropAndPadToSquare,
    RandomSelfConcatImage,
    RandomVerticalFlip,
    SsdRandomCrop,
    SsdRandomCropOperation,
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
        "train_config { batch_size: 4 data_augmentation_options {\n"
        "  random_horizontal_flip { keypoint_flip_permutation: 1 } } }",
    )
    cfg = parse_config_text(text, source="p.config")
    joined = "\n".join(cfg.warnings)
    assert "model.ssd.future_option (line 6)" in joined
    assert (
        "train_config.data_augmentation_options.random_horizontal_flip.keypoint_flip_permutation (line 9)"
        in joined
    )
    assert "model.ssd.post_processing.logit_scale = 2.0" in joined
    # Listing augmentations switches off the ones not listed (left/right classes can turn off the flip).
    assert cfg.train.data_augmentation_options == (RandomHorizontalFlip(),)
    assert cfg.train.random_horizontal_flip is True and cfg.train.ssd_random_crop is False
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
            "train_config { optimizer { rms_prop_optimizer { } } }",
            "train_config.optimizer.rms_prop_optimizer is not supported here; use momentum_optimizer or "
            "adam_optimizer",
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
_unit = st.floats(0.0, 1.0)


def _ordered_pair(values):
    return st.tuples(values, values).map(sorted)


def _with_range(option_type, low: str, high: str, values, **others):
    """Strategy for ``option_type`` whose ``low`` <= ``high`` fields come from ``values``."""
    return st.builds(
        lambda pair, rest: option_type(**{low: pair[0], high: pair[1]}, **rest),
        _ordered_pair(values),
        st.fixed_dictionaries(others),
    )


def _crop_fields(option_type, **others):
    return st.builds(
        lambda aspect, area, rest: option_type(
            min_aspect_ratio=aspect[0], max_aspect_ratio=aspect[1], min_area=area[0], max_area=area[1], **rest
        ),
        _ordered_pair(st.floats(0.1, 10.0)),
        _ordered_pair(st.floats(0.01, 1.0)),
        st.fixed_dictionaries(
            {
                "min_object_covered": _unit,
                "overlap_thresh": _unit,
                "clip_boxes": st.booleans(),
                "random_coef": _unit,
                **others,
            }
        ),
    )


_pad_colors = st.one_of(st.just(()), st.tuples(*[st.floats(0.0, 255.0)] * 3))
_ratios = st.one_of(st.just(()), st.tuples(st.floats(0.1, 4.0), st.floats(0.1, 4.0)))
_sizes = st.one_of(st.just((None, None)), st.tuples(st.integers(1, 4000), st.integers(1, 4000)))

#: A valid instance strategy for every implemented augmentation step.
AUGMENTATION_STRATEGIES = {
    RandomHorizontalFlip: st.builds(RandomHorizontalFlip, probability=_unit),
    RandomVerticalFlip: st.builds(RandomVerticalFlip, probability=_unit),
    RandomRotation90: st.builds(RandomRotation90, probability=_unit),
    RandomAdjustBrightness: st.builds(RandomAdjustBrightness, max_delta=_unit),
    RandomAdjustContrast: _with_range(RandomAdjustContrast, "min_delta", "max_delta", st.floats(0.0, 5.0)),
    RandomAdjustHue: st.builds(RandomAdjustHue, max_delta=st.floats(0.0, 0.5)),
    RandomAdjustSaturation: _with_range(
        RandomAdjustSaturation, "min_delta", "max_delta", st.floats(0.0, 5.0)
    ),
    RandomDistortColor: st.builds(RandomDistortColor, color_ordering=st.sampled_from([0, 1])),
    RandomRgbToGray: st.builds(RandomRgbToGray, probability=_unit),
    RandomJpegQuality: _with_range(
        RandomJpegQuality, "min_jpeg_quality", "max_jpeg_quality", st.integers(0, 100), random_coef=_unit
    ),
    RandomImageScale: _with_range(
        RandomImageScale, "min_scale_ratio", "max_scale_ratio", st.floats(0.01, 4.0)
    ),
    RandomScaleCropAndPadToSquare: _with_range(
        RandomScaleCropAndPadToSquare,
        "scale_min",
        "scale_max",
        st.floats(0.01, 4.0),
        output_size=st.integers(1, 2048),
    ),
    RandomCropImage: _crop_fields(RandomCropImage),
    RandomPadImage: st.builds(
        lambda small, large, color: RandomPadImage(*small, *large, pad_color=color),
        _sizes,
        _sizes,
        _pad_colors,
    ),
    RandomCropPadImage: _crop_fields(
        RandomCropPadImage,
        min_padded_size_ratio=_ratios,
        max_padded_size_ratio=_ratios,
        pad_color=_pad_colors,
    ),
    RandomBlackPatches: st.builds(
        RandomBlackPatches,
        max_black_patches=st.integers(0, 50),
        probability=_unit,
        size_to_image_ratio=st.floats(0.001, 1.0),
    ),
    RandomSelfConcatImage: st.builds(
        RandomSelfConcatImage, concat_vertical_probability=_unit, concat_horizontal_probability=_unit
    ),
    SsdRandomCrop: st.builds(
        SsdRandomCrop, operations=st.lists(_crop_fields(SsdRandomCropOperation), max_size=3).map(tuple)
    ),
}
_any_augmentation = st.lists(st.one_of(*AUGMENTATION_STRATEGIES.values()), max_size=6).map(tuple)


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
    augmentation=_any_augmentation,
    optimizer=st.sampled_from(["momentum", "adam"]),
    epsilon=st.floats(1e-10, 1.0),
    averaging=st.booleans(),
    decay=st.floats(0.5, 0.99999),
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
    augmentation,
    optimizer,
    epsilon,
    averaging,
    decay,
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
            data_augmentation_options=augmentation,
            optimizer=optimizer,
            # The epsilon is written only inside adam_optimizer.
            adam_epsilon=epsilon if optimizer == "adam" else 1e-8,
            use_moving_average=averaging,
            moving_average_decay=decay,
            fine_tune_checkpoint=checkpoint,
        ),
        quantization=None if delay is None else QuantizationSettings(delay=delay),
    )
    cfg.train_input.input_paths = paths
    cfg.eval.eval_interval_steps = interval
    cfg.eval.use_moving_averages = averaging
    assert parse_config_text(format_config(cfg)) == cfg


def _train_config(body: str) -> str:
    return MINIMAL % ("", "train_config {\n" + body + "\n}")


def test_every_augmentation_step_reads_with_the_proto_defaults_in_the_listed_order():
    names = list(AUGMENTATION_OPTIONS)[::-1]
    body = "\n".join(f"data_augmentation_options {{ {name} {{ }} }}" for name in names)
    cfg = parse_config_text(_train_config(body), source="p.config")
    assert cfg.warnings == []
    assert cfg.train.data_augmentation_options == tuple(AUGMENTATION_OPTIONS[name]() for name in names)
    # Spot checks of the defaults against preprocessor.proto.
    steps = {type(step): step for step in cfg.train.data_augmentation_options}
    assert steps[RandomCropImage] == RandomCropImage(1.0, 0.75, 1.33, 0.1, 1.0, 0.3, True, 0.0)
    assert steps[RandomScaleCropAndPadToSquare] == RandomScaleCropAndPadToSquare(512, 0.1, 2.0)
    assert steps[RandomSelfConcatImage] == RandomSelfConcatImage(0.1, 0.1)
    assert steps[RandomJpegQuality] == RandomJpegQuality(0.0, 0, 100)
    assert steps[RandomBlackPatches] == RandomBlackPatches(10, 0.5, 0.1)
    assert steps[RandomRgbToGray].probability == 0.1 and steps[RandomAdjustHue].max_delta == 0.02


def test_augmentation_fields_are_read_with_their_values():
    body = """
    data_augmentation_options { random_pad_image { min_image_height: 400 min_image_width: 500
                                                   pad_color: 0 pad_color: 128 pad_color: 255 } }
    data_augmentation_options { random_crop_pad_image { min_area: 0.3 random_coef: 0.25 clip_boxes: false
                                                        max_padded_size_ratio: 1.5 max_padded_size_ratio: 1.2 } }
    data_augmentation_options { ssd_random_crop {
        operations { min_object_covered: 0.5 min_aspect_ratio: 0.5 max_aspect_ratio: 2 min_area: 0.2 max_area: 1
                     overlap_thresh: 0.4 random_coef: 0.1 }
        operations { min_object_covered: 0 min_aspect_ratio: 1 max_aspect_ratio: 1 min_area: 0.5 max_area: 0.9
                     overlap_thresh: 0 clip_boxes: false } } }
    data_augmentation_options { random_distort_color { color_ordering: 1 } }
    """
    cfg = parse_config_text(_train_config(body), source="p.config")
    assert cfg.warnings == []
    pad, crop_pad, ssd, distort = cfg.train.data_augmentation_options
    assert pad == RandomPadImage(400, 500, None, None, (0.0, 128.0, 255.0))
    assert crop_pad == RandomCropPadImage(
        min_area=0.3, random_coef=0.25, clip_boxes=False, max_padded_size_ratio=(1.5, 1.2)
    )
    assert ssd.operations == (
        SsdRandomCropOperation(0.5, 0.5, 2.0, 0.2, 1.0, 0.4, True, 0.1),
        SsdRandomCropOperation(0.0, 1.0, 1.0, 0.5, 0.9, 0.0, False, 0.0),
    )
    assert distort == RandomDistortColor(color_ordering=1)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "data_augmentation_options { random_jitter_boxes { } }",
            "p.config:9:29: train_config.data_augmentation_options.random_jitter_boxes is a TF OD API step this "
            "package does not implement; implemented: random_horizontal_flip,",
        ),
        (
            "data_augmentation_options { random_horizontal_flipp { } }",
            "train_config.data_augmentation_options.random_horizontal_flipp is not a TF OD API preprocessing step",
        ),
        (
            "data_augmentation_options {\n  random_adjust_contrast { min_delta: 1.5 max_delta: 1.2 } }",
            "p.config:10:43: train_config.data_augmentation_options.random_adjust_contrast.max_delta must be at "
            "least min_delta (1.5), got 1.2",
        ),
        (
            "data_augmentation_options { random_rgb_to_gray { probability: 1.5 } }",
            "p.config:9:50: train_config.data_augmentation_options.random_rgb_to_gray.probability must be in [0, 1]",
        ),
        (
            "data_augmentation_options { random_adjust_hue { max_delta: 0.7 } }",
            "random_adjust_hue.max_delta must be in [0, 0.5], got 0.7",
        ),
        (
            "data_augmentation_options { random_distort_color { color_ordering: 2 } }",
            "random_distort_color.color_ordering must be 0 or 1, got 2",
        ),
        (
            "data_augmentation_options { random_pad_image { min_image_height: 10 } }",
            "random_pad_image.min_image_height and min_image_width must be set together",
        ),
        (
            "data_augmentation_options { random_pad_image { pad_color: 1 pad_color: 2 } }",
            "random_pad_image.pad_color must have 3 values",
        ),
        (
            "data_augmentation_options { random_crop_pad_image { min_padded_size_ratio: 1 } }",
            "random_crop_pad_image.min_padded_size_ratio must have 2 values",
        ),
        (
            "data_augmentation_options { random_jpeg_quality { max_jpeg_quality: 101 } }",
            "random_jpeg_quality.max_jpeg_quality must be at most 100",
        ),
        (
            "data_augmentation_options { random_scale_crop_and_pad_to_square { output_size: 0 } }",
            "random_scale_crop_and_pad_to_square.output_size must be at least 1",
        ),
        (
            "data_augmentation_options { ssd_random_crop { operations { min_object_covered: 0.5 } } }",
            "p.config:9:47: train_config.data_augmentation_options.ssd_random_crop.operations.min_aspect_ratio "
            "must be > 0.0, got 0.0",
        ),
        (
            "data_augmentation_options { random_crop_image { max_area: 1.2 } }",
            "random_crop_image.max_area must be in [0, 1], got 1.2",
        ),
        (
            "data_augmentation_options { random_horizontal_flip { } random_vertical_flip { } }",
            "holds both random_horizontal_flip and random_vertical_flip; give each step its own",
        ),
        ("data_augmentation_options { }", "data_augmentation_options is empty"),
        ("data_augmentation_options { random_rotation90: 1 }", "random_rotation90 must be a message block"),
        ("data_augmentation_options { random_black_patches { probability: 'x' } }", "expects a number"),
    ],
)
def test_augmentation_errors_name_the_step_the_field_and_the_line(body, fragment):
    with pytest.raises(DataError) as caught:
        parse_config_text(_train_config(body), source="p.config")
    assert fragment in str(caught.value)


def test_optimizer_weight_averaging_and_adam_fields():
    adam = """
    optimizer {
      adam_optimizer {
        learning_rate { cosine_decay_learning_rate { learning_rate_base: 0.001 total_steps: 500
                                                     warmup_learning_rate: 0.0001 warmup_steps: 20 } }
        epsilon: 1e-7
      }
      use_moving_average: true
      moving_average_decay: 0.999
    }
    """
    cfg = parse_config_text(
        _train_config(adam) + "eval_config { use_moving_averages: true }", source="p.config"
    )
    train = cfg.train
    assert (train.optimizer, train.adam_epsilon, train.learning_rate_base, train.total_steps) == (
        "adam",
        1e-7,
        0.001,
        500,
    )
    assert (train.warmup_learning_rate, train.warmup_steps) == (0.0001, 20)
    assert (train.use_moving_average, train.moving_average_decay) == (True, 0.999)
    assert cfg.eval.use_moving_averages is True and cfg.warnings == []
    assert parse_config_text(format_config(cfg)) == dataclasses.replace(cfg, path=None)
    # optimizer.proto: use_moving_average defaults to true inside an optimizer block, epsilon to 1e-8.
    defaults = parse_config_text(
        _train_config("optimizer { adam_optimizer { learning_rate { cosine_decay_learning_rate { } } } }")
    )
    assert defaults.train.use_moving_average is True and defaults.train.moving_average_decay == 0.9999
    assert defaults.train.adam_epsilon == 1e-8 and defaults.train.learning_rate_base == 0.002
    # Without an optimizer block (or with the zoo's explicit false), no averaging; eval's default is false.
    assert parse_config_text(MINIMAL % ("", "")).train.use_moving_average is False
    assert parse_config_text(MINIMAL % ("", "")).eval.use_moving_averages is False


@pytest.mark.parametrize(
    ("optimizer", "fragment"),
    [
        (
            "adam_optimizer { epsilon: 0 }",
            "p.config:9:30: train_config.optimizer.adam_optimizer.epsilon must be > 0",
        ),
        (
            "use_moving_average: true moving_average_decay: 1.0",
            "optimizer.moving_average_decay must be in (0, 1)",
        ),
        (
            "adam_optimizer { learning_rate { cosine_decay_learning_rate { learning_rate_base: 0.1 "
            "warmup_learning_rate: 0.5 } } }",
            "train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.warmup_learning_rate "
            "must be in [0, learning_rate_base = 0.1], got 0.5",
        ),
        (
            "momentum_optimizer { learning_rate { constant_learning_rate { } } }",
            "constant_learning_rate is not supported here; use cosine_decay_learning_rate",
        ),
    ],
)
def test_optimizer_errors_name_the_field_and_line(optimizer, fragment):
    with pytest.raises(DataError) as caught:
        parse_config_text(_train_config(f"optimizer {{ {optimizer} }}"), source="p.config")
    assert fragment in str(caught.value)


def test_writer_refuses_an_impossible_augmentation_step():
    cfg = PipelineConfig(train=TrainSettings(data_augmentation_options=(RandomRgbToGray(probability=2.0),)))
    with pytest.raises(DataError, match="random_rgb_to_gray.probability must be in"):
        format_config(cfg)
    cfg = PipelineConfig(train=TrainSettings(data_augmentation_options=("random_horizontal_flip",)))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="not an augmentation option"):
        format_config(cfg)


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


def test_use_bfloat16_reads_writes_back_and_defaults_to_false():
    # train.proto's use_bfloat16 (false by default), as the zoo's TPU configs set it.
    cfg = parse_config_text(_train_config("use_bfloat16: true"), source="p.config")
    assert cfg.train.use_bfloat16 is True and cfg.warnings == []
    text = format_config(cfg)
    assert "use_bfloat16: true" in text
    assert parse_config_text(text).train.use_bfloat16 is True
    assert parse_config_text(_train_config("")).train.use_bfloat16 is False
    assert "use_bfloat16" not in format_config(parse_config_text(_train_config("")))
    with pytest.raises(DataError, match="use_bfloat16"):
        parse_config_text(_train_config("use_bfloat16: 7"), source="p.config")
