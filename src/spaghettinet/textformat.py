"""A small protobuf text-format parser and writer that keeps line and column numbers for error messages.

The TF Object Detection API's ``pipeline.config`` is a ``TrainEvalPipelineConfig`` in protobuf text format. We parse
it without the OD API's protos into a tree of :class:`Message` / :class:`Field` / :class:`Scalar`, so that a
later stage can say *where* a value came from (``pipeline.config:12:5: ...``) and can list the fields it did not
use instead of failing on them.

Supported syntax (what text-format files in the wild use): ``# comments``; ``name: value``; nested messages as
``name { ... }``, ``name: { ... }`` or with ``< ... >``; repeated fields written several times or as a list
``name: [1, 2]``; optional ``,`` / ``;`` after a field; single- or double-quoted strings with C escapes (octal
``\\303``, hex ``\\xc3``, ``\\u00e9`` and ``\\U0001f600``, as protobuf's writers emit for non-ASCII text) and
adjacent-string concatenation; integers, hex integers, floats with exponents (``1e-8``), ``inf`` / ``nan`` with or
without a sign; identifiers for enums and booleans (``SIGMOID``, ``true``).

Hostile text ends in a :class:`~spaghettinet.errors.DataError` with the line and column, never another exception:
nesting deeper than :data:`MAX_NESTING` is refused, as protobuf's own parser refuses it (its default recursion
limit, ``CodedInputStream::default_recursion_limit_`` in protobuf's ``src/google/protobuf/io/coded_stream.cc``).

Example:
    >>> tree = parse_text('ssd { num_classes: 3  # three\\n  name: "a\\\\tb" }', source="x.config")
    >>> tree.first("ssd").value.first("num_classes").value.text
    '3'
    >>> format_message(tree)
    'ssd {\\n  num_classes: 3\\n  name: "a\\\\tb"\\n}\\n'
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from spaghettinet.errors import DataError

MAX_NESTING = 100
"""Deepest nesting of ``{ }`` blocks read (a pipeline.config nests about 8 deep; protobuf's parsers stop at 100)."""

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<badstring>["'])
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![A-Za-z0-9_]))
  | (?P<identifier>[-+]?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>:\[\],;])
    """,
    re.VERBOSE,
)

_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}


@dataclass
class Scalar:
    """A scalar value as written in the file.

    Args:
        text: for strings, the unescaped contents; for numbers and identifiers, the token as written.
        kind: ``'string'``, ``'number'`` or ``'identifier'`` (enums, booleans, ``inf``).
        line / column: 1-based position of the value in the source.
    """

    text: str
    kind: str
    line: int = 0
    column: int = 0


@dataclass
class Field:
    """One ``name: value`` or ``name { ... }`` entry of a message.

    Args:
        name: the field name.
        value: a :class:`Scalar` or a nested :class:`Message`.
        line / column: 1-based position of the field name.
        used: set by readers when they consume the field, so unused ones can be reported.
    """

    name: str
    value: Scalar | Message
    line: int = 0
    column: int = 0
    used: bool = False


@dataclass
class Message:
    """An ordered list of fields (a message body), with helpers to look fields up and to build new ones.

    Args:
        fields: the fields in file order.
        line / column: position of the opening brace (0 for the top level).
    """

    fields: list[Field] = field(default_factory=list)
    line: int = 0
    column: int = 0

    def all(self, name: str) -> list[Field]:
        """Return every field called ``name``, in file order (repeated fields)."""
        return [f for f in self.fields if f.name == name]

    def first(self, name: str) -> Field | None:
        """Return the last field called ``name`` (text format: a later singular value wins), or None."""
        found = self.all(name)
        return found[-1] if found else None

    def add_scalar(self, name: str, value: str | int | float | bool, enum: bool = False) -> None:
        """Append a scalar field; ``enum=True`` writes a string unquoted (``score_converter: SIGMOID``)."""
        if isinstance(value, bool):
            self.fields.append(Field(name, Scalar("true" if value else "false", "identifier")))
        elif isinstance(value, int | float):
            self.fields.append(Field(name, Scalar(_format_number(value), "number")))
        else:
            self.fields.append(Field(name, Scalar(str(value), "identifier" if enum else "string")))

    def add_message(self, name: str) -> Message:
        """Append an (empty) nested message field and return it for filling."""
        child = Message()
        self.fields.append(Field(name, child))
        return child


@dataclass
class _Token:
    kind: str
    text: str
    line: int
    column: int


def _format_number(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = repr(float(value))
    return text


def _unescape(body: str, where: str) -> str:
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        i += 1
        esc = body[i]
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc].encode("utf-8")
            i += 1
        elif esc in "xX":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[i + 1 :])
            if not digits:
                raise DataError(f"{where}: '\\x' in a string must be followed by hex digits")
            out.append(int(digits.group(), 16))
            i += 1 + len(digits.group())
        elif esc in "01234567":
            digits = re.match(r"[0-7]{1,3}", body[i:])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            i += len(digits.group())
        elif esc in "uU":
            size = 4 if esc == "u" else 8
            digits = re.match(rf"[0-9a-fA-F]{{{size}}}", body[i + 1 :])
            code = int(digits.group(), 16) if digits else -1
            if not 0 <= code <= 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise DataError(
                    f"{where}: '\\{esc}' in a string must be followed by {size} hex digits of a character"
                )
            out += chr(code).encode("utf-8")
            i += 1 + size
        else:
            raise DataError(f"{where}: unknown escape '\\{esc}' in a string")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: string is not valid UTF-8 after unescaping ({exc.reason})") from None


def quote_text(text: str) -> str:
    """``text`` as a double-quoted text-format string that :func:`parse_text` reads back exactly.

    Backslash, double quote, line feed, tab and carriage return get their C escapes, other control characters an
    octal one; everything else is written as UTF-8, as protobuf's ``as_utf8`` writers do.

    Example:
        >>> quote_text('a"b\\rc')
        '"a\\\\"b\\\\rc"'
    """
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _tokenize(text: str, source: str) -> Iterator[_Token]:
    line, line_start, pos = 1, 0, 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            raise DataError(f"{source}:{line}:{column}: unexpected character {text[pos]!r}")
        kind = match.lastgroup
        assert kind is not None
        token_text = match.group()
        if kind == "newline":
            line += 1
            line_start = match.end()
        elif kind == "badstring":
            raise DataError(
                f"{source}:{line}:{column}: string is not closed on this line (missing {token_text})"
            )
        elif kind not in ("space", "comment"):
            yield _Token(kind, token_text, line, column)
        pos = match.end()


class _Parser:
    def __init__(self, text: str, source: str):
        self.source = source
        self.tokens = list(_tokenize(text, source))
        self.index = 0
        self.end_line = text.count("\n") + 1

    def _where(self, token: _Token | None) -> str:
        if token is None:
            return f"{self.source}:{self.end_line}:1"
        return f"{self.source}:{token.line}:{token.column}"

    def _peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _next(self) -> _Token | None:
        token = self._peek()
        self.index += 1
        return token

    @staticmethod
    def _describe(token: _Token | None) -> str:
        return "the end of the file" if token is None else repr(token.text)

    def parse_body(self, closer: str | None, opener: _Token | None, depth: int = 0) -> Message:
        if depth > MAX_NESTING:
            raise DataError(
                f"{self._where(opener)}: blocks nested more than {MAX_NESTING} deep; no pipeline.config or label "
                "map nests like this (is it the right file?)"
            )
        message = Message(line=opener.line if opener else 0, column=opener.column if opener else 0)
        while True:
            token = self._peek()
            if token is None:
                if closer is None:
                    return message
                raise DataError(
                    f"{self._where(opener)}: '{opener.text}' opened here is never closed: '{closer}' is missing"
                )
            if token.kind == "punct" and token.text == closer:
                self._next()
                return message
            if token.kind != "identifier" or token.text[0] in "+-":
                expected = "a field name" + (f" or '{closer}'" if closer else "")
                raise DataError(f"{self._where(token)}: expected {expected}, found {self._describe(token)}")
            self._next()
            self.parse_field(message, token, depth)
            separator = self._peek()
            if separator is not None and separator.kind == "punct" and separator.text in ",;":
                self._next()

    def parse_field(self, message: Message, name: _Token, depth: int) -> None:
        token = self._next()
        has_colon = token is not None and token.text == ":" and token.kind == "punct"
        if has_colon:
            token = self._next()
        if token is not None and token.kind == "punct" and token.text in "{<":
            closer = "}" if token.text == "{" else ">"
            body = self.parse_body(closer, token, depth + 1)
            message.fields.append(Field(name.text, body, name.line, name.column))
            return
        if not has_colon:
            raise DataError(
                f"{self._where(token)}: expected ':' or '{{' after field name '{name.text}', "
                f"found {self._describe(token)}"
            )
        if token is not None and token.kind == "punct" and token.text == "[":
            self.parse_list(message, name, token, depth)
            return
        message.fields.append(Field(name.text, self.parse_scalar(token, name), name.line, name.column))

    def parse_list(self, message: Message, name: _Token, opener: _Token, depth: int) -> None:
        first = True
        while True:
            token = self._next()
            if token is None:
                raise DataError(f"{self._where(opener)}: '[' opened here is never closed: ']' is missing")
            if token.kind == "punct" and token.text == "]" and first:
                return
            if token.kind == "punct" and token.text in "{<":
                body = self.parse_body("}" if token.text == "{" else ">", token, depth + 1)
                message.fields.append(Field(name.text, body, token.line, token.column))
            else:
                message.fields.append(
                    Field(name.text, self.parse_scalar(token, name), token.line, token.column)
                )
            first = False
            token = self._next()
            if token is not None and token.kind == "punct" and token.text == "]":
                return
            if token is None or token.kind != "punct" or token.text != ",":
                raise DataError(
                    f"{self._where(token)}: expected ',' or ']' in the list, found {self._describe(token)}"
                )

    def parse_scalar(self, token: _Token | None, name: _Token) -> Scalar:
        if token is None or token.kind == "punct":
            raise DataError(
                f"{self._where(token)}: expected a value for '{name.text}', found {self._describe(token)}"
            )
        if token.kind == "string":
            parts = [_unescape(token.text[1:-1], self._where(token))]
            while (following := self._peek()) is not None and following.kind == "string":
                self._next()
                parts.append(_unescape(following.text[1:-1], self._where(following)))
            return Scalar("".join(parts), "string", token.line, token.column)
        if token.kind == "identifier" and token.text[0] in "+-":
            if token.text[1:].lower() not in ("inf", "infinity", "nan"):
                raise DataError(
                    f"{self._where(token)}: expected a value for '{name.text}', found {token.text!r}"
                )
            return Scalar(token.text, "number", token.line, token.column)
        return Scalar(token.text, token.kind, token.line, token.column)


def parse_text(text: str, source: str = "<string>") -> Message:
    """Parse protobuf text format into a :class:`Message` tree.

    Args:
        text: the file contents.
        source: the name used in error messages (usually the file path).

    Returns:
        The top-level message.

    Raises:
        DataError: on a syntax error, as ``"<source>:<line>:<column>: expected ..."``.

    Example:
        >>> parse_text("a: [1, 2] b { c: 'x' }").all("a")[1].value.text
        '2'
    """
    return _Parser(text, source).parse_body(None, None)


def format_message(message: Message, indent: int = 0) -> str:
    """Write a :class:`Message` tree as protobuf text format (two-space indent, one field per line).

    Args:
        message: the tree to write.
        indent: the starting indentation level.

    Returns:
        The text, ending with a newline when non-empty.

    Example:
        >>> root = Message()
        >>> root.add_message("graph_rewriter").add_message("quantization").add_scalar("delay", 100)
        >>> print(format_message(root), end="")
        graph_rewriter {
          quantization {
            delay: 100
          }
        }
    """
    lines: list[str] = []
    pad = "  " * indent
    for entry in message.fields:
        if isinstance(entry.value, Message):
            if entry.value.fields:
                lines.append(f"{pad}{entry.name} {{\n{format_message(entry.value, indent + 1)}{pad}}}")
            else:
                lines.append(f"{pad}{entry.name} {{\n{pad}}}")
        elif entry.value.kind == "string":
            lines.append(f"{pad}{entry.name}: {quote_text(entry.value.text)}")
        else:
            lines.append(f"{pad}{entry.name}: {entry.value.text}")
    return "".join(line + "\n" for line in lines)
