"""Training checkpoints: what they hold, how to find the latest one, how to rebuild a detector from one, and how to
start fine-tuning from one (:func:`load_for_fine_tuning`: weights only, class predictors fresh when the number of
classes differs).

A checkpoint is a TF2 object checkpoint with the prefix ``<model_dir>/ckpt-<step>`` (the TF OD API named its TF1
ones ``model.ckpt-<step>``) holding:

* ``model``: the detector's variables;
* ``optimizer``: the SGD momentum slots and iteration count;
* ``step``: the global step (int64);
* ``examples_seen``: how many training examples the input stream has delivered (the data position);
* ``quantization_aware``: 1 when the model was training in QAT mode at that step, else 0.

``tf.train.CheckpointManager`` writes the files first and updates the ``checkpoint`` state file last (itself
written to a temporary name and renamed), so a crash while saving leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.tf_runtime import import_tensorflow

tf = import_tensorflow()

#: Prefix stem of our checkpoints: ``ckpt-<step>``.
CHECKPOINT_NAME = "ckpt"
_STEP_SUFFIX = re.compile(r"-(\d+)$")


class TrainingState(tf.Module):
    """The non-model variables saved with every checkpoint (step, data position, QAT flag).

    Example:
        >>> state = TrainingState()
        >>> int(state.step.numpy())
        0
    """

    def __init__(self):
        super().__init__(name="training_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.examples_seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="examples_seen")
        self.quantization_aware = tf.Variable(0, dtype=tf.int64, trainable=False, name="quantization_aware")


def make_checkpoint(model, state: TrainingState, optimizer=None, averages=None):
    """The ``tf.train.Checkpoint`` layout used by ``train`` (and read back by :func:`restore_detector`).

    Args:
        model: the Keras detector.
        state: a :class:`TrainingState`.
        optimizer: the optimizer, or None when only reading weights.
        averages: the run's :class:`~spaghettinet.training.weight_averaging.WeightAverages`, or None.

    Returns:
        A ``tf.train.Checkpoint``.

    Example:
        >>> ckpt = make_checkpoint(model, TrainingState(), optimizer)  # doctest: +SKIP
    """
    parts = {"model": model, "step": state.step, "examples_seen": state.examples_seen}
    parts["quantization_aware"] = state.quantization_aware
    if optimizer is not None:
        parts["optimizer"] = optimizer
    if averages is not None:
        parts["averages"] = averages
    return tf.train.Checkpoint(**parts)


def is_checkpoint_prefix(path: str | Path) -> bool:
    """True when ``path`` is a TF checkpoint prefix (its ``.index`` file exists)."""
    return Path(f"{path}.index").is_file()


def latest_checkpoint(model_dir_or_prefix: str | Path) -> str | None:
    """The checkpoint to use for a model directory or a checkpoint prefix.

    Args:
        model_dir_or_prefix: a training model directory (its latest checkpoint is meant), or a prefix such as
            ``run/ckpt-200`` (returned as is when its files exist).

    Returns:
        The checkpoint prefix, or None when a directory has no checkpoint yet.

    Raises:
        DataError: the path is neither a directory nor an existing checkpoint prefix.

    Example:
        >>> latest_checkpoint("runs/demo")  # doctest: +SKIP
        'runs/demo/ckpt-1500'
    """
    path = Path(model_dir_or_prefix)
    if path.is_dir():
        found = tf.train.latest_checkpoint(str(path))
        if found is not None and is_checkpoint_prefix(found):
            return found
        # The state file may be missing or stale (copied folder): fall back to the highest-numbered prefix.
        prefixes = sorted(
            (p.with_suffix("") for p in path.glob(f"{CHECKPOINT_NAME}-*.index")),
            key=lambda p: checkpoint_step(p) or -1,
        )
        return str(prefixes[-1]) if prefixes else None
    if is_checkpoint_prefix(path):
        return str(path)
    raise DataError(
        "is neither a model directory nor a checkpoint prefix (expected a folder written by `spaghettinet train` "
        "or a prefix like run/ckpt-200 whose .index file exists)",
        path,
    )


def checkpoint_step(prefix: str | Path) -> int | None:
    """The step number at the end of a ``...-<step>`` prefix, or None.

    Example:
        >>> checkpoint_step("run/ckpt-1200")
        1200
    """
    match = _STEP_SUFFIX.search(Path(prefix).name)
    return int(match.group(1)) if match else None


def require_checkpoint(model_dir_or_prefix: str | Path) -> str:
    """Like :func:`latest_checkpoint`, but a directory without a checkpoint is an error naming it."""
    found = latest_checkpoint(model_dir_or_prefix)
    if found is None:
        raise DataError("has no checkpoint yet; train first with `spaghettinet train`", model_dir_or_prefix)
    return found


def restore_detector(config, checkpoint_or_model_dir: str | Path):
    """Build the detector a config describes and load a training checkpoint into it.

    The quantization mode is restored too: a checkpoint taken after the QAT switch gives a model in
    quantization-aware mode (what export uses to choose QAT conversion). When the config asks for
    ``eval_config { use_moving_averages: true }`` and the checkpoint holds weight averages, the model gets the
    averaged weights (what evaluation and export then see); a checkpoint trained without averages gives its
    trained weights.

    Args:
        config: a ``PipelineConfig`` (variant, classes and input size must match the checkpoint).
        checkpoint_or_model_dir: a ``ckpt-<step>`` prefix, or a model directory meaning its latest checkpoint.

    Returns:
        ``(model, step, quantization_aware)``.

    Raises:
        DataError: no checkpoint there, or it does not fit the model (wrong variant / classes / input size).

    Example:
        >>> model, step, qat = restore_detector(read_config("pipeline.config"), "runs/demo")  # doctest: +SKIP
    """
    from spaghettinet.model.detector import build_detector
    from spaghettinet.model.quantize import set_quantization_aware

    prefix = require_checkpoint(checkpoint_or_model_dir)
    settings = config.model
    model = build_detector(settings.variant, settings.num_classes, input_size=tuple(settings.input_size))
    state = TrainingState()
    averages = None
    if config.eval.use_moving_averages and _holds_averages(prefix):
        from spaghettinet.training.weight_averaging import WeightAverages

        averages = WeightAverages(model)
    checkpoint = make_checkpoint(model, state, averages=averages)
    try:
        status = checkpoint.read(prefix)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"does not fit a SpaghettiNet-{settings.variant.upper()} with {settings.num_classes} classes at "
            f"{settings.input_size[0]}x{settings.input_size[1]} (use the pipeline.config it was trained with): "
            f"{first_line}",
            prefix,
        ) from exc
    if averages is not None:
        averages.copy_to_model()
    quantization_aware = bool(int(state.quantization_aware.numpy()))
    if quantization_aware:
        set_quantization_aware(model, True)
    return model, int(state.step.numpy()), quantization_aware


def _holds_averages(prefix: str) -> bool:
    """True when a ``make_checkpoint`` checkpoint was saved with weight averages."""
    try:
        names = [name for name, _ in tf.train.list_variables(prefix)]
    except (tf.errors.OpError, ValueError):
        return False  # the read below reports the damaged file
    return any(name.startswith("averages/") for name in names)


#: Where ``tf.train.Checkpoint`` keeps the object graph that names every saved variable.
_OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclass
class FineTuneReport:
    """What :func:`load_for_fine_tuning` took from one of our checkpoints.

    Attributes:
        prefix: the checkpoint read.
        restored: Keras paths of the model variables loaded from it.
        fresh_class_head: class-predictor variables left at their initial values (other number of classes).
        fresh_head: box-predictor head variables left fresh because only the backbone was asked for.
        num_classes: the model's foreground classes.
        checkpoint_num_classes: the checkpoint's foreground classes (from its predictor shapes), or None.
        backbone_only: True for ``fine_tune_checkpoint_type: "classification"``.
    """

    prefix: str
    restored: list[str] = field(default_factory=list)
    fresh_class_head: list[str] = field(default_factory=list)
    fresh_head: list[str] = field(default_factory=list)
    num_classes: int | None = None
    checkpoint_num_classes: int | None = None
    backbone_only: bool = False

    def summary(self) -> str:
        """One line for the user: what was restored and what starts fresh."""
        kind = " (backbone only)" if self.backbone_only else ""
        text = f"fine-tuning from {self.prefix}{kind}: restored {len(self.restored)} variables"
        fresh = []
        if self.fresh_head:
            fresh.append(f"the box-predictor head ({len(self.fresh_head)} variables)")
        elif self.fresh_class_head:
            fresh.append(
                f"class predictor ({self.num_classes} classes here, {self.checkpoint_num_classes} in the "
                "checkpoint)"
            )
        if fresh:
            text += "; kept fresh: " + ", ".join(fresh)
        return text + "; step, optimizer and quantization-aware state start afresh"


def _checkpoint_keys(reader, model) -> dict[int, str]:
    """``id(variable)`` → checkpoint key for the model variables a ``make_checkpoint`` checkpoint holds.

    Walks the checkpoint's object graph from its ``model`` entry alongside the live model, the way
    ``tf.train.Checkpoint`` matches objects on restore (by the attribute names along the path).
    """
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
    roots = [child.node_id for child in graph.nodes[0].children if child.local_name == "model"]
    wanted = {id(variable) for variable in model.variables}
    keys: dict[int, str] = {}
    stack = [(roots[0], model)] if roots else []
    visited: set[int] = set()
    while stack:
        node_id, live = stack.pop()
        if node_id in visited:
            continue
        visited.add(node_id)
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE" and id(live) in wanted:
                keys[id(live)] = attribute.checkpoint_key
        if not node.children:
            continue
        live_children = tf.train.TrackableView.children(live)
        for child in node.children:
            if child.local_name in live_children:
                stack.append((child.node_id, live_children[child.local_name]))
    return keys


def _head_parts(model):
    """``(class predictor ids, box predictor ids, all head ids, first class bias, first box bias)`` of a detector.

    The head is the five ``BoxPredictor`` layers and the two output range trackers after them; everything else is
    the SpaghettiNet backbone.
    """
    from spaghettinet.model.head import BoxPredictor

    class_ids, box_ids, head_ids = set(), set(), set()
    first_class_bias = first_box_bias = None
    for layer in model.layers:
        if isinstance(layer, BoxPredictor):
            class_ids.update(id(v) for v in layer.class_predictor.variables)
            box_ids.update(id(v) for v in layer.box_predictor.variables)
            head_ids.update(id(v) for v in layer.variables)
            if first_class_bias is None:
                first_class_bias = layer.class_predictor.variables[-1]
                first_box_bias = layer.box_predictor.variables[-1]
        elif layer.name in ("box_encodings", "class_logits"):
            head_ids.update(id(v) for v in layer.variables)
    return class_ids, box_ids, head_ids, first_class_bias, first_box_bias


def load_for_fine_tuning(model, prefix: str | Path, backbone_only: bool = False) -> FineTuneReport:
    """Load the weights of one of our training checkpoints into a fresh detector, as a fine-tuning start.

    Only model weights are read: the step, the optimizer slots, the data position and the QAT flag of the
    checkpoint stay behind. When the checkpoint was trained with another number of classes, every variable but the
    class predictors' 1x1 convolutions is loaded and those keep their fresh initial values (what the TF Object
    Detection API does with ``fine_tune_checkpoint_type: "detection"``). With ``backbone_only`` (its
    ``"classification"`` type) the whole box-predictor head stays fresh.

    Args:
        model: a detector from :func:`~spaghettinet.model.detector.build_detector`.
        prefix: a ``ckpt-<step>`` prefix written by ``train``.
        backbone_only: load the SpaghettiNet backbone only.

    Returns:
        A :class:`FineTuneReport`.

    Raises:
        DataError: unreadable checkpoint, or one that does not fit other than by its class count (another
            variant, another box predictor); the model is left untouched then.

    Example:
        >>> load_for_fine_tuning(model, "runs/a/ckpt-1500").summary()  # doctest: +SKIP
        'fine-tuning from runs/a/ckpt-1500: restored 969 variables; kept fresh: class predictor (4 classes ...'
    """
    prefix = str(prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        keys = _checkpoint_keys(reader, model) if _OBJECT_GRAPH_KEY in shapes else {}
    except (tf.errors.OpError, ValueError, IndexError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read the checkpoint (corrupt or incomplete?): {first_line}", prefix
        ) from None
    class_ids, box_ids, head_ids, first_class_bias, first_box_bias = _head_parts(model)
    report = FineTuneReport(prefix=prefix, num_classes=getattr(model, "num_classes", None))
    report.backbone_only = backbone_only
    if id(first_class_bias) in keys and id(first_box_bias) in keys:
        anchors = shapes[keys[id(first_box_bias)]][0] // 4
        if anchors:
            report.checkpoint_num_classes = shapes[keys[id(first_class_bias)]][0] // anchors - 1

    what = f"SpaghettiNet-{str(getattr(model, 'variant', '?')).rsplit('_', 1)[-1].upper()}"
    missing, mismatched, values = [], [], {}
    for variable in model.variables:
        if backbone_only and id(variable) in head_ids:
            report.fresh_head.append(variable.path)
            continue
        key = keys.get(id(variable))
        if key is None or key not in shapes:
            missing.append(variable.path)
            continue
        expected, found = list(variable.shape), list(shapes[key])
        if expected != found:
            if id(variable) in class_ids:
                report.fresh_class_head.append(variable.path)
                continue
            mismatched.append((variable, found))
            continue
        values[variable.path] = (variable, key)
    if missing:
        raise DataError(
            f"fine_tune_checkpoint does not fit this {what} ({len(missing)} of its {len(model.variables)} "
            f"variables are not in it, e.g. {missing[0]}): was it trained with another variant?",
            prefix,
        )
    if mismatched:
        variable, found = mismatched[0]
        part = "box predictor" if id(variable) in box_ids else "variable"
        raise DataError(
            f"fine_tune_checkpoint does not fit this {what}: {part} {variable.path} has shape {found} in the "
            f"checkpoint but {list(variable.shape)} here ({len(mismatched)} such variables; only the class "
            "predictor may differ, when the number of classes changes; was it trained with another variant?)",
            prefix,
        )
    # Read everything before assigning anything, so a damaged file leaves the model as it was.
    try:
        tensors = {path: reader.get_tensor(key) for path, (_, key) in values.items()}
    except (tf.errors.OpError, ValueError, IndexError) as exc:
        raise DataError(f"cannot read the checkpoint (corrupt or incomplete?): {exc}", prefix) from None
    for path, (variable, _) in values.items():
        variable.assign(tensors[path])
        report.restored.append(path)
    return report
