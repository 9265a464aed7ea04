"""TFLite metadata for the exported detector: what MediaPipe Tasks' ObjectDetector reads to run it unmodified.

The metadata is a ``ModelMetadataT`` flatbuffer built with the schema module the ``mediapipe`` package ships
(``mediapipe.tasks.metadata.metadata_schema_py_generated``). We build it directly rather than through mediapipe's
metadata writer: that writer does not import in mediapipe 1.2.3 (its ``metadata.py`` imports
``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version``, which the wheels no longer ship), and
building the table ourselves takes as many lines as a shim would.
The result mirrors what the writer produces for models with the post-processing op:

* input ``image``: RGB image, normalization mean 127.5 / std 127.5 (MediaPipe applies it to float inputs only and
  feeds raw pixels to uint8 inputs), stats of the tensor's value range;
* outputs, in the op's order (``tflite.canonicalize_outputs``): ``location`` (boxes as ymin, xmin, ymax, xmax
  ratios), ``category`` (0-based class indices, labels in ``labels.txt`` packed in the file), ``score``,
  ``number of detections``; the first three form the tensor group ``detection_result``.

``labels.txt`` is packed by appending a zip archive to the model, which is how the metadata populators attach
associated files (a ``.tflite`` file with metadata is also a zip).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from spaghettinet.errors import SpaghettiError

#: Name of the model-level metadata entry that clients look up (fixed by the TFLite metadata convention).
METADATA_NAME = "TFLITE_METADATA"
LABELS_FILE_NAME = "labels.txt"
DETECTION_GROUP_NAME = "detection_result"

#: Normalization that maps raw [0, 255] pixels onto the training range [-1, 1]: (x - 127.5) / 127.5 = x·2/255 - 1.
NORMALIZATION_MEAN = 127.5
NORMALIZATION_STD = 127.5

#: Output names the MediaPipe writer uses, in the op's order; clients match tensors by position.
OUTPUT_METADATA_NAMES: tuple[str, ...] = ("location", "category", "score", "number of detections")
_OUTPUT_DESCRIPTIONS = (
    "Boxes of the detected objects: ymin, xmin, ymax, xmax as fractions of the image size.",
    "Class of each detected object: 0-based index into labels.txt (background excluded).",
    "Score of each detected object, in [0, 1].",
    "Number of valid rows in the other outputs.",
)

#: Boxes come out as (ymin, xmin, ymax, xmax); BoundingBoxProperties.index lists where left, top, right, bottom are.
_BOX_INDEX_LEFT_TOP_RIGHT_BOTTOM = [1, 0, 3, 2]

#: The detection outputs are [1, K, ...]: the dimension that runs over detections is 2 in the schema's 1-based
#: ValueRange convention the writers use for "content per detection".
_DETECTION_CONTENT_DIMENSION = 2


def _schema():
    from mediapipe.tasks.metadata import metadata_schema_py_generated

    return metadata_schema_py_generated


def _stats(schema, low: float | None, high: float | None):
    stats = schema.StatsT()
    stats.min = None if low is None else [float(low)]
    stats.max = None if high is None else [float(high)]
    return stats


def _input_metadata(schema, input_is_uint8: bool):
    tensor = schema.TensorMetadataT()
    tensor.name = "image"
    tensor.description = "RGB image, raw pixels (uint8 model) or pixels scaled x*2/255 - 1 (float model)."
    content = schema.ContentT()
    content.contentPropertiesType = schema.ContentProperties.ImageProperties
    content.contentProperties = schema.ImagePropertiesT()
    content.contentProperties.colorSpace = schema.ColorSpaceType.RGB
    tensor.content = content
    normalization = schema.ProcessUnitT()
    normalization.optionsType = schema.ProcessUnitOptions.NormalizationOptions
    normalization.options = schema.NormalizationOptionsT()
    normalization.options.mean = [NORMALIZATION_MEAN]
    normalization.options.std = [NORMALIZATION_STD]
    tensor.processUnits = [normalization]
    # Stats are the range of the tensor as fed: raw 0..255 for uint8, the normalized range for float.
    if input_is_uint8:
        tensor.stats = _stats(schema, 0, 255)
    else:
        tensor.stats = _stats(
            schema,
            (0 - NORMALIZATION_MEAN) / NORMALIZATION_STD,
            (255 - NORMALIZATION_MEAN) / NORMALIZATION_STD,
        )
    return tensor


def _output_metadata(schema, index: int):
    tensor = schema.TensorMetadataT()
    tensor.name = OUTPUT_METADATA_NAMES[index]
    tensor.description = _OUTPUT_DESCRIPTIONS[index]
    tensor.stats = _stats(schema, None, None)
    content = schema.ContentT()
    if index == 0:
        content.contentPropertiesType = schema.ContentProperties.BoundingBoxProperties
        box = schema.BoundingBoxPropertiesT()
        box.index = list(_BOX_INDEX_LEFT_TOP_RIGHT_BOTTOM)
        box.type = schema.BoundingBoxType.BOUNDARIES
        box.coordinateType = schema.CoordinateType.RATIO
        content.contentProperties = box
    else:
        content.contentPropertiesType = schema.ContentProperties.FeatureProperties
        content.contentProperties = schema.FeaturePropertiesT()
    if index < 3:
        value_range = schema.ValueRangeT()
        value_range.min = _DETECTION_CONTENT_DIMENSION
        value_range.max = _DETECTION_CONTENT_DIMENSION
        content.range = value_range
    tensor.content = content
    if index == 1:
        labels = schema.AssociatedFileT()
        labels.name = LABELS_FILE_NAME
        labels.description = "Class names, one per line, line i = class index i."
        labels.type = schema.AssociatedFileType.TENSOR_VALUE_LABELS
        tensor.associatedFiles = [labels]
    return tensor


def minimum_parser_version(uses_tensor_groups: bool) -> str:
    """The metadata parser version a client needs for the features we write.

    Everything we use is in schema 1.0.0 except output tensor groups, added in 1.2.0 (see the "Added in"
    notes of ``metadata_schema.fbs`` shipped with mediapipe).
    """
    return "1.2.0" if uses_tensor_groups else "1.0.0"


def build_metadata(
    class_names: Sequence[str], input_is_uint8: bool, model_name: str = "SpaghettiNet-EdgeTPU SSD"
):
    """The ``ModelMetadataT`` object for a detector with the post-processing op.

    Args:
        class_names: foreground class names, index i = detection class i (no background entry).
        input_is_uint8: True for the int8 model (uint8 pixels in), False for the float model.
        model_name: shown by metadata viewers.

    Returns:
        ``metadata_schema_py_generated.ModelMetadataT``.
    """
    schema = _schema()
    metadata = schema.ModelMetadataT()
    metadata.name = model_name
    metadata.description = f"Detects {len(class_names)} classes: " + ", ".join(class_names)
    subgraph = schema.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_input_metadata(schema, input_is_uint8)]
    subgraph.outputTensorMetadata = [_output_metadata(schema, i) for i in range(4)]
    group = schema.TensorGroupT()
    group.name = DETECTION_GROUP_NAME
    group.tensorNames = list(OUTPUT_METADATA_NAMES[:3])
    subgraph.outputTensorGroups = [group]
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = minimum_parser_version(uses_tensor_groups=True)
    return metadata


def labels_text(class_names: Sequence[str]) -> str:
    """``labels.txt`` content: one foreground class name per line, in class-index order, no background line.

    Raises:
        SpaghettiError: a name is empty or contains a line break (it would shift every later label).
    """
    for name in class_names:
        if not name or "\n" in name or "\r" in name:
            raise SpaghettiError(
                f"class name {name!r} cannot be written to labels.txt (empty or has a line break)"
            )
    return "".join(f"{name}\n" for name in class_names)


def add_metadata(flatbuffer: bytes, class_names: Sequence[str]) -> bytes:
    """Return ``flatbuffer`` with our metadata inserted and ``labels.txt`` packed in.

    Any metadata already present under ``TFLITE_METADATA`` is replaced. The model must already have its outputs
    in canonical order (``tflite.canonicalize_outputs``), because clients pair metadata with outputs by position.

    Args:
        flatbuffer: ``.tflite`` bytes without associated files.
        class_names: foreground class names in class-index order.

    Returns:
        The new ``.tflite`` bytes.

    Example:
        >>> model_bytes = add_metadata(open("model_int8.tflite", "rb").read(), ["cat", "dog"])  # doctest: +SKIP
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as model_schema
    from ai_edge_litert.tools import flatbuffer_utils

    if not class_names:
        raise SpaghettiError("cannot write metadata without class names")
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    input_tensor = model.subgraphs[0].tensors[int(model.subgraphs[0].inputs[0])]
    input_is_uint8 = input_tensor.type == model_schema.TensorType.UINT8

    builder = flatbuffers.Builder(0)
    builder.Finish(build_metadata(class_names, input_is_uint8).Pack(builder), b"M001")
    metadata_buffer = model_schema.BufferT()
    metadata_buffer.data = bytes(builder.Output())

    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()] or []
    model.buffers = list(model.buffers or [])
    model.buffers.append(metadata_buffer)
    entry = model_schema.MetadataT()
    entry.name = METADATA_NAME.encode()
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    archive = io.BytesIO()
    archive.write(packed)
    with zipfile.ZipFile(archive, "a") as bundle:
        bundle.writestr(LABELS_FILE_NAME, labels_text(class_names))
    return archive.getvalue()


def read_metadata(flatbuffer: bytes):
    """The ``ModelMetadataT`` stored in a ``.tflite`` file, or None when it has none.

    Example:
        >>> read_metadata(open("model_int8.tflite", "rb").read()).subgraphMetadata[0].outputTensorGroups[0].name
        ... # doctest: +SKIP
    """
    from ai_edge_litert.tools import flatbuffer_utils

    schema = _schema()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            data = bytes(bytearray(model.buffers[entry.buffer].data))
            return schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAsModelMetadata(data, 0))
    return None


def read_packed_labels(flatbuffer: bytes) -> list[str] | None:
    """The class names packed in the model's ``labels.txt``, or None when the file has no packed labels."""
    try:
        with zipfile.ZipFile(io.BytesIO(flatbuffer)) as bundle:
            if LABELS_FILE_NAME not in bundle.namelist():
                return None
            text = bundle.read(LABELS_FILE_NAME).decode("utf-8")
    except zipfile.BadZipFile:
        return None
    return [line for line in text.splitlines() if line.strip()]
