"""The protobuf text-format parser/writer: syntax variants, escapes, and errors that point at line and column."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spaghettinet.errors import DataError
from spaghettinet.textformat import Message, format_message, parse_text


def _values(message: Message, name: str) -> list[str]:
    return [f.value.text for f in message.all(name)]


def test_syntax_variants_parse_to_the_same_tree():
    text = """
    # a comment line
    outer: {            # message with a colon
      inner < x: 1e-8; y: SIGMOID, z: true >
      list: [1, 2.5, -3]
      repeated: 'a' repeated: "b"
      joined: "ab" 'cd'
    }
    """
    outer = parse_text(text, "p.config").first("outer").value
    inner = outer.first("inner").value
    assert float(inner.first("x").value.text) == 1e-8
    assert inner.first("y").value.kind == "identifier"
    assert _values(outer, "list") == ["1", "2.5", "-3"]
    assert _values(outer, "repeated") == ["a", "b"]
    assert _values(outer, "joined") == ["abcd"]


def test_string_escapes_are_decoded():
    tree = parse_text(r'''s: "tab\tquote\"back\\slash\nnl \101\x42 \'q\'"''')
    assert tree.first("s").value.text == "tab\tquote\"back\\slash\nnl AB 'q'"


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("a {\n  b: 1\n", "p.config:1:3:", "never closed"),
        ("a: 1\nb c\n", "p.config:2:3:", "expected ':' or '{' after field name 'b'"),
        ('a: 1\n  b: "open\n', "p.config:2:6:", "string is not closed"),
        ("a: [1 2]", "p.config:1:7:", "expected ',' or ']'"),
        ("a: 1 }", "p.config:1:6:", "expected a field name"),
        ("x {\n  y: @\n}", "p.config:2:6:", "unexpected character '@'"),
    ],
)
def test_syntax_errors_name_line_and_column(text, where, fragment):
    with pytest.raises(DataError) as caught:
        parse_text(text, "p.config")
    message = str(caught.value)
    assert message.startswith(where), message
    assert fragment in message


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_string_survives_write_then_parse(text):
    root = Message()
    root.add_message("block").add_scalar("path", text)
    parsed = parse_text(format_message(root))
    assert parsed.first("block").value.first("path").value.text == text


def test_writer_output_is_indented_and_reparses_identically():
    root = Message()
    block = root.add_message("quantization")
    block.add_scalar("delay", 4000)
    block.add_scalar("rate", 1e-8)
    block.add_scalar("on", True)
    block.add_scalar("converter", "SIGMOID", enum=True)
    text = format_message(root)
    assert text == "quantization {\n  delay: 4000\n  rate: 1e-08\n  on: true\n  converter: SIGMOID\n}\n"
    assert format_message(parse_text(text)) == text
