"""The verdict's rules: each limit is found from made-up figures, says its numbers and what to do, and a healthy run
gets no finding."""

from __future__ import annotations

import numpy as np

from spaghettinet.evaluation.diagnosis import (
    ClassFacts,
    RunFacts,
    diagnose,
    falling_share,
    format_duration,
    judgement,
)

HEALTHY = RunFacts(
    classes=(
        ClassFacts("cat", train_objects=400, test_objects=100, ap50=0.92, ap=0.6, anchor_coverage=0.98),
        ClassFacts("dog", train_objects=350, test_objects=90, ap50=0.88, ap=0.55, anchor_coverage=0.95),
    ),
    ap50=0.9,
    ap=0.58,
    test_images=120,
    test_objects=190,
    train_images=2000,
    float_ap=0.585,
    int8_ap=0.58,
    quantization="qat",
    input_size=320,
    loss_steps=tuple(float(s) for s in range(100)),
    loss_values=tuple(1.0 + 0.001 * np.sin(s) for s in range(100)),
    trained_steps=1000,
    from_scratch=False,
)


def _with(**changes) -> RunFacts:
    import dataclasses

    return dataclasses.replace(HEALTHY, **changes)


def _kinds(facts: RunFacts) -> list[str]:
    return [finding.kind for finding in diagnose(facts)]


def test_a_healthy_run_has_no_finding_and_a_good_verdict():
    assert diagnose(HEALTHY) == []
    assert judgement(HEALTHY).startswith("Good")


def test_a_class_with_few_training_objects_asks_for_photos_of_it():
    classes = (HEALTHY.classes[0], ClassFacts("dog", train_objects=12, test_objects=30, ap50=0.7))
    (finding,) = diagnose(_with(classes=classes))
    assert finding.kind == "few_objects" and finding.classes == ("dog",)
    assert "dog (12)" in finding.problem
    assert "Add photos of dog" in finding.action and "at least 80" in finding.action  # a fifth of cat's 400


def test_small_objects_suggest_the_input_size_that_covers_them_or_cropping():
    classes = (HEALTHY.classes[0], ClassFacts("ant", 400, 100, ap50=0.85, anchor_coverage=0.4))
    (finding,) = diagnose(_with(classes=classes, suggested_input_size=512))
    assert finding.kind == "small_objects" and "ant (40%)" in finding.problem
    assert finding.action.startswith("--input-size 512")
    (finding,) = diagnose(_with(classes=classes, suggested_input_size=None))
    assert "crop or tile" in finding.action


def test_a_low_class_names_the_class_it_is_taken_for():
    classes = (
        HEALTHY.classes[0],
        ClassFacts("dog", 350, 90, ap50=0.3, anchor_coverage=0.95, confused_with=("cat", 21)),
    )
    (finding,) = diagnose(_with(classes=classes))
    assert finding.kind == "low_class_ap" and finding.classes == ("dog",)
    assert "AP50 0.30" in finding.problem
    assert "dog and cat can be told apart" in finding.action and "21" in finding.action


def test_a_class_near_the_model_average_is_not_singled_out():
    weak = _with(
        ap50=0.45, classes=(ClassFacts("cat", 400, 100, ap50=0.4), ClassFacts("dog", 350, 90, ap50=0.5))
    )
    assert "low_class_ap" not in _kinds(weak)
    assert "low_ap" in _kinds(weak)


def test_a_loss_still_falling_at_the_end_asks_to_train_longer():
    falling = tuple(2.0 - s / 100 for s in range(100))
    (finding,) = diagnose(_with(loss_values=falling, time_budget_s=1200))
    assert finding.kind == "still_learning"
    assert "--time-budget 40m" in finding.action and "20m" in finding.action
    (finding,) = diagnose(_with(loss_values=falling, time_budget_s=None, trained_steps=500))
    assert "--steps 1000" in finding.action


def test_falling_share_compares_the_last_two_tenths_and_ignores_nan():
    steps = list(range(100))
    values = [2.0] * 80 + [1.5] * 10 + [1.2] * 10
    values[10] = float("nan")  # a diverged log line early on
    assert abs(falling_share(steps, values) - 0.2) < 1e-9
    assert falling_share([1, 2, 3], [3.0, 2.0, 1.0]) is None  # too few points to tell


def test_training_from_scratch_on_a_small_dataset_suggests_pretrained_weights():
    kinds = _kinds(_with(from_scratch=True, train_images=300, ap50=0.3))
    assert kinds[0] == "from_scratch"
    finding = diagnose(_with(from_scratch=True, train_images=300, ap50=0.3))[0]
    assert "--from-scratch" in finding.action and "--fine-tune-from" in finding.action
    assert "low_ap" not in kinds  # the start explains the low AP


def test_an_int8_loss_beyond_one_ap_point_is_found_with_its_fix():
    (finding,) = diagnose(_with(float_ap=0.60, int8_ap=0.55, quantization="ptq"))
    assert finding.kind == "quantization_loss" and "5.0 AP points" in finding.problem
    assert "--quantize qat" in finding.action
    (finding,) = diagnose(_with(float_ap=0.60, int8_ap=0.55, quantization="qat"))
    assert "--time-budget" in finding.action
    assert diagnose(_with(float_ap=0.60, int8_ap=0.595)) == []  # half a point is noise


def test_few_test_images_give_a_margin_and_name_thin_classes():
    classes = (HEALTHY.classes[0], ClassFacts("dog", 350, 3, ap50=0.9, anchor_coverage=0.95))
    (finding,) = diagnose(_with(test_images=10, test_objects=25, classes=classes))
    assert finding.kind == "few_test_images"
    assert "10 test images (25 objects)" in finding.problem and "±0.20" in finding.problem
    assert "dog (3)" in finding.problem


def test_findings_come_most_limiting_first():
    facts = _with(
        classes=(
            ClassFacts("cat", 400, 100, ap50=0.9, anchor_coverage=0.5),
            ClassFacts("dog", 10, 5, ap50=0.9),
        ),
        suggested_input_size=448,
        float_ap=0.6,
        int8_ap=0.5,
        test_images=20,
        test_objects=105,
    )
    assert _kinds(facts) == ["few_objects", "small_objects", "quantization_loss", "few_test_images"]


def test_missing_figures_skip_their_rules():
    assert diagnose(RunFacts()) == []
    assert judgement(RunFacts()).startswith("No accuracy figures")


def test_format_duration_writes_what_time_budget_reads():
    assert [format_duration(s) for s in (59, 600, 3600, 5400)] == ["1m", "10m", "1h", "1h30m"]
