"""What limits a trained model, and what to do about it: the rules behind the report's first screen.

Pure functions over :class:`RunFacts` (numbers gathered from a run's files by :mod:`spaghettinet.evaluation.report`),
so each rule can be tested with made-up figures. :func:`diagnose` returns :class:`Finding` objects, most limiting
first, each with the numbers that triggered it and one action a user can take (a ``spaghettinet run`` option, or
which photos to add). :func:`judgement` words the headline.

The thresholds are rules of thumb, stated here so a reader of the report can look them up:

* :data:`MIN_TRAIN_OBJECTS` labelled objects per class, and at least :data:`MIN_CLASS_SHARE` of the largest class.
* A class's AP50 below :data:`LOW_AP50` and :data:`CLASS_AP50_MARGIN` below the model's is low.
* A class whose training boxes have an anchor at IoU ≥ 0.5 less than :data:`MIN_ANCHOR_COVERAGE` of the time is
  made of objects too small (or too thin) for the input size (``evaluation/coverage_report.py``'s rule).
* int8 more than :data:`MAX_QUANTIZATION_LOSS` AP below float loses accuracy to quantization.
* A loss still falling by more than :data:`STILL_FALLING` between the two last tenths of training means more
  training would help.
* Fewer than :data:`MIN_TEST_IMAGES` test images, or fewer than :data:`MIN_TEST_OBJECTS_PER_CLASS` objects of a
  class, make the figures uncertain; ``1/sqrt(objects)`` is a rough 95 % margin on a share measured on them.

Example:
    >>> facts = RunFacts(ap50=0.9, ap=0.6, test_images=200, test_objects=400)
    >>> judgement(facts)
    'Good: the model finds most objects at the right place (AP50 0.90).'
    >>> diagnose(facts)
    []
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_TRAIN_OBJECTS = 50
MIN_CLASS_SHARE = 0.2
LOW_AP50 = 0.5
CLASS_AP50_MARGIN = 0.1
MIN_ANCHOR_COVERAGE = 0.9
MAX_QUANTIZATION_LOSS = 0.01
STILL_FALLING = 0.05
MIN_TEST_IMAGES = 50
MIN_TEST_OBJECTS_PER_CLASS = 10
#: Below this many training images a start from random weights is the first thing to change.
SMALL_DATASET_IMAGES = 1000
#: Class names listed in one finding before "and N more".
MAX_NAMED_CLASSES = 5


@dataclass(frozen=True)
class ClassFacts:
    """What a run knows about one class; ``None`` where it was not measured.

    Attributes:
        name: the class name (untrusted text: the renderer escapes it).
        train_objects: labelled objects in the training split.
        test_objects: labelled objects in the test split.
        ap50: the shipped model's AP at IoU 0.5 on the test split.
        ap: the shipped model's AP @[.50:.95] on the test split.
        anchor_coverage: share of its training boxes some anchor overlaps at IoU ≥ 0.5 at the input size.
        confused_with: the other class its objects are most often detected as, and how many times.
    """

    name: str
    train_objects: int | None = None
    test_objects: int | None = None
    ap50: float | None = None
    ap: float | None = None
    anchor_coverage: float | None = None
    confused_with: tuple[str, int] | None = None


@dataclass(frozen=True)
class RunFacts:
    """The figures the rules look at; any may be missing (``None`` or empty), and the rules needing it are skipped.

    Attributes:
        classes: one entry per class.
        ap50 / ap: the shipped (int8) model's COCO AP50 and AP on the test split.
        test_images / test_objects: the size of the test split the figures were measured on.
        train_images: images in the training split.
        float_ap / int8_ap: the float and the int8 ``.tflite`` on the same test images (for the quantization loss).
        quantization: ``"qat"`` or ``"ptq"`` (how the int8 model was made).
        input_size: the model's input side in pixels.
        suggested_input_size: the smallest larger side that covers every class (None: no larger size helps).
        loss_steps / loss_values: the training loss curve.
        trained_steps: the steps training ran.
        time_budget_s: the ``--time-budget`` training was fitted to, if any.
        from_scratch: whether training started from random weights.
    """

    classes: tuple[ClassFacts, ...] = ()
    ap50: float | None = None
    ap: float | None = None
    test_images: int | None = None
    test_objects: int | None = None
    train_images: int | None = None
    float_ap: float | None = None
    int8_ap: float | None = None
    quantization: str | None = None
    input_size: int | None = None
    suggested_input_size: int | None = None
    loss_steps: tuple[float, ...] = ()
    loss_values: tuple[float, ...] = ()
    trained_steps: int | None = None
    time_budget_s: float | None = None
    from_scratch: bool | None = None


@dataclass(frozen=True)
class Finding:
    """One thing that limits the model.

    Attributes:
        kind: a stable name of the rule (``few_objects``, ``small_objects``, ``low_class_ap``, ``low_ap``,
            ``still_learning``, ``from_scratch``, ``quantization_loss``, ``few_test_images``).
        problem: what is wrong, with the figures (plain text; may contain class names).
        action: what to do (plain text).
        classes: the classes concerned, if any.
    """

    kind: str
    problem: str
    action: str
    classes: tuple[str, ...] = ()


def _names(names: Sequence[str]) -> str:
    shown = list(names[:MAX_NAMED_CLASSES])
    more = len(names) - len(shown)
    text = ", ".join(shown)
    return text + (f" and {more} more" if more > 0 else "")


def format_duration(seconds: float) -> str:
    """A ``--time-budget`` value for ``seconds``: whole minutes, or hours and minutes.

    Example:
        >>> format_duration(1200), format_duration(5400), format_duration(20)
        ('20m', '1h30m', '1m')
    """
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def few_objects(facts: RunFacts) -> Finding | None:
    """Classes with fewer than :data:`MIN_TRAIN_OBJECTS` training objects or under :data:`MIN_CLASS_SHARE` of the
    largest class.

    Example:
        >>> few_objects(RunFacts(classes=(ClassFacts("cat", train_objects=12), ClassFacts("dog", 300)))).classes
        ('cat',)
    """
    counted = [c for c in facts.classes if c.train_objects is not None]
    if not counted:
        return None
    largest = max(c.train_objects for c in counted)
    short = sorted(
        (
            c
            for c in counted
            if c.train_objects < MIN_TRAIN_OBJECTS or c.train_objects < MIN_CLASS_SHARE * largest
        ),
        key=lambda c: c.train_objects,
    )
    if not short:
        return None
    listed = _names([f"{c.name} ({c.train_objects})" for c in short])
    target = max(MIN_TRAIN_OBJECTS, math.ceil(MIN_CLASS_SHARE * largest))
    return Finding(
        "few_objects",
        f"Few training objects: {listed}; the largest class has {largest}.",
        f"Add photos of {_names([c.name for c in short])}, in the settings the model will see, with every object "
        f"labelled: at least {target} objects of each class.",
        tuple(c.name for c in short),
    )


def small_objects(facts: RunFacts) -> Finding | None:
    """Classes whose training boxes an anchor covers less than :data:`MIN_ANCHOR_COVERAGE` of the time.

    Example:
        >>> found = small_objects(RunFacts(classes=(ClassFacts("ant", anchor_coverage=0.4),), input_size=320,
        ...                                suggested_input_size=512))
        >>> found.action
        '--input-size 512 covers them better (at about 2.6× the latency of 320).'
    """
    poor = sorted(
        (
            c
            for c in facts.classes
            if c.anchor_coverage is not None and c.anchor_coverage < MIN_ANCHOR_COVERAGE
        ),
        key=lambda c: c.anchor_coverage,
    )
    if not poor:
        return None
    size = f" at {facts.input_size}×{facts.input_size}" if facts.input_size else ""
    listed = _names([f"{c.name} ({c.anchor_coverage:.0%})" for c in poor])
    problem = (
        f"Objects too small or too thin for the input size{size}: only {listed} of their boxes have an anchor"
    )
    problem += " at IoU 0.5, so the model hardly learns them."
    if facts.suggested_input_size:
        action = f"--input-size {facts.suggested_input_size} covers them better"
        if facts.input_size:
            cost = (facts.suggested_input_size / facts.input_size) ** 2
            action += f" (at about {cost:.1f}× the latency of {facts.input_size})"
        action += "."
    else:
        action = (
            "A larger --input-size does not help (the boxes are smaller than the smallest anchor, a tenth of the "
            "image): crop or tile the photos so the objects fill more of each image."
        )
    return Finding("small_objects", problem, action, tuple(c.name for c in poor))


def low_class_ap(facts: RunFacts) -> list[Finding]:
    """Classes with AP50 below :data:`LOW_AP50` and :data:`CLASS_AP50_MARGIN` below the model's, one finding each
    (the :data:`MAX_NAMED_CLASSES` worst; the rest in one more). Classes already short of training objects or of
    anchor coverage are left to those findings.

    Example:
        >>> facts = RunFacts(ap50=0.8, classes=(ClassFacts("cat", ap50=0.2, confused_with=("dog", 7)),))
        >>> low_class_ap(facts)[0].action
        'Add photos where cat and dog can be told apart (7 cat objects were detected as dog).'
    """
    explained = set()
    for finding in (few_objects(facts), small_objects(facts)):
        if finding is not None:
            explained.update(finding.classes)
    low = sorted(
        (
            c
            for c in facts.classes
            if c.ap50 is not None
            and c.ap50 < LOW_AP50
            and (facts.ap50 is None or c.ap50 <= facts.ap50 - CLASS_AP50_MARGIN)
            and c.name not in explained
        ),
        key=lambda c: c.ap50,
    )
    findings = []
    for facts_of_class in low[:MAX_NAMED_CLASSES]:
        name = facts_of_class.name
        problem = f"{name} is often missed or confused: AP50 {facts_of_class.ap50:.2f}"
        problem += f" (the model's: {facts.ap50:.2f})." if facts.ap50 is not None else "."
        if facts_of_class.confused_with is not None:
            other, count = facts_of_class.confused_with
            action = (
                f"Add photos where {name} and {other} can be told apart ({count} {name} objects were detected as "
                f"{other})."
            )
        else:
            action = (
                f"Add more varied photos of {name} (backgrounds, angles, lighting, distances); the worst test "
                "images below show which ones it misses."
            )
        findings.append(Finding("low_class_ap", problem, action, (name,)))
    rest = low[MAX_NAMED_CLASSES:]
    if rest:
        findings.append(
            Finding(
                "low_class_ap",
                f"Also below AP50 {LOW_AP50:.1f}: {_names([c.name for c in rest])}.",
                "Add more varied photos of these classes.",
                tuple(c.name for c in rest),
            )
        )
    return findings


def falling_share(steps: Sequence[float], values: Sequence[float]) -> float | None:
    """How much the loss fell between the second-to-last and the last tenth of training (0.1 = by 10 %).

    Each tenth is the mean of its points, so batch noise averages out; non-finite values are left out. None with
    fewer than 4 usable points or a tenth without any.

    Example:
        >>> round(falling_share(range(100), [2 - s / 100 for s in range(100)]), 3)
        0.087
    """
    x = np.asarray(steps, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 4:
        return None
    start, end = float(x.min()), float(x.max())
    tenth = (end - start) / 10
    last = y[x > end - tenth]
    before = y[(x > end - 2 * tenth) & (x <= end - tenth)]
    if tenth <= 0 or not len(last) or not len(before):
        return None
    previous = float(before.mean())
    return (previous - float(last.mean())) / abs(previous) if previous else None


def still_learning(facts: RunFacts) -> Finding | None:
    """The loss still fell by more than :data:`STILL_FALLING` over the last tenth of training.

    Example:
        >>> still_learning(RunFacts(loss_steps=tuple(range(100)), loss_values=tuple(100.0 - s for s in range(100)),
        ...                         time_budget_s=1200)).action
        'Train longer: --time-budget 40m (this run had 20m).'
    """
    share = falling_share(facts.loss_steps, facts.loss_values)
    if share is None or share <= STILL_FALLING:
        return None
    if facts.time_budget_s:
        action = (
            f"Train longer: --time-budget {format_duration(2 * facts.time_budget_s)} "
            f"(this run had {format_duration(facts.time_budget_s)})."
        )
    elif facts.trained_steps:
        action = (
            f"Train longer: --steps {2 * facts.trained_steps} (this run had {facts.trained_steps}), or a "
            "--time-budget."
        )
    else:
        action = "Train longer: a larger --time-budget or --steps."
    return Finding(
        "still_learning",
        f"Training stopped while the loss was still falling ({share:.0%} lower over the last tenth of the steps).",
        action,
    )


def low_overall(facts: RunFacts) -> list[Finding]:
    """A start from random weights on a small dataset, or an overall AP50 below :data:`LOW_AP50` with no other
    explanation found.

    Example:
        >>> [f.kind for f in low_overall(RunFacts(ap50=0.2, from_scratch=True, train_images=300))]
        ['from_scratch']
    """
    small = facts.train_images is not None and facts.train_images < SMALL_DATASET_IMAGES
    weak = facts.ap50 is not None and facts.ap50 < LOW_AP50
    if facts.from_scratch and (small or weak):
        images = f" on {facts.train_images} training images" if facts.train_images is not None else ""
        return [
            Finding(
                "from_scratch",
                f"Trained from random weights{images}: a detector needs many thousands of images to learn from "
                "nothing.",
                "Start from the COCO weights (leave out --from-scratch), or --fine-tune-from a model trained on "
                "similar photos.",
            )
        ]
    if weak:
        return [
            Finding(
                "low_ap",
                f"The model misses or confuses most objects (AP50 {facts.ap50:.2f}).",
                "Add photos of every class, train longer (--time-budget), or --fine-tune-from a model trained on "
                "similar photos.",
            )
        ]
    return []


def quantization_loss(facts: RunFacts) -> Finding | None:
    """The int8 model more than :data:`MAX_QUANTIZATION_LOSS` AP below the float one on the same images.

    Example:
        >>> quantization_loss(RunFacts(float_ap=0.50, int8_ap=0.45, quantization="qat")).problem
        'The int8 model loses 5.0 AP points to quantization (AP 0.500 in float, 0.450 in int8).'
    """
    if facts.float_ap is None or facts.int8_ap is None:
        return None
    loss = facts.float_ap - facts.int8_ap
    if loss <= MAX_QUANTIZATION_LOSS:
        return None
    if facts.quantization == "ptq":
        action = (
            "Train with quantization-aware training (keep the graph_rewriter block generated configs have) and "
            "export with --quantize qat."
        )
    else:
        action = "Train longer (--time-budget) so quantization-aware training has more steps to adapt."
    return Finding(
        "quantization_loss",
        f"The int8 model loses {100 * loss:.1f} AP points to quantization (AP {facts.float_ap:.3f} in float, "
        f"{facts.int8_ap:.3f} in int8).",
        action,
    )


def few_test_images(facts: RunFacts) -> Finding | None:
    """Fewer than :data:`MIN_TEST_IMAGES` test images, or classes with fewer than
    :data:`MIN_TEST_OBJECTS_PER_CLASS` test objects.

    Example:
        >>> few_test_images(RunFacts(test_images=8, test_objects=16, ap50=0.5)).problem
        'The figures come from 8 test images (16 objects): AP50 may be off by about ±0.25.'
    """
    parts = []
    if facts.test_images is not None and facts.test_images < MIN_TEST_IMAGES:
        part = f"The figures come from {facts.test_images} test images"
        if facts.test_objects:
            part += f" ({facts.test_objects} objects)"
            if facts.ap50 is not None:
                part += f": AP50 may be off by about ±{1 / math.sqrt(facts.test_objects):.2f}"
        parts.append(part + ".")
    thin = [
        c for c in facts.classes if c.test_objects is not None and c.test_objects < MIN_TEST_OBJECTS_PER_CLASS
    ]
    if thin:
        listed = _names([f"{c.name} ({c.test_objects})" for c in sorted(thin, key=lambda c: c.test_objects)])
        parts.append(f"Few test objects of {listed}: their AP says little.")
    if not parts:
        return None
    return Finding(
        "few_test_images",
        " ".join(parts),
        f"Add photos: a fifth go to the test split; aim for {MIN_TEST_IMAGES} test images and "
        f"{MIN_TEST_OBJECTS_PER_CLASS} objects of each class.",
        tuple(c.name for c in thin),
    )


def diagnose(facts: RunFacts) -> list[Finding]:
    """Every finding, most limiting first: data (few objects, small objects), classes, training, quantization,
    then the uncertainty of the figures.

    Args:
        facts: the run's figures.

    Returns:
        The findings (empty when nothing visibly limits the model).

    Example:
        >>> [f.kind for f in diagnose(RunFacts(ap50=0.3, test_images=10, test_objects=20))]
        ['low_ap', 'few_test_images']
    """
    findings: list[Finding] = []
    for rule in (few_objects, small_objects):
        found = rule(facts)
        if found is not None:
            findings.append(found)
    findings += low_class_ap(facts)
    learning = still_learning(facts)
    if learning is not None:
        findings.append(learning)
    overall = low_overall(facts)
    # "low_ap" is the fallback explanation: not worth a line when a finding above already says why.
    if not (findings and overall and overall[0].kind == "low_ap"):
        findings += overall
    for rule in (quantization_loss, few_test_images):
        found = rule(facts)
        if found is not None:
            findings.append(found)
    return findings


def judgement(facts: RunFacts) -> str:
    """One sentence on how good the shipped model is, from its AP50.

    Example:
        >>> judgement(RunFacts(ap50=0.3))
        'Not ready: the model misses or confuses most objects (AP50 0.30).'
    """
    if facts.ap50 is None:
        return "No accuracy figures: the export's evaluation on the test split was not found."
    if facts.ap50 >= 0.8:
        return f"Good: the model finds most objects at the right place (AP50 {facts.ap50:.2f})."
    if facts.ap50 >= LOW_AP50:
        return (
            f"Usable with care: the model finds many objects but misses or confuses a fair share "
            f"(AP50 {facts.ap50:.2f})."
        )
    return f"Not ready: the model misses or confuses most objects (AP50 {facts.ap50:.2f})."
