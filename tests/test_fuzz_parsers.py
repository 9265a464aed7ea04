"""Hostile-input fuzzing of the three parsers of user text (issue 10): the VOC xml parser, the label-map parser and
the pipeline.config parser. Any text in, either a parsed result or one of this package's errors out, never another
exception (a KeyError, RecursionError, UnicodeError or IndexError would be a traceback for the user).

Besides random text, each parser gets token soups drawn from its own grammar, which reach far deeper than random
characters do: nested blocks, escapes, numbers in every spelling, entities, CDATA, odd encodings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spaghettinet.data.labelmap import parse_label_map_text
from spaghettinet.data.voc import parse_voc_xml
from spaghettinet.errors import SpaghettiError
from spaghettinet.pipeline_config import parse_config_text

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TEXT_TOKENS = [
    "{",
    "}",
    "<",
    ">",
    "[",
    "]",
    ":",
    ",",
    ";",
    "#",
    "\n",
    " ",
    "'",
    '"',
    "\\",
    "\\303",
    "\\x",
    "\\xc3",
    "\\u00e9",
    "\\U0001f600",
    "\\uD800",
    "\\777",
    "\\q",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "-infinity",
    "1e999",
    "1e30",
    "0x1F",
    "-0x80000000",
    "4294967296",
    "1.5f",
    "0",
    "-1",
    "true",
    "SIGMOID",
    "item",
    "name",
    "id",
    "display_name",
    "model",
    "ssd",
    "num_classes",
    "feature_extractor",
    "type",
    "'ssd_spaghettinet'",
    "spaghettinet_arch_name",
    "'spaghettinet_edgetpu_s'",
    "image_resizer",
    "fixed_shape_resizer",
    "height",
    "width",
    "train_config",
    "num_steps",
    "batch_size",
    "optimizer",
    "momentum_optimizer",
    "learning_rate",
    "cosine_decay_learning_rate",
    "learning_rate_base",
    "data_augmentation_options",
    "ssd_random_crop",
    "operations",
    "graph_rewriter",
    "quantization",
    "delay",
    "eval_config",
    "train_input_reader",
    "tf_record_input_reader",
    "input_path",
    '"a\\"b"',
    "'x'",
    "\u00e9",
    "\x00",
    "\r",
]
_XML_TOKENS = [
    "<annotation>",
    "</annotation>",
    "<object>",
    "</object>",
    "<name>",
    "</name>",
    "<bndbox>",
    "</bndbox>",
    "<xmin>",
    "</xmin>",
    "<ymin>",
    "</ymin>",
    "<xmax>",
    "</xmax>",
    "<ymax>",
    "</ymax>",
    "<size>",
    "</size>",
    "<width>",
    "</width>",
    "<height>",
    "</height>",
    "<depth>",
    "</depth>",
    "<difficult>",
    "</difficult>",
    "1",
    "-5",
    "nan",
    "inf",
    "1e308",
    "0x10",
    " ",
    "cat",
    "&amp;",
    "&#13;",
    "&#0;",
    "&lt;",
    "&bogus;",
    "<![CDATA[x]]>",
    "<!-- c -->",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="utf-16"?>',
    "<!DOCTYPE a>",
    '<!DOCTYPE a [<!ENTITY e "x">]>',
    "&e;",
    '<!DOCTYPE a SYSTEM "file:///etc/passwd">',
    "\u00e9",
    "\x00",
    "<",
    ">",
]


def _soup(tokens: list[str]):
    return st.lists(st.sampled_from(tokens), max_size=60).map("".join)


def _parse_xml_text(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.xml"
        path.write_bytes(data)
        try:
            parse_voc_xml(path)
        except SpaghettiError:
            pass


@FUZZ
@given(
    st.one_of(st.binary(max_size=300), _soup(_XML_TOKENS).map(lambda t: t.encode("utf-8", "surrogatepass")))
)
def test_voc_parser_never_raises_anything_but_our_errors(data):
    _parse_xml_text(data)


@pytest.mark.parametrize(
    "parse", [parse_label_map_text, parse_config_text], ids=["label map", "pipeline.config"]
)
@FUZZ
@given(text=st.one_of(st.text(max_size=300), _soup(_TEXT_TOKENS)))
def test_text_format_parsers_never_raise_anything_but_our_errors(parse, text):
    try:
        parse(text)
    except SpaghettiError:
        pass


def test_deep_and_long_inputs_do_not_escape_either():
    for text in (
        "a {" * 10_000,
        "item { " * 10_000 + "}" * 10_000,
        '"' + "\\303" * 50_000 + '"',
        "[" * 10_000,
    ):
        for parse in (parse_label_map_text, parse_config_text):
            try:
                parse(text)
            except SpaghettiError:
                pass
    _parse_xml_text(b"<annotation>" + b"<object>" * 5_000 + b"</object>" * 5_000 + b"</annotation>")
