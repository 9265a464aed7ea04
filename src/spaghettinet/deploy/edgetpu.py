"""What is inside an exported ``.tflite``: every op with its tensor types, float-op check, Edge TPU compatibility.

The int8 model must be int8 everywhere except the fused post-processing op and the two DEQUANTIZE ops that feed
it its box encodings and class scores: any other op that computes in float32 is a silent slowdown on a
CPU and a partition break on the Edge TPU. :func:`float_ops` finds them; the export refuses such a model.

The Edge TPU section lists ops outside the Edge TPU's supported set (from Coral's "TensorFlow models on the Edge
TPU" supported-operations table), dynamic shapes and batch sizes other than 1, and runs ``edgetpu_compiler`` when
it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from spaghettinet.deploy.tflite import POSTPROCESS_OP
from spaghettinet.stage_files import check_object, count_table, typed_field, typed_list

#: Ops the Edge TPU compiler can map, in TFLite builtin-op spelling (Coral docs, "Supported operations").
#: Some carry limitations (e.g. CONCATENATION without fused activation, MEAN over x/y only) that only the
#: compiler itself checks.
EDGETPU_SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUARED_DIFFERENCE",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
    }
)

#: Ops expected to stay on the CPU after the Edge TPU part: the post-processing and its float inputs.
EXPECTED_CPU_OPS: frozenset[str] = frozenset({POSTPROCESS_OP, "DEQUANTIZE"})

_FLOAT_TYPES = frozenset({"FLOAT32", "FLOAT16", "FLOAT64"})


@dataclass
class OperatorInfo:
    """One op of the model.

    Args:
        index: position in the subgraph's execution order.
        name: builtin op name (``CONV_2D``) or the custom code (``TFLite_Detection_PostProcess``).
        input_types: tensor type names of the non-constant inputs (``INT8``, ``FLOAT32``, ...).
        output_types: tensor type names of the outputs.
        feeds_postprocess: True when an output of this op is an input of the post-processing op.
    """

    index: int
    name: str
    input_types: list[str]
    output_types: list[str]
    feeds_postprocess: bool = False

    @property
    def computes_in_float(self) -> bool:
        """True when any activation input or output is a float type."""
        return any(t in _FLOAT_TYPES for t in self.input_types + self.output_types)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> OperatorInfo:
        """An op as ``export_report.json`` lists it; a key missing, unknown or mistyped is a ``DataError``."""
        names = ["index", "name", "input_types", "output_types", "feeds_postprocess"]
        check_object(data, what, names, source=source)
        return cls(
            index=typed_field(data, "index", int, what, source),
            name=typed_field(data, "name", str, what, source),
            input_types=typed_list(data, "input_types", str, what, source),
            output_types=typed_list(data, "output_types", str, what, source),
            feeds_postprocess=typed_field(data, "feeds_postprocess", bool, what, source),
        )


@dataclass
class EdgeTpuCompatibility:
    """The Edge TPU section of the export report.

    Args:
        unsupported_ops: op names (with counts) outside the Edge TPU's supported set, expected CPU ops excluded.
        expected_cpu_ops: the post-processing and DEQUANTIZE ops, which run on the CPU after the Edge TPU part.
        dynamic_shapes: names of tensors with a dynamic dimension (shape signature -1).
        batch_size: the input's first dimension; the Edge TPU needs 1.
        problems: one sentence per problem found; empty when the model looks compatible.
        compiler: result of ``edgetpu_compiler``: ``{"status": "not found"}`` when it is not installed.
    """

    unsupported_ops: dict[str, int]
    expected_cpu_ops: dict[str, int]
    dynamic_shapes: list[str]
    batch_size: int
    problems: list[str] = field(default_factory=list)
    compiler: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, what: str, source=None) -> EdgeTpuCompatibility:
        """The section as ``export_report.json`` holds it. ``compiler`` is the compiler's own output (a ``status``,
        then what that compiler version prints), kept as written."""
        names = [
            "unsupported_ops",
            "expected_cpu_ops",
            "dynamic_shapes",
            "batch_size",
            "problems",
            "compiler",
        ]
        check_object(data, what, names, source=source)
        return cls(
            unsupported_ops=count_table(data, "unsupported_ops", what, source),
            expected_cpu_ops=count_table(data, "expected_cpu_ops", what, source),
            batch_size=typed_field(data, "batch_size", int, what, source),
            dynamic_shapes=typed_list(data, "dynamic_shapes", str, what, source),
            problems=typed_list(data, "problems", str, what, source),
            compiler=dict(typed_field(data, "compiler", dict, what, source)),
        )


def _read_model(flatbuffer: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))


def _enum_names(enum_class) -> dict[int, str]:
    return {value: key for key, value in vars(enum_class).items() if not key.startswith("_")}


def list_operators(flatbuffer: bytes) -> list[OperatorInfo]:
    """Every op of the main subgraph, in execution order, with the types of its tensors.

    Constant inputs (weights, biases, the anchors) are left out of ``input_types``: a float32 anchors constant
    does not make an op compute in float, and int32 biases are part of an int8 conv.

    Args:
        flatbuffer: ``.tflite`` bytes.

    Returns:
        One :class:`OperatorInfo` per op.

    Example:
        >>> [op.name for op in list_operators(open("model_int8.tflite", "rb").read())][:2]  # doctest: +SKIP
        ['QUANTIZE', 'CONV_2D']
    """
    from ai_edge_litert import schema_py_generated as schema

    model = _read_model(flatbuffer)
    subgraph = model.subgraphs[0]
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    def is_constant(tensor_index: int) -> bool:
        buffer = model.buffers[subgraph.tensors[tensor_index].buffer]
        return buffer is not None and buffer.data is not None and len(buffer.data) > 0

    def op_name(operator) -> str:
        code = model.operatorCodes[operator.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin == schema.BuiltinOperator.CUSTOM:
            return (code.customCode or b"").decode("utf-8", "replace")
        return op_names.get(builtin, str(builtin))

    postprocess_inputs: set[int] = set()
    for operator in subgraph.operators:
        if op_name(operator) == POSTPROCESS_OP:
            postprocess_inputs.update(int(t) for t in operator.inputs)

    operators = []
    for index, operator in enumerate(subgraph.operators):
        inputs = [int(t) for t in operator.inputs if int(t) >= 0 and not is_constant(int(t))]
        outputs = [int(t) for t in operator.outputs]
        operators.append(
            OperatorInfo(
                index=index,
                name=op_name(operator),
                input_types=[type_names[subgraph.tensors[t].type] for t in inputs],
                output_types=[type_names[subgraph.tensors[t].type] for t in outputs],
                feeds_postprocess=any(t in postprocess_inputs for t in outputs),
            )
        )
    return operators


def float_ops(operators: list[OperatorInfo]) -> list[OperatorInfo]:
    """Ops computing in float other than the post-processing op and the DEQUANTIZE ops feeding it.

    An empty list means the model is int8 wherever it can be.
    """
    unexpected = []
    for operator in operators:
        if not operator.computes_in_float:
            continue
        if operator.name == POSTPROCESS_OP:
            continue
        if operator.name == "DEQUANTIZE" and operator.feeds_postprocess:
            continue
        unexpected.append(operator)
    return unexpected


def op_counts(operators: list[OperatorInfo]) -> dict[str, int]:
    """How many times each op occurs, most frequent first."""
    counts: dict[str, int] = {}
    for operator in operators:
        counts[operator.name] = counts.get(operator.name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def edgetpu_compatibility(flatbuffer: bytes, run_compiler: bool = True) -> EdgeTpuCompatibility:
    """Check a full-int8 model against what the Edge TPU can run.

    Args:
        flatbuffer: the int8 ``.tflite`` bytes.
        run_compiler: run ``edgetpu_compiler`` when it is on PATH.

    Returns:
        The :class:`EdgeTpuCompatibility` section.
    """
    operators = list_operators(flatbuffer)
    counts = op_counts(operators)
    unsupported = {
        name: n for name, n in counts.items() if name not in EDGETPU_SUPPORTED_OPS | EXPECTED_CPU_OPS
    }
    expected = {name: n for name, n in counts.items() if name in EXPECTED_CPU_OPS}

    model = _read_model(flatbuffer)
    subgraph = model.subgraphs[0]
    dynamic = []
    for tensor in subgraph.tensors:
        signature = tensor.shapeSignature
        if signature is not None and len(signature) and np.any(np.asarray(signature) < 0):
            dynamic.append(tensor.name.decode("utf-8", "replace"))
    input_shape = subgraph.tensors[int(subgraph.inputs[0])].shape
    batch = int(input_shape[0]) if input_shape is not None and len(input_shape) else 0

    problems = []
    if unsupported:
        listed = ", ".join(f"{name} x{n}" for name, n in unsupported.items())
        problems.append(
            f"ops the Edge TPU does not support (they and everything after them run on the CPU): {listed}"
        )
    if dynamic:
        problems.append(f"{len(dynamic)} tensors have dynamic shapes (the Edge TPU needs static shapes)")
    if batch != 1:
        problems.append(f"input batch size is {batch}; the Edge TPU needs 1")
    float_problem = float_ops(operators)
    if float_problem:
        problems.append(f"{len(float_problem)} ops compute in float outside the post-processing")
    result = EdgeTpuCompatibility(
        unsupported_ops=unsupported,
        expected_cpu_ops=expected,
        dynamic_shapes=dynamic,
        batch_size=batch,
        problems=problems,
    )
    result.compiler = run_edgetpu_compiler(flatbuffer) if run_compiler else {"status": "not run"}
    return result


def run_edgetpu_compiler(flatbuffer: bytes, timeout_s: float = 300.0) -> dict:
    """Compile the model with ``edgetpu_compiler`` if it is on PATH, in a temporary folder.

    Returns:
        ``{"status": "not found"}`` when the compiler is not installed; otherwise ``status`` ("ok" or "failed"),
        ``returncode`` and the compiler's ``log`` (its per-op mapping table).
    """
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {"status": "not found"}
    with tempfile.TemporaryDirectory(prefix="spaghettinet-edgetpu-") as folder:
        model_path = Path(folder) / "model_int8.tflite"
        model_path.write_bytes(flatbuffer)
        try:
            completed = subprocess.run(
                [compiler, "--show_operations", "--out_dir", folder, str(model_path)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {"status": "failed", "returncode": None, "log": f"timed out after {timeout_s:.0f} s"}
        status = "ok" if completed.returncode == 0 else "failed"
        return {
            "status": status,
            "returncode": completed.returncode,
            "log": completed.stdout + completed.stderr,
        }
