"""The model card: ``W/exported/model_card.md``, one page beside the models that says what they are.

What the model detects, the data it was trained on (objects per class and split), how it was trained (variant,
input size, steps, QAT, optimizer, weight averaging, augmentation, start), its accuracy (float and int8, overall and
per class), latency and size, the inputs and outputs of each file (the uint8 input's scale and zero point, the
output order), and its limits (:mod:`spaghettinet.evaluation.diagnosis`).

The card is built from the same :class:`~spaghettinet.evaluation.report.ReportInputs` as the report and printed by
the same Markdown renderer (:func:`spaghettinet.evaluation.document.render_markdown`), so every class name and path
in it is Markdown-escaped in that one place. :func:`spaghettinet.evaluation.report.write_report` writes it.

Example:
    >>> from spaghettinet.evaluation.report import ReportInputs
    >>> model_card_markdown(ReportInputs(class_names=["cat"])).splitlines()[0]
    '# Model card: SpaghettiNet-EdgeTPU detector, 1 class'
"""

from __future__ import annotations

from . import diagnosis
from .document import (
    Advice,
    AdviceItem,
    BulletList,
    Notice,
    Paragraph,
    Section,
    Table,
    format_bytes,
    format_number,
    render_markdown,
)
from .report_inputs import (
    COCO_METRICS,
    SCORE_LABELS,
    ReportInputs,
    cpu_name,
    run_facts,
    shipped_scores,
    training_rows,
)

#: What each output holds, in the order of the exported op's outputs (``deploy/tflite.py``'s ``OUTPUT_NAMES``).
OUTPUTS: tuple[tuple[str, str, str], ...] = (
    (
        "detection_boxes",
        "float32 [1, K, 4]",
        "ymin, xmin, ymax, xmax, normalized to [0, 1]; may reach past the edge",
    ),
    (
        "detection_classes",
        "float32 [1, K]",
        "0-based class index: line number in labels.txt, counting from 0",
    ),
    ("detection_scores", "float32 [1, K]", "confidence in [0, 1], highest first"),
    ("num_detections", "float32 [1]", "how many of the K rows are valid"),
)


def _what_section(inputs: ReportInputs) -> Section:
    section = Section("What it detects")
    names = inputs.class_names or list(inputs.export_report.class_names if inputs.export_report else ())
    if not names:
        section.blocks.append(Notice("No label map found: the classes are unknown."))
        return section
    section.blocks.append(
        Paragraph(
            f"Objects of {len(names)} class{'es' if len(names) != 1 else ''}, each found as a box with a class "
            "and a score (SpaghettiNet-EdgeTPU SSD detector):"
        )
    )
    section.blocks.append(Table(["class index", "name"], [[str(i), name] for i, name in enumerate(names)]))
    return section


def _files_section(inputs: ReportInputs) -> Section:
    from spaghettinet.deploy.tflite import OUTPUT_NAMES

    section = Section("Files, inputs and outputs")
    report = inputs.export_report
    size = report.input_size if report else (inputs.training.input_size if inputs.training else None)
    shape = f"[1, {size[0]}, {size[1]}, 3]" if size else "[1, H, W, 3]"
    given = report.int8 if report else None
    rows = []
    for name, file_size in sorted(inputs.model_sizes.items()):
        if name == "model_int8.tflite":
            if given is not None:
                description = (
                    f"{given.input_type.lower()} {shape}: raw RGB pixels 0-255; input quantization "
                    f"scale {given.input_scale}, zero point {given.input_zero_point}: the model sees "
                    f"scale × (pixel − {given.input_zero_point}), in [-1, 1]"
                )
            else:
                description = f"uint8 {shape}: raw RGB pixels 0-255"
        elif name == "model_float.tflite":
            description = (
                f"float32 {shape}: RGB pixels scaled x × 2/255 − 1 (metadata: mean 127.5, std 127.5)"
            )
        elif name == "model_fp16.tflite":
            description = f"float32 {shape}, as model_float.tflite (its weights are stored as float16)"
        else:
            description = "see export_report.json"
        rows.append([name, format_bytes(file_size), description])
    if rows:
        section.blocks.append(Table(["file", "size", "input"], rows))
    else:
        section.blocks.append(Notice("No exported .tflite files found."))
    post = report.postprocess if report else None
    detections = post.max_detections if post else "K"
    section.blocks.append(
        Paragraph(
            f"Every .tflite ends in TFLite_Detection_PostProcess; outputs in this order (K = {detections}):"
        )
    )
    described = {name: (shape_text, meaning) for name, shape_text, meaning in OUTPUTS}
    section.blocks.append(
        Table(
            ["#", "output", "shape", "meaning"],
            [[str(i), name, *described.get(name, ("", ""))] for i, name in enumerate(OUTPUT_NAMES)],
        )
    )
    if post:
        nms = "per class" if post.use_regular_nms else "class-agnostic (one class per box)"
        section.blocks.append(
            Paragraph(
                f"Non-maximum suppression {nms}, score threshold {post.score_threshold}, IoU "
                f"{post.iou_threshold}. labels.txt holds the class names, one per line; saved_model/ the float "
                "TensorFlow model."
            )
        )
    return section


def _data_section(inputs: ReportInputs) -> Section:
    section = Section("Training data")
    dataset = inputs.dataset
    if dataset is None:
        section.blocks.append(Notice("No dataset summary found."))
        return section
    splits = [name for name in ("train", "test") if name in dataset.split_images]
    section.blocks.append(
        Paragraph(
            ", ".join(f"{dataset.split_images[name]} {name} images" for name in splits)
            + (f"; {len(dataset.errors)} photo(s) left out for errors." if dataset.errors else ".")
        )
    )
    if dataset.objects_per_split:
        names = sorted({name for counts in dataset.objects_per_split.values() for name in counts})
        section.blocks.append(
            Table(
                ["class"] + [f"{split} objects" for split in splits],
                [
                    [name] + [str(dataset.objects_per_split.get(s, {}).get(name, 0)) for s in splits]
                    for name in names
                ],
            )
        )
    return section


def _training_section(inputs: ReportInputs) -> Section:
    section = Section("How it was trained")
    if inputs.training is None:
        section.blocks.append(Notice("No pipeline.config found: the training settings are unknown."))
    else:
        section.blocks.append(Table(["setting", "value"], training_rows(inputs.training)))
    return section


def _accuracy_section(inputs: ReportInputs) -> Section:
    section = Section("Accuracy on the test split")
    scores = list(inputs.scores)
    if inputs.test_results is not None and inputs.test_results.scores is not None:
        scores.append(inputs.test_results.scores)
    if not scores:
        section.blocks.append(Notice("No evaluation results found."))
        return section
    section.blocks.append(
        Table(
            ["model"] + [title for _, title in COCO_METRICS[:3]],
            [[s.label] + [format_number(s.metrics.get(key)) for key, _ in COCO_METRICS[:3]] for s in scores],
        )
    )
    section.blocks.append(Paragraph(SCORE_LABELS))
    with_classes = [s for s in scores if s.per_class_ap]
    shipped = shipped_scores(inputs)
    if with_classes:
        names = sorted({name for s in with_classes for name in s.per_class_ap})
        headers = ["class"] + [f"AP, {s.label}" for s in with_classes]
        if shipped is not None and shipped.per_class_ap50:
            headers.append(f"AP50, {shipped.label}")
        rows = []
        for name in names:
            row = [name] + [format_number(s.per_class_ap.get(name)) for s in with_classes]
            if shipped is not None and shipped.per_class_ap50:
                row.append(format_number(shipped.per_class_ap50.get(name)))
            rows.append(row)
        section.blocks.append(Paragraph("Per class (AP is COCO's AP @[.50:.95]):"))
        section.blocks.append(Table(headers, rows))
    return section


def _speed_section(inputs: ReportInputs) -> Section:
    section = Section("Latency")
    if not inputs.latency:
        section.blocks.append(Notice("No latency measured."))
        return section
    section.blocks.append(
        Table(
            ["file", "median ms", "p90 ms", "threads", "CPU"],
            [
                [
                    result.model,
                    format_number(result.median_ms, 2),
                    format_number(result.p90_ms, 2),
                    str(result.threads),
                    cpu_name(result) or "–",
                ]
                for result in inputs.latency
            ],
        )
    )
    section.blocks.append(
        Paragraph(
            "LiteRT on the CPU named; int8 is faster than float only where the CPU multiplies int8 in hardware."
        )
    )
    return section


def _limits_section(inputs: ReportInputs) -> Section:
    section = Section("Limits")
    facts = run_facts(inputs)
    section.blocks.append(Paragraph(diagnosis.judgement(facts)))
    findings = diagnosis.diagnose(facts)
    if findings:
        section.blocks.append(Advice([AdviceItem(f.problem, f.action) for f in findings]))
    section.blocks.append(
        BulletList(
            [
                "It knows only what its training photos show: other cameras, lighting, backgrounds or object sizes "
                "may lower its accuracy; measure it on photos from where it will be used.",
                "One class per box: overlapping objects of different classes may be reported once.",
            ]
        )
    )
    return section


def model_card_sections(inputs: ReportInputs) -> list[Section]:
    """The card's sections, in order: what it detects, files, data, training, accuracy, latency, limits.

    Args:
        inputs: the report inputs of the run.

    Returns:
        Sections of the document model (plain text; escaped when rendered).
    """
    return [
        _what_section(inputs),
        _files_section(inputs),
        _data_section(inputs),
        _training_section(inputs),
        _accuracy_section(inputs),
        _speed_section(inputs),
        _limits_section(inputs),
    ]


def model_card_markdown(inputs: ReportInputs) -> str:
    """The model card as Markdown (every untrusted string escaped by the renderer).

    Args:
        inputs: the report inputs of the run.

    Returns:
        The Markdown text.
    """
    text, _figures = render_markdown(card_title(inputs), model_card_sections(inputs))
    return text


def card_title(inputs: ReportInputs) -> str:
    """The card's title: "Model card: SpaghettiNet-EdgeTPU-S detector, 4 classes, 320×320", with what is known.

    Example:
        >>> from spaghettinet.evaluation.report import ReportInputs
        >>> card_title(ReportInputs(class_names=["cat", "dog"]))
        'Model card: SpaghettiNet-EdgeTPU detector, 2 classes'
    """
    training = inputs.training
    variant = f"-{training.variant.upper()}" if training is not None and training.variant else ""
    parts = [f"SpaghettiNet-EdgeTPU{variant} detector"]
    names = inputs.class_names or list(inputs.export_report.class_names if inputs.export_report else ())
    if names:
        parts.append(f"{len(names)} class" + ("es" if len(names) != 1 else ""))
    if training is not None and training.input_size:
        parts.append(f"{training.input_size[0]}×{training.input_size[1]}")
    return "Model card: " + ", ".join(parts)
