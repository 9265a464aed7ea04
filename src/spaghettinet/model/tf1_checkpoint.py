"""Load TF1 Object Detection API SpaghettiNet checkpoints into the Keras model by variable name, and inspect them.

The Keras layers carry their TF1 scopes (``blocks.py``, ``head.py``), so :func:`tf1_variable_map` gives the exact
TF1 name of every model variable (as the reference's slim scopes name it). Checkpoint entries that are
training state rather than model weights (optimizer slots, ``global_step``, EMA shadows and zero-debias
helpers, ``contrib.quantize`` ranges) are ignored by pattern.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError

_ARCH_PATTERN = re.compile(r"^FeatureExtractor/(spaghettinet_edgetpu_[a-z]+)/")
#: Checkpoint entries that are not model weights. Optimizer slots end in the optimizer's name (possibly with a
#: suffix such as ``Momentum_1``); QAT ranges come from contrib.quantize or Google-internal rewrites.
_IGNORED_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"(^|/)global_step$",
        r"/(Momentum|RMSProp|RMSProp_1|Adam|Adam_1|Adagrad|Ftrl|Ftrl_1|AdamW|LARS)(_\d+)?$",
        r"(^|/)ExponentialMovingAverage(/|$)",
        r"/biased$",
        r"/local_step$",
        r"/(weights_quant|act_quant|conv_quant|add_quant|post_activation_bypass_quant|[A-Za-z0-9_]*_quant)/(min|max)$",
        r"/(weights_quant|act_quant|[A-Za-z0-9_]*_quant)(/|$)",
        r"^beta[12]_power(_\d+)?$",
    )
)
_CLASS_HEAD_PATTERN = re.compile(r"^BoxPredictor_\d+/ClassPredictor/(weights|biases)$")


def is_ignored_checkpoint_entry(name: str) -> bool:
    """True for checkpoint entries that are training state, not model weights (optimizer, EMA, QAT...)."""
    return any(pattern.search(name) for pattern in _IGNORED_PATTERNS)


def tf1_variable_map(model) -> dict:
    """TF1 checkpoint name → Keras variable, for every TF1 variable of the model.

    Args:
        model: a detector from :func:`spaghettinet.model.detector.build_detector`.

    Returns:
        dict in model build order; the names and shapes are those of the TF1 reference graph's variables.
    """
    names = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if hasattr(layer, "tf1_variables"):
            names.update(layer.tf1_variables())
    return names


@dataclass
class LoadReport:
    """What :func:`load_tf1_checkpoint` did.

    Attributes:
        prefix: the checkpoint prefix read.
        loaded: TF1 names copied into the model.
        missing: model variables absent from the checkpoint (left at their initial values).
        unused: checkpoint weights that match no model variable (not counting ignored entries).
        skipped_class_head: ClassPredictor 1x1 weights/biases left out because the checkpoint has another number
            of classes (the fine-tuning case).
        ignored: training-state entries skipped by pattern (optimizer slots, EMA, QAT ranges...).
        checkpoint_num_classes: the checkpoint's number of foreground classes.
        fresh_head: box-predictor variables not loaded because only the backbone was asked for.
        num_classes: the model's number of foreground classes.
    """

    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    skipped_class_head: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    checkpoint_num_classes: int | None = None
    fresh_head: list[str] = field(default_factory=list)
    num_classes: int | None = None

    @property
    def fine_tuning(self) -> bool:
        """True when the class predictors were left out because the class counts differ."""
        return bool(self.skipped_class_head)

    @property
    def complete(self) -> bool:
        """True when nothing is missing and nothing is unused."""
        return not self.missing and not self.unused

    def summary(self) -> str:
        """One line for logs."""
        text = f"loaded {len(self.loaded)} variables from {self.prefix}"
        if self.skipped_class_head:
            here = f"{self.num_classes} classes here, " if self.num_classes is not None else ""
            text += (
                f"; class predictors kept fresh for fine-tuning ({here}{self.checkpoint_num_classes} in the "
                f"checkpoint, {len(self.skipped_class_head)} variables not loaded)"
            )
        if self.fresh_head:
            text += f"; box-predictor head kept fresh (backbone only, {len(self.fresh_head)} variables)"
        if self.missing:
            text += f"; {len(self.missing)} missing"
        if self.unused:
            text += f"; {len(self.unused)} unused"
        if self.ignored:
            text += f"; {len(self.ignored)} training-state entries ignored"
        return text


def resolve_checkpoint_prefix(path: str | Path) -> str:
    """Turn a checkpoint prefix or a folder holding a ``checkpoint`` state file into a readable prefix.

    Raises:
        DataError: nothing readable there.
    """
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    path = Path(path)
    if path.is_dir():
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            candidates = sorted(path.glob("*.index"))
            if len(candidates) != 1:
                raise DataError(
                    "folder holds no TF checkpoint (no 'checkpoint' file, no single *.index)", path
                )
            latest = str(candidates[0].with_suffix(""))
        return latest
    if not Path(f"{path}.index").is_file():
        raise DataError(f"no checkpoint at this prefix ({path.name}.index not found)", path)
    return str(path)


def _open_reader(prefix: str | Path):
    from spaghettinet.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    resolved = resolve_checkpoint_prefix(prefix)
    try:
        reader = tf.train.load_checkpoint(resolved)
        shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises several types for truncated/corrupt files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read the checkpoint (corrupt or incomplete?): {first_line}", resolved
        ) from None
    return resolved, reader, shapes


def _read_tensor(reader, name: str, prefix: str) -> np.ndarray:
    try:
        return np.asarray(reader.get_tensor(name), dtype=np.float32)
    except Exception as exc:  # truncated data files raise IndexError, DataLossError...
        raise DataError(f"cannot read {name} (corrupt or incomplete checkpoint?): {exc}", prefix) from None


def detect_variant(names) -> str | None:
    """The ``spaghettinet_edgetpu_X`` arch name the checkpoint entries are scoped under, or None."""
    found = {m.group(1) for m in (_ARCH_PATTERN.match(n) for n in names) if m}
    if len(found) > 1:
        raise DataError(f"checkpoint mixes several SpaghettiNet variants: {', '.join(sorted(found))}")
    return found.pop() if found else None


def _num_classes_from_shapes(shapes: dict) -> int | None:
    """Foreground classes from the first map's class and box predictor bias sizes (A·(C+1) and A·4)."""
    class_bias = shapes.get("BoxPredictor_0/ClassPredictor/biases")
    box_bias = shapes.get("BoxPredictor_0/BoxEncodingPredictor/biases")
    if not class_bias or not box_bias:
        return None
    anchors = box_bias[0] // 4
    if anchors == 0 or class_bias[0] % anchors:
        return None
    return class_bias[0] // anchors - 1


def load_tf1_checkpoint(model, prefix: str | Path, backbone_only: bool = False) -> LoadReport:
    """Load a TF1 Object Detection API checkpoint into a detector, by variable name.

    With the same ``num_classes`` everything loads. With another one, everything but the ClassPredictor 1x1
    (weights and biases) loads and the report says so (``report.fine_tuning``). The concat fake-quant ranges load
    too, and their moving averages then continue from the loaded values.

    Args:
        model: a detector from :func:`~spaghettinet.model.detector.build_detector`.
        prefix: checkpoint prefix (``.../model.ckpt`` or ``model.ckpt-400000``) or its folder.
        backbone_only: load the ``FeatureExtractor/`` variables only and keep the box predictors fresh (the
            Object Detection API's ``fine_tune_checkpoint_type: "classification"``).

    Returns:
        A :class:`LoadReport`.

    Raises:
        DataError: missing or corrupt checkpoint, a checkpoint of another variant (named), a non-SpaghettiNet
            checkpoint, or a shape mismatch other than the class head's.

    Example:
        >>> report = load_tf1_checkpoint(model, "spaghettinet_edgetpu_s_ckpt/model.ckpt")  # doctest: +SKIP
        >>> report.complete
        True
    """
    from spaghettinet.model.quantize import mark_ranges_loaded

    resolved, reader, shapes = _open_reader(prefix)
    variant = detect_variant(shapes)
    if variant is None:
        raise DataError(
            "not a SpaghettiNet-EdgeTPU checkpoint (no FeatureExtractor/spaghettinet_edgetpu_*/ variables)",
            resolved,
        )
    if variant != model.variant:
        raise DataError(
            f"this checkpoint is {variant} (variant {variant.rsplit('_', 1)[-1]!r}) but the model is "
            f"{model.variant}; build the model with that variant",
            resolved,
        )
    report = LoadReport(
        prefix=resolved,
        checkpoint_num_classes=_num_classes_from_shapes(shapes),
        num_classes=getattr(model, "num_classes", None),
    )
    targets = tf1_variable_map(model)
    values = {}
    for name, variable in targets.items():
        if backbone_only and not name.startswith("FeatureExtractor/"):
            report.fresh_head.append(name)
            continue
        if name not in shapes:
            report.missing.append(name)
            continue
        expected = tuple(int(d) for d in variable.shape)
        found = tuple(int(d) for d in shapes[name])
        if expected != found:
            if _CLASS_HEAD_PATTERN.match(name):
                report.skipped_class_head.append(name)
                continue
            raise DataError(
                f"{name}: checkpoint shape {list(found)} but the model expects {list(expected)}", resolved
            )
        values[name] = _read_tensor(reader, name, resolved)
        report.loaded.append(name)
    # Assign only once everything was read, so a corrupt file leaves the model untouched.
    for name, value in values.items():
        targets[name].assign(value)
    for name in shapes:
        if name in targets:
            continue
        (report.ignored if is_ignored_checkpoint_entry(name) else report.unused).append(name)
    mark_ranges_loaded(
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if hasattr(layer, "tf1_variables") and all(name in values for name in layer.tf1_variables())
    )
    return report


@dataclass
class CheckpointInfo:
    """What :func:`inspect_checkpoint` found.

    Attributes:
        prefix: the checkpoint read.
        variant: detected arch name, or None.
        num_classes: foreground classes from the ClassPredictor/BoxEncodingPredictor bias sizes, or None.
        groups: group label → list of ``(name, shape)``; labels are ``stem``, ``node <n>``, ``edge <src>→<dst>``,
            ``box predictor <i>``, ``training state`` (ignored entries) and ``other``.
        total_params: number of values in the model-weight entries (not counting training state).
    """

    prefix: str
    variant: str | None
    num_classes: int | None
    groups: dict[str, list[tuple[str, tuple[int, ...]]]]
    total_params: int


_NODE_PATTERN = re.compile(r"^FeatureExtractor/[^/]+/spaghetti_net/([a-z0-9]+)_\d+/")
_EDGE_PATTERN = re.compile(r"^FeatureExtractor/[^/]+/edge_([a-z0-9]+)_([a-z0-9]+)/")
_PREDICTOR_PATTERN = re.compile(r"^BoxPredictor_(\d+)/")


def _group_of(name: str) -> str:
    if is_ignored_checkpoint_entry(name):
        return "training state"
    if "/spaghetti_net/stem_node/" in name:
        return "stem"
    for pattern, label in (
        (_NODE_PATTERN, "node {0}"),
        (_EDGE_PATTERN, "edge {0}→{1}"),
        (_PREDICTOR_PATTERN, "box predictor {0}"),
    ):
        match = pattern.match(name)
        if match:
            return label.format(*match.groups())
    return "other"


def inspect_checkpoint(prefix: str | Path) -> CheckpointInfo:
    """Describe a TF1 checkpoint without building a model.

    Args:
        prefix: checkpoint prefix or its folder.

    Returns:
        A :class:`CheckpointInfo`.

    Raises:
        DataError: missing or corrupt checkpoint.
    """
    resolved, _, shapes = _open_reader(prefix)
    groups: dict[str, list] = defaultdict(list)
    total = 0
    for name in sorted(shapes):
        shape = tuple(int(d) for d in shapes[name])
        group = _group_of(name)
        groups[group].append((name, shape))
        if group != "training state":
            total += int(np.prod(shape)) if shape else 1
    return CheckpointInfo(
        prefix=resolved,
        variant=detect_variant(shapes),
        num_classes=_num_classes_from_shapes(shapes),
        groups=dict(groups),
        total_params=total,
    )
